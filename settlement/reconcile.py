"""Ledger against provider: every balance movement at the provider must be one ledger entry
with the same amount on `provider_balance`, and every such entry must exist at the provider."""

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from settlement import ledger
from settlement.gateway import PaymentGateway
from settlement.models import LedgerEntry, LedgerPosting


@dataclass(frozen=True)
class Mismatch:
    provider_object_id: str
    problem: str
    ledger_minor: int | None
    provider_minor: int | None
    currency: str


async def reconcile(session: AsyncSession, gateway: PaymentGateway, start: datetime, end: datetime) -> list[Mismatch]:
    transactions = await asyncio.to_thread(gateway.list_balance_transactions, start, end)
    provider: dict[str, tuple[int, str]] = {}
    totals: dict[str, int] = defaultdict(int)
    for txn in transactions:
        if txn.source_id is None:
            continue
        totals[txn.source_id] += txn.amount_minor
        provider[txn.source_id] = (totals[txn.source_id], txn.currency)
    rows = (await session.exec(
        select(LedgerEntry.provider_object_id, LedgerPosting.currency, func.sum(LedgerPosting.amount_minor))
        .join(LedgerPosting, LedgerPosting.entry_id == LedgerEntry.id)
        .where(LedgerPosting.account == ledger.PROVIDER_BALANCE, LedgerEntry.provider_object_id.is_not(None),
               LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .group_by(LedgerEntry.provider_object_id, LedgerPosting.currency)
    )).all()
    ours = {object_id: (int(total), currency) for object_id, currency, total in rows}
    mismatches = []
    for object_id, (amount, currency) in sorted(provider.items()):
        if object_id not in ours:
            if not await ledger.has_provider_object(session, object_id):
                mismatches.append(Mismatch(object_id, "missing_in_ledger", None, amount, currency))
            continue
        mine, my_currency = ours[object_id]
        if (mine, my_currency) != (amount, currency):
            mismatches.append(Mismatch(object_id, "amount_differs", mine, amount, currency))
    for object_id, (mine, currency) in sorted(ours.items()):
        if object_id not in provider:
            mismatches.append(Mismatch(object_id, "missing_at_provider", mine, None, currency))
    return mismatches
