"""Double-entry ledger in PostgreSQL.

Postings are signed integers in minor units (debit positive, credit negative). Invariants:
each entry sums to zero per currency (checked here and by a deferred constraint trigger),
entries are append-only (a trigger refuses UPDATE/DELETE; corrections are new entries),
an entry's id is derived from its business key so a replay is a no-op and the same key with
other content is an error, a technician's payable never goes below zero, a provider object
maps to at most one entry, and entries are hash-chained.

Chains are per order (an entry without an order: per its first account), not one for the
platform: a post locks only its chain's tip row (`settlement_ledger_chain`), so posts for
unrelated orders never wait for each other, while all of one order's money stays in sequence.
Debits of a technician's payable also take a lock on that account, so two payouts cannot both
spend one balance. A daily anchor (`anchor`) records every tip that moved since the previous
anchor and is itself chained, so a chain cut short or dropped after anchoring is detected too;
`audit.verify_chain` re-computes chains and anchors. Entries from before the per-order chains
keep their single chain, named `legacy`.
"""

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import Conflict, InvalidInput
from settlement.models import LedgerAnchor, LedgerChain, LedgerEntry, LedgerPosting

PROVIDER_BALANCE = "provider_balance"
CUSTOMER_HOLDS = "customer_holds"
ORDER_LIABILITY = "order_liability"
PLATFORM_REVENUE = "platform_revenue"
QUALITY_BONUS_POOL = "quality_bonus_pool"
REFUNDS = "refunds"
GENESIS_HASH = "0" * 64
LEGACY_CHAIN = "legacy"
_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-5e89-a0c1-d2e3f4a5b6c7")


def technician_payable(technician_id: uuid.UUID | str) -> str:
    return f"technician_payable:{technician_id}"


def technician_receivable(technician_id: uuid.UUID | str) -> str:
    return f"technician_receivable:{technician_id}"


class LedgerConflict(Conflict):
    """An entry with this business key already exists with other content."""

    slug = "ledger-entry-conflict"


class UnbalancedEntry(InvalidInput):
    """The postings of an entry do not sum to zero per currency."""

    slug = "ledger-entry-unbalanced"


class PayableWouldGoNegative(Conflict):
    """The entry would leave a technician's payable below zero."""

    slug = "technician-payable-negative"


@dataclass(frozen=True, order=True)
class Posting:
    account: str
    amount_minor: int
    currency: str


def entry_id_for(business_key: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, business_key)


def canonical_content(entry: LedgerEntry, postings: list[Posting]) -> str:
    return json.dumps({
        "id": str(entry.id), "business_key": entry.business_key, "kind": entry.kind,
        "order_id": str(entry.order_id) if entry.order_id else None,
        "settlement_id": str(entry.settlement_id) if entry.settlement_id else None,
        "provider_object_id": entry.provider_object_id, "memo": entry.memo,
        "created_at": entry.created_at.astimezone(timezone.utc).isoformat(),
        "postings": [[p.account, p.amount_minor, p.currency] for p in sorted(postings)],
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def chain_for(order_id: uuid.UUID | None, postings: list[Posting]) -> str:
    return f"order:{order_id}" if order_id is not None else f"account:{min(postings).account}"


def anchor_hash(prev_hash: str, day: date, tips: dict[str, Any]) -> str:
    content = json.dumps({"day": day.isoformat(), "tips": tips}, sort_keys=True, separators=(",", ":"))
    return chain_hash(prev_hash, content)


def _check_balanced(postings: list[Posting]) -> None:
    if len(postings) < 2 or any(p.amount_minor == 0 for p in postings):
        raise UnbalancedEntry("an entry needs at least two non-zero postings")
    totals: dict[str, int] = defaultdict(int)
    for p in postings:
        totals[p.currency] += p.amount_minor
    if any(totals.values()):
        raise UnbalancedEntry(f"postings do not sum to zero: {dict(totals)}")


async def postings_of(session: AsyncSession, entry_id: uuid.UUID) -> list[Posting]:
    rows = (await session.exec(select(LedgerPosting).where(LedgerPosting.entry_id == entry_id))).all()
    return sorted(Posting(r.account, r.amount_minor, r.currency) for r in rows)


async def _same_as_existing(session: AsyncSession, existing: LedgerEntry, *, kind: str, postings: list[Posting],
                            order_id: uuid.UUID | None, settlement_id: uuid.UUID | None,
                            provider_object_id: str | None) -> bool:
    return (existing.kind, existing.order_id, existing.settlement_id, existing.provider_object_id) == (
        kind, order_id, settlement_id, provider_object_id) and await postings_of(session, existing.id) == postings


async def _lock_tip(session: AsyncSession, chain: str) -> LedgerChain:
    await session.exec(insert(LedgerChain).values(chain=chain, seq=0, tip_hash=GENESIS_HASH, anchored_seq=0)
                       .on_conflict_do_nothing())
    return (await session.exec(select(LedgerChain).where(LedgerChain.chain == chain).with_for_update()
                               .execution_options(populate_existing=True))).one()


async def post(
    session: AsyncSession, *, business_key: str, kind: str, postings: list[Posting],
    order_id: uuid.UUID | None = None, settlement_id: uuid.UUID | None = None,
    provider_object_id: str | None = None, memo: str = "", now: datetime | None = None,
) -> tuple[LedgerEntry, bool]:
    """Append an entry; returns (entry, created). Replaying the same business event is a no-op."""
    postings = sorted(p for p in postings if p.amount_minor != 0)
    _check_balanced(postings)
    entry_id = entry_id_for(business_key)
    content = {"kind": kind, "postings": postings, "order_id": order_id, "settlement_id": settlement_id,
               "provider_object_id": provider_object_id}
    chain = chain_for(order_id, postings)
    tip = await _lock_tip(session, chain)
    # Checked under the chain's lock: a concurrent replay of this key waits here, then sees it.
    existing = await session.get(LedgerEntry, entry_id, populate_existing=True)
    if existing is not None:
        if not await _same_as_existing(session, existing, **content):
            raise LedgerConflict(f"entry {business_key} already exists with other content")
        return existing, False
    if provider_object_id is not None:
        taken = (await session.exec(select(LedgerEntry.business_key).where(
            LedgerEntry.provider_object_id == provider_object_id))).first()
        if taken is not None:
            raise LedgerConflict(f"provider object {provider_object_id} is already entry {taken}")
    for p in sorted(p for p in postings if p.account.startswith("technician_payable:") and p.amount_minor > 0):
        # Payouts of one technician come from different orders' chains: his account serialises them.
        await session.exec(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
                           .bindparams(key=f"ledger:{p.account}"))
        credit_balance = -(await balance(session, p.account, p.currency))
        if credit_balance - p.amount_minor < 0:
            raise PayableWouldGoNegative(f"{p.account} holds {credit_balance}, cannot pay {p.amount_minor}")
    entry = LedgerEntry(
        id=entry_id, business_key=business_key, kind=kind, order_id=order_id, settlement_id=settlement_id,
        provider_object_id=provider_object_id, memo=memo[:300],
        created_at=now or datetime.now(timezone.utc),
        content_hash="", prev_hash=tip.tip_hash, chain=chain, chain_seq=tip.seq + 1,
    )
    entry.content_hash = chain_hash(tip.tip_hash, canonical_content(entry, postings))
    session.add(entry)
    await session.flush()
    session.add_all(LedgerPosting(entry_id=entry_id, account=p.account, amount_minor=p.amount_minor,
                                  currency=p.currency) for p in postings)
    await session.exec(update(LedgerChain).where(LedgerChain.chain == chain)
                       .values(seq=entry.chain_seq, tip_hash=entry.content_hash))
    await session.flush()
    return entry, True


async def anchor(session: AsyncSession, day: date | None = None) -> LedgerAnchor:
    """The day's anchor (made once; a second call returns it): every chain tip that moved since
    the previous anchor, chained to that anchor. Reads tips without locking them."""
    day = day or datetime.now(timezone.utc).date()
    existing = await session.get(LedgerAnchor, day)
    if existing is not None:
        return existing
    moved = (await session.exec(select(LedgerChain).where(col(LedgerChain.seq) > col(LedgerChain.anchored_seq))
                                .order_by(LedgerChain.chain))).all()
    tips = {c.chain: [c.seq, c.tip_hash] for c in moved}
    previous = (await session.exec(select(LedgerAnchor).order_by(col(LedgerAnchor.day).desc()).limit(1))).first()
    if previous is not None and previous.day > day:
        raise InvalidInput(f"the ledger is anchored up to {previous.day}; {day} cannot be anchored after it")
    prev_hash = previous.anchor_hash if previous is not None else GENESIS_HASH
    inserted = (await session.exec(insert(LedgerAnchor).values(
        day=day, tips=tips, prev_hash=prev_hash, anchor_hash=anchor_hash(prev_hash, day, tips),
        created_at=datetime.now(timezone.utc)).on_conflict_do_nothing().returning(LedgerAnchor.day))).first()
    if inserted is not None:
        for chain, (seq, _) in tips.items():
            await session.exec(update(LedgerChain).where(LedgerChain.chain == chain, LedgerChain.anchored_seq < seq)
                               .values(anchored_seq=seq))
    return (await session.exec(select(LedgerAnchor).where(LedgerAnchor.day == day)
                               .execution_options(populate_existing=True))).one()


async def has_provider_object(session: AsyncSession, provider_object_id: str) -> bool:
    found = (await session.exec(select(LedgerEntry.id).where(LedgerEntry.provider_object_id == provider_object_id))).first()
    return found is not None


async def balance(session: AsyncSession, account: str, currency: str | None = None) -> int:
    statement = select(func.coalesce(func.sum(LedgerPosting.amount_minor), 0)).where(LedgerPosting.account == account)
    if currency is not None:
        statement = statement.where(LedgerPosting.currency == currency)
    return int((await session.exec(statement)).one())


async def balances(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = (await session.exec(
        select(LedgerPosting.account, LedgerPosting.currency, func.sum(LedgerPosting.amount_minor))
        .group_by(LedgerPosting.account, LedgerPosting.currency)
    )).all()
    return {(account, currency): int(total) for account, currency, total in rows}


async def entries_for_order(session: AsyncSession, order_id: uuid.UUID) -> list[tuple[LedgerEntry, list[Posting]]]:
    entries = (await session.exec(
        select(LedgerEntry).where(LedgerEntry.order_id == order_id).order_by(LedgerEntry.seq))).all()
    return [(e, await postings_of(session, e.id)) for e in entries]
