"""Settlement: rules, refunds, held settlements, technician payout accounts and settlements,
the customer's receipt, the technician's earnings, the provider's webhooks, and the auditor's
read-only surface (every read is logged)."""

import uuid
from dataclasses import asdict
from functools import lru_cache
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import (
    Admin, CurrentTechnician, IdempotencyKey, SessionDep, Staff, get_session, log_read, remember_idempotent,
    replay_idempotent, require_role,
)
from dispatch import service as dispatch
from dispatch.accounts import customer_for_account
from kit.config import get_settings
from kit.errors import InvalidInput
from kit.schemas import Money, Page
from dispatch.security import Principal
from settlement import audit, service, statements, webhooks
from settlement.reconcile import reconcile
from settlement.models import SETTLEMENT_STATUSES, RuleSet, Settlement

router = APIRouter(tags=["settlement"])
# CSV exports stream after the handler returns, so their session lives until the response is sent.
StreamSessionDep = Annotated[AsyncSession, Depends(get_session)]


# Bounds keep every amount far inside a BIGINT; the service bounds adjustments by the fee.
Bps = Annotated[int, Field(ge=-10_000, le=10_000)]
Minor = Annotated[int, Field(ge=0, le=10**12)]


class RuleSetCreate(BaseModel):
    platform_fee_bps: int = Field(ge=0, le=10_000)
    platform_fee_fixed_minor: Minor
    adjustment_bps_by_stars: dict[Literal["1", "2", "3", "4", "5"], Bps | None]
    minimum_payout_minor: Minor
    payout_schedule: Literal["immediate", "daily"]
    cancellation_fee_minor: Minor
    cancellation_fee_accepted_minor: Minor = 0
    cancellation_free_minutes: int = Field(default=0, ge=0, le=24 * 60)
    cancellation_technician_bps: int = Field(default=10_000, ge=0, le=10_000)


class RefundCreate(BaseModel):
    amount_minor: int = Field(gt=0, le=10**12)


class HeldDecision(BaseModel):
    adjustment_bps: int = Field(ge=-10_000, le=10_000)


class SettlementPublic(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    technician_id: uuid.UUID
    station_id: uuid.UUID | None
    status: str
    kind: str
    stars: int | None
    rule_version: int
    currency: str
    base_minor: int
    adjustment_minor: int
    fee_minor: int
    payout_minor: int
    clawback_minor: int
    receivable_offset_minor: int
    arithmetic: dict[str, Any]
    transfer_id: str | None
    created_at: datetime
    transferred_at: datetime | None


def _public(s: Settlement) -> SettlementPublic:
    return SettlementPublic.model_validate(s, from_attributes=True)


async def _audit_reader(principal: Staff, request: Request, session: SessionDep) -> Principal:
    """The audit surface logs admins' reads too; an auditor's reads are logged on every route (api.deps)."""
    if principal.role != "auditor":
        await log_read(session, principal, request)
    return principal


AuditReader = Annotated[Principal, Depends(_audit_reader)]


# -- operations (admin) -----------------------------------------------------------------------


@router.get("/v1/settlement-rules")
async def list_rules(_: AuditReader, session: SessionDep) -> Page[RuleSet]:
    return Page(data=await service.list_rules(session))


@router.post("/v1/settlement-rules", status_code=status.HTTP_201_CREATED)
async def publish_rules(body: RuleSetCreate, principal: Admin, session: SessionDep) -> RuleSet:
    return await service.publish_rules(session, created_by=str(principal.account_id), **body.model_dump())


@router.post("/v1/orders/{order_id}/refunds", status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "Idempotency-Key reused with another body"}})
async def refund_order(order_id: uuid.UUID, body: RefundCreate, principal: Admin, session: SessionDep,
                       idempotency_key: IdempotencyKey = None) -> Any:
    if idempotency_key is None:
        raise InvalidInput("a refund needs an Idempotency-Key header")
    route = f"POST /v1/orders/{order_id}/refunds"
    request_hash, replay = await replay_idempotent(session, principal, idempotency_key, route, body)
    if replay is not None:
        return replay
    refund_id = await service.refund_order(session, order_id, amount_minor=body.amount_minor,
                                           request_key=idempotency_key, gateway=service.get_gateway())
    result = {"refund_id": refund_id, "order_id": str(order_id), "amount_minor": body.amount_minor}
    await remember_idempotent(session, principal, idempotency_key, route, request_hash, 201, result)
    return result


@router.post("/v1/settlements/{settlement_id}/release")
async def release_held(settlement_id: uuid.UUID, body: HeldDecision, principal: Admin,
                       session: SessionDep) -> SettlementPublic:
    return _public(await service.release_held(session, settlement_id, adjustment_bps=body.adjustment_bps,
                                              decided_by=str(principal.account_id)))


@router.post("/v1/technicians/me/payout-account", status_code=status.HTTP_201_CREATED)
async def create_payout_account(technician: CurrentTechnician, session: SessionDep) -> dict[str, str]:
    account = await service.ensure_connected_account(session, technician.id, service.get_gateway())
    return {"provider_account_id": account.provider_account_id}


@router.get("/v1/technicians/me/settlements")
async def my_settlements(
    technician: CurrentTechnician, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[SettlementPublic]:
    f = audit.SettlementFilter(technician_id=technician.id)
    rows, next_cursor = await audit.list_settlements(session, f, limit=limit, cursor=cursor)
    return Page(data=[_public(s) for s in rows], next_cursor=next_cursor)


# -- the customer's receipt and the technician's earnings -----------------------------------------


class ReceiptIssuer(BaseModel):
    name: str
    tax_id: str
    address: str


class ReceiptBilledTo(BaseModel):
    name: str
    address: str


class ReceiptLine(BaseModel):
    kind: Literal["labour", "part", "discount", "cancellation_fee"]
    name: str  # a part's name as the technician wrote it; empty for the other kinds
    quantity: int
    unit_price: Money
    amount: Money


class ReceiptMovement(BaseModel):
    kind: str  # the ledger entry's kind: hold, refund, dispute
    amount: Money
    at: datetime


class ReceiptFollowup(BaseModel):
    order_id: uuid.UUID
    hazard_category: str
    hazard_severity: str
    status: str
    price_estimate: Money  # charged on the follow-up order, once the customer agrees


class ReceiptPublic(BaseModel):
    """The order's money from the ledger; the lines, from the work report, sum to `final_price`."""

    order_id: uuid.UUID
    kind: str
    status: str
    currency: str
    issuer: ReceiptIssuer
    billed_to: ReceiptBilledTo | None  # not shown to auditors
    issued_at: datetime | None  # the capture; none while nothing is charged
    holds: list[ReceiptMovement]
    held: Money  # still authorised now
    final_price: Money | None
    lines: list[ReceiptLine]
    captured: Money
    released: Money
    refunded: Money
    refunds: list[ReceiptMovement]
    paid: Money  # captured less refunded
    followups: list[ReceiptFollowup]


ReceiptReader = Annotated[Principal, Depends(require_role("customer", "admin", "auditor"))]


def _receipt_public(r: statements.Receipt, role: str) -> ReceiptPublic:
    def money(amount: int) -> Money:
        return Money(amount_minor=amount, currency=r.currency)

    def movement(m: statements.Movement) -> ReceiptMovement:
        return ReceiptMovement(kind=m.kind, amount=money(m.amount_minor), at=m.at)

    settings = get_settings()
    return ReceiptPublic(
        order_id=r.order.id, kind=r.order.kind, status=r.order.status, currency=r.currency,
        issuer=ReceiptIssuer(name=settings.invoice_issuer_name, tax_id=settings.invoice_issuer_tax_id,
                             address=settings.invoice_issuer_address),
        # An audit follows the money, not the household.
        billed_to=None if role == "auditor" else ReceiptBilledTo(name=r.customer_name, address=r.address_line),
        issued_at=r.issued_at, holds=[movement(m) for m in r.holds], held=money(r.held_minor),
        final_price=None if r.final_price_minor is None else money(r.final_price_minor),
        lines=[ReceiptLine(kind=line.kind, name=line.name, quantity=line.quantity, unit_price=money(line.unit_minor),
                           amount=money(line.amount_minor)) for line in r.lines],
        captured=money(r.captured_minor), released=money(r.released_minor), refunded=money(r.refunded_minor),
        refunds=[movement(m) for m in r.money_back], paid=money(r.captured_minor - r.refunded_minor),
        followups=[ReceiptFollowup(order_id=f.order_id, hazard_category=f.hazard_category,
                                   hazard_severity=f.hazard_severity, status=f.status,
                                   price_estimate=money(f.price_estimate_minor)) for f in r.followups])


@router.get("/v1/orders/{order_id}/receipt")
async def order_receipt(order_id: uuid.UUID, principal: ReceiptReader, session: SessionDep) -> ReceiptPublic:
    """The hold, the final price in lines, what was captured, released and refunded, and the
    utility's invoice details: for the order's customer, operations and auditors."""
    customer_id = (await customer_for_account(session, principal.account_id)).id if principal.role == "customer" else None
    order = await dispatch.get_order_for(session, order_id, role=principal.role, customer_id=customer_id)
    return _receipt_public(await statements.receipt(session, order), principal.role)


class EarningsFigures(BaseModel):
    earned: Money  # credited by settlements and cancellation fees' shares
    paid_out: Money  # transferred to his account, less reversals made at the provider
    owed: Money  # taken back after a refund or dispute (his receivable)
    recovered: Money  # of what he owed: reversed from a transfer or kept from a later payout


class EarningsDay(EarningsFigures):
    day: date
    in_review: Money  # the price of jobs whose settlement waits for operations
    orders: int


class EarningsOrder(EarningsFigures):
    order_id: uuid.UUID
    order_kind: str
    settlement_id: uuid.UUID
    kind: str  # service, or cancellation (his share of the fee)
    status: str
    stars: int | None
    rule_version: int
    price: Money  # the base: captured less refunded when it was settled
    adjustment_bps: int | None  # the quality adjustment the stars gave (or operations decided)
    adjustment: Money
    fee: Money
    payout: Money
    decided_by_operations: bool
    settled_at: datetime
    transferred_at: datetime | None


class QualityRules(BaseModel):
    rule_version: int
    platform_fee_bps: int
    platform_fee_fixed: Money
    adjustment_bps_by_stars: dict[str, int | None]  # None: held for operations to decide


class EarningsPublic(BaseModel):
    from_: date = Field(serialization_alias="from")
    to: date
    tz: str
    payable: list[Money]  # earned and not yet paid out, now
    receivable: list[Money]  # owed back, now
    days: list[EarningsDay]
    orders: list[EarningsOrder]
    rules: QualityRules | None


MAX_EARNINGS_DAYS = 92
EARNINGS_YEARS = (2000, 2999)


@lru_cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())  # read from disk: once


def _figures(flows: statements.Flows, currency: str) -> dict[str, Money]:
    return {name: Money(amount_minor=getattr(flows, f"{name}_minor"), currency=currency)
            for name in ("earned", "paid_out", "owed", "recovered")}


def _earnings_order(o: statements.OrderEarnings) -> EarningsOrder:
    s = o.settlement

    def money(amount: int) -> Money:
        return Money(amount_minor=amount, currency=s.currency)

    return EarningsOrder(
        order_id=s.order_id, order_kind=o.order_kind, settlement_id=s.id, kind=s.kind, status=s.status, stars=s.stars,
        rule_version=s.rule_version, price=money(s.base_minor), adjustment_bps=s.arithmetic.get("adjustment_bps"),
        adjustment=money(s.adjustment_minor), fee=money(s.fee_minor), payout=money(s.payout_minor),
        decided_by_operations="released_by" in s.arithmetic, settled_at=s.created_at,
        transferred_at=s.transferred_at, **_figures(o.flows, s.currency))


@router.get("/v1/technicians/me/earnings")
async def my_earnings(
    technician: CurrentTechnician, session: SessionDep,
    start: Annotated[date | None, Query(alias="from")] = None, end: Annotated[date | None, Query(alias="to")] = None,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of his days")] = "UTC",
) -> EarningsPublic:
    """Per day (in `tz`) and per order: earned, paid out, owed back and recovered, from the ledger;
    settlements waiting for operations; each settlement's quality adjustment with the star table
    in force. At most 92 days; by default the 30 days to today."""
    if tz not in _time_zones():
        raise InvalidInput(f"unknown time zone {tz!r}")
    zone = ZoneInfo(tz)
    end = end or datetime.now(zone).date()
    if not (EARNINGS_YEARS[0] <= (start or end).year and end.year <= EARNINGS_YEARS[1]):  # no date overflow below
        raise InvalidInput(f"from and to must lie in the years {EARNINGS_YEARS[0]} to {EARNINGS_YEARS[1]}")
    start = start or end - timedelta(days=29)
    if not timedelta(0) <= end - start < timedelta(days=MAX_EARNINGS_DAYS):
        raise InvalidInput(f"from must be on or before to, at most {MAX_EARNINGS_DAYS} days apart")
    found = await statements.earnings(session, technician.id, start, end, zone)
    rules = found.rules
    currency = get_settings().currency
    return EarningsPublic(
        from_=start, to=end, tz=tz,
        payable=[Money(amount_minor=v, currency=c) for c, v in sorted(found.payable_minor.items())],
        receivable=[Money(amount_minor=v, currency=c) for c, v in sorted(found.receivable_minor.items())],
        days=[EarningsDay(day=d.day, in_review=Money(amount_minor=d.in_review_minor, currency=d.currency),
                          orders=len(d.order_ids), **_figures(d.flows, d.currency)) for d in found.days],
        orders=[_earnings_order(o) for o in found.orders],
        rules=None if rules is None else QualityRules(
            rule_version=rules.version, platform_fee_bps=rules.platform_fee_bps,
            platform_fee_fixed=Money(amount_minor=rules.platform_fee_fixed_minor, currency=currency),
            adjustment_bps_by_stars=rules.adjustment_bps_by_stars))


@router.post("/v1/webhooks/stripe", status_code=status.HTTP_200_OK)
async def stripe_webhook(request: Request, session: SessionDep,
                         stripe_signature: Annotated[str, Header(alias="Stripe-Signature", max_length=1000)] = "",
                         ) -> dict[str, bool]:
    created = await webhooks.receive(session, service.get_gateway(), await request.body(), stripe_signature)
    return {"received": True, "duplicate": not created}


# -- the auditor's read side ------------------------------------------------------------------


@router.get("/v1/settlements")
async def list_settlements(
    _: AuditReader, session: SessionDep,
    created_from: Annotated[datetime | None, Query(alias="from")] = None,
    created_to: Annotated[datetime | None, Query(alias="to")] = None,
    station_id: uuid.UUID | None = None, technician_id: uuid.UUID | None = None,
    status_filter: Annotated[str | None, Query(alias="status", pattern="^(" + "|".join(SETTLEMENT_STATUSES) + ")$")] = None,
    adjusted: bool | None = None, held: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[SettlementPublic]:
    f = audit.SettlementFilter(created_from, created_to, station_id, technician_id, status_filter, adjusted, held)
    rows, next_cursor = await audit.list_settlements(session, f, limit=limit, cursor=cursor)
    return Page(data=[_public(s) for s in rows], next_cursor=next_cursor)


@router.get("/v1/settlements/{settlement_id}")
async def get_settlement(settlement_id: uuid.UUID, _: AuditReader, session: SessionDep) -> SettlementPublic:
    return _public(await audit.get_settlement(session, settlement_id))


@router.get("/v1/settlements/{settlement_id}/evidence", name="evidence")
async def settlement_evidence(settlement_id: uuid.UUID, _: AuditReader, session: SessionDep) -> dict[str, Any]:
    return await audit.evidence(session, settlement_id)


@router.get("/v1/settlements/{settlement_id}/evidence.zip", name="evidence_archive", response_class=Response,
            responses={200: {"content": {"application/zip": {}}, "description": "evidence.json and the photos"}})
async def settlement_evidence_archive(settlement_id: uuid.UUID, _: AuditReader, session: SessionDep) -> Response:
    """The evidence bundle to keep: evidence.json and each photo's bytes as photos/<sha256>.<ext>."""
    return Response(await audit.evidence_archive(session, settlement_id), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="evidence-{settlement_id}.zip"', "Cache-Control": "private, no-store"})


def _period(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise InvalidInput("from and to must be timezone-aware with from < to")


@router.get("/v1/audit/ledger.csv", response_class=StreamingResponse)
async def export_ledger(_: AuditReader, session: StreamSessionDep,
                        start: Annotated[datetime, Query(alias="from")], end: Annotated[datetime, Query(alias="to")]) -> Any:
    _period(start, end)
    return StreamingResponse(audit.ledger_csv(session, start, end), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="ledger.csv"'})


@router.get("/v1/audit/settlements.csv", response_class=StreamingResponse)
async def export_settlements(_: AuditReader, session: StreamSessionDep,
                             start: Annotated[datetime, Query(alias="from")],
                             end: Annotated[datetime, Query(alias="to")]) -> Any:
    _period(start, end)
    return StreamingResponse(audit.settlements_csv(session, start, end), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="settlements.csv"'})


@router.get("/v1/audit/ledger/verify")
async def verify_ledger(_: AuditReader, session: SessionDep) -> dict[str, Any]:
    report = await audit.verify_chain(session)
    return {"ok": report.ok, "checked": report.checked, "broken": report.broken}


@router.get("/v1/audit/reconcile", name="reconcile")
async def reconcile_ledger(_: AuditReader, session: SessionDep, start: Annotated[datetime, Query(alias="from")],
                           end: Annotated[datetime, Query(alias="to")]) -> dict[str, Any]:
    """The ledger against the provider's balance transactions for the period; reads both, changes neither."""
    _period(start, end)
    mismatches = await reconcile(session, service.get_gateway(), start, end)
    return {"ok": not mismatches, "from": start, "to": end, "mismatches": [asdict(m) for m in mismatches]}
