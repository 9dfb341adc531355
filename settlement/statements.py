"""The money as the people it concerns read it: the customer's receipt for an order and the
technician's earnings. Read only. Every amount that moved comes from the ledger's postings, so
a receipt or a statement can never disagree with what an auditor verifies; the work report only
says what the price is made of.

Receipt: the hold in force (the last one: a raise replaces the hold), what was captured, what the
release of the rest gave back, refunds and disputes, and the final price in lines (labour, parts,
a discount when the parts cost more than the price) with the follow-up orders its hazards opened,
which are priced and paid on their own orders.

Earnings: per ledger entry on the technician's payable and receivable accounts, in his days;
per settlement, its arithmetic (stars -> quality adjustment) and what it moved.
"""

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.field import reports
from dispatch import queries
from dispatch.models import Order
from settlement import ledger
from settlement.models import LedgerEntry, LedgerPosting, RuleSet, Settlement

MONEY_BACK_KINDS = ("refund", "dispute")


@dataclass(frozen=True)
class Line:
    kind: str  # labour | part | discount | cancellation_fee
    amount_minor: int
    name: str = ""  # a part's name as the technician wrote it
    quantity: int = 1
    unit_minor: int = 0


@dataclass(frozen=True)
class Movement:
    kind: str  # a ledger entry kind: hold, hold_released, capture, refund, dispute, cancellation_fee
    amount_minor: int
    at: datetime


@dataclass(frozen=True)
class Followup:
    order_id: uuid.UUID
    hazard_category: str
    hazard_severity: str
    status: str
    price_estimate_minor: int


@dataclass(frozen=True)
class Receipt:
    order: Order
    currency: str
    holds: list[Movement]  # each authorisation, in order; the last is the one in force
    held_minor: int  # still held now (0 once captured or released)
    captured_minor: int
    released_minor: int  # of the last hold, given back by capturing less or cancelling it
    refunded_minor: int
    money_back: list[Movement]
    issued_at: datetime | None  # the capture; None while nothing is charged
    final_price_minor: int | None  # from the work report
    lines: list[Line]
    followups: list[Followup]
    customer_name: str
    address_line: str


def _on(postings: list[ledger.Posting], account: str) -> int:
    return sum(p.amount_minor for p in postings if p.account == account)


def price_lines(parts: list[dict[str, Any]], final_price_minor: int) -> list[Line]:
    """Labour is what the final price leaves after the parts; the lines always sum to the price."""
    lines = [Line("part", p["quantity"] * p["unit_price_minor"], p["name"], p["quantity"], p["unit_price_minor"])
             for p in parts]
    rest = final_price_minor - sum(line.amount_minor for line in lines)
    if rest:
        lines.insert(0, Line("labour" if rest > 0 else "discount", rest, unit_minor=rest))
    return lines


async def receipt(session: AsyncSession, order: Order) -> Receipt:
    holds, money_back = [], []
    held = captured = 0
    issued_at = None
    cancellation_fee = None
    for entry, postings in await ledger.entries_for_order(session, order.id):
        held += _on(postings, ledger.CUSTOMER_HOLDS)
        if entry.kind == "hold":
            holds.append(Movement("hold", _on(postings, ledger.CUSTOMER_HOLDS), entry.created_at))
        elif entry.kind == "capture":
            captured, issued_at = _on(postings, ledger.PROVIDER_BALANCE), entry.created_at
        elif entry.kind in MONEY_BACK_KINDS:
            money_back.append(Movement(entry.kind, -_on(postings, ledger.PROVIDER_BALANCE), entry.created_at))
        elif entry.kind == "cancellation_fee":
            cancellation_fee = _on(postings, ledger.ORDER_LIABILITY)
    last_hold = holds[-1].amount_minor if holds else 0
    report = await reports.report_of(session, order.id)
    if report is not None:
        final_price, lines = report.final_price_minor, price_lines(report.parts, report.final_price_minor)
    elif cancellation_fee:
        final_price, lines = cancellation_fee, [Line("cancellation_fee", cancellation_fee, unit_minor=cancellation_fee)]
    else:
        final_price, lines = None, []
    followups = []
    for hazard in await reports.hazards_of(session, order.id):
        if hazard.followup_order_id is not None:
            followup = await queries.find_order(session, hazard.followup_order_id)
            followups.append(Followup(followup.id, hazard.category, hazard.severity, followup.status,
                                      followup.price_estimate_minor))
    customer = await queries.find_customer(session, order.customer_id)
    address = await queries.find_address(session, order.address_id)
    return Receipt(order=order, currency=order.currency, holds=holds, held_minor=held, captured_minor=captured,
                   released_minor=last_hold - captured - held if holds else 0,
                   refunded_minor=sum(m.amount_minor for m in money_back), money_back=money_back,
                   issued_at=issued_at, final_price_minor=final_price, lines=lines, followups=followups,
                   customer_name=customer.name, address_line=address.line)


# -- the technician's earnings --------------------------------------------------------------------


@dataclass
class Flows:
    """What moved on his accounts: earned (credited to his payable by a settlement or a
    cancellation fee's share), paid out (transfers, less reversals made at the provider),
    owed (claw-backs booked as his receivable), recovered (of what he owed: reversed from a
    transfer, or kept back from a later payout)."""

    earned_minor: int = 0
    paid_out_minor: int = 0
    owed_minor: int = 0
    recovered_minor: int = 0

    def add(self, kind: str, account_is_payable: bool, amount: int) -> None:
        if account_is_payable:
            if amount < 0 and kind in ("settlement", "cancellation_fee"):
                self.earned_minor -= amount
            elif kind == "transfer" or (kind == "reversal" and amount < 0):
                self.paid_out_minor += amount  # a reversal made at the provider returns money to his payable
        elif amount > 0:
            self.owed_minor += amount
        else:
            self.recovered_minor -= amount


@dataclass
class Day:
    day: date
    currency: str
    flows: Flows = field(default_factory=Flows)
    # The price of jobs whose settlement waits for operations (rated 2 stars or fewer).
    in_review_minor: int = 0
    order_ids: set[uuid.UUID] = field(default_factory=set)


@dataclass(frozen=True)
class OrderEarnings:
    settlement: Settlement
    order_kind: str
    flows: Flows


@dataclass(frozen=True)
class Earnings:
    days: list[Day]  # days with money moving, newest first
    orders: list[OrderEarnings]  # settlements made in the period, newest first
    payable_minor: dict[str, int]  # by currency: earned and not yet paid out, now
    receivable_minor: dict[str, int]  # by currency: what he owes back, now
    rules: RuleSet | None  # the rules in force, whose star table explains the adjustments


def period_bounds(start: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in his zone."""
    return (datetime.combine(start, time(), zone), datetime.combine(end + timedelta(days=1), time(), zone))


async def _movements(session: AsyncSession, accounts: list[str], *where: Any) -> list[tuple]:
    return list((await session.exec(
        select(LedgerEntry.kind, LedgerEntry.order_id, LedgerEntry.settlement_id, LedgerEntry.created_at,
               LedgerPosting.account, LedgerPosting.amount_minor, LedgerPosting.currency)
        .join(LedgerPosting, LedgerPosting.entry_id == LedgerEntry.id)
        .where(col(LedgerPosting.account).in_(accounts), *where).order_by(LedgerEntry.seq))).all())


async def earnings(session: AsyncSession, technician_id: uuid.UUID, start: date, end: date,
                   zone: ZoneInfo) -> Earnings:
    payable, receivable = ledger.technician_payable(technician_id), ledger.technician_receivable(technician_id)
    since, until = period_bounds(start, end, zone)
    days: dict[tuple[date, str], Day] = {}
    for kind, order_id, _, at, account, amount, currency in await _movements(
            session, [payable, receivable], LedgerEntry.created_at >= since, LedgerEntry.created_at < until):
        day = days.setdefault((at.astimezone(zone).date(), currency), Day(at.astimezone(zone).date(), currency))
        day.flows.add(kind, account == payable, amount)
        if order_id is not None:
            day.order_ids.add(order_id)
    settlements = (await session.exec(
        queries.with_order_kind(Settlement, Settlement.order_id)
        .where(Settlement.technician_id == technician_id, Settlement.created_at >= since,
               Settlement.created_at < until).order_by(col(Settlement.created_at).desc()))).all()
    for s, _ in settlements:
        if s.status == "held":
            local = s.created_at.astimezone(zone).date()
            held = days.setdefault((local, s.currency), Day(local, s.currency))
            held.in_review_minor += s.base_minor
            held.order_ids.add(s.order_id)
    by_settlement: dict[uuid.UUID, Flows] = {s.id: Flows() for s, _ in settlements}
    if by_settlement:
        for kind, _, settlement_id, _, account, amount, _ in await _movements(
                session, [payable, receivable], col(LedgerEntry.settlement_id).in_(list(by_settlement))):
            by_settlement[settlement_id].add(kind, account == payable, amount)
    balances = {(account, currency): int(total) for account, currency, total in (await session.exec(
        select(LedgerPosting.account, LedgerPosting.currency, func.sum(LedgerPosting.amount_minor))
        .where(col(LedgerPosting.account).in_([payable, receivable]))
        .group_by(LedgerPosting.account, LedgerPosting.currency))).all()}
    rules = (await session.exec(select(RuleSet).order_by(col(RuleSet.version).desc()).limit(1))).first()
    return Earnings(
        days=sorted(days.values(), key=lambda d: (d.day, d.currency), reverse=True),
        orders=[OrderEarnings(s, kind, by_settlement[s.id]) for s, kind in settlements],
        payable_minor={c: -v for (a, c), v in balances.items() if a == payable},
        receivable_minor={c: v for (a, c), v in balances.items() if a == receivable}, rules=rules)
