"""The auditor's read side: settlements with filters, evidence bundles, CSV exports, the
check of the hash chains and their daily anchors, and the log of every such read."""

import csv
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import tuple_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from dispatch.field import photos
from kit import objects
from kit.errors import NotFound
from kit.pagination import page_of, paginate
from settlement import ledger
from settlement.models import (
    AuditAccess,
    LedgerAnchor,
    LedgerEntry,
    LedgerPosting,
    Payment,
    RuleSet,
    Settlement,
)


async def log_access(session: AsyncSession, *, account_id: uuid.UUID, role: str, action: str,
                     target: str | None = None, params: dict[str, Any] | None = None) -> None:
    session.add(AuditAccess(account_id=account_id, role=role, action=action, target=target,
                            params={k: str(v) for k, v in (params or {}).items() if v is not None}))
    await session.flush()


@dataclass
class SettlementFilter:
    created_from: datetime | None = None
    created_to: datetime | None = None
    station_id: uuid.UUID | None = None
    technician_id: uuid.UUID | None = None
    status: str | None = None
    adjusted: bool | None = None
    held: bool | None = None


def _filtered(f: SettlementFilter) -> Any:
    statement = select(Settlement)
    if f.created_from is not None:
        statement = statement.where(Settlement.created_at >= f.created_from)
    if f.created_to is not None:
        statement = statement.where(Settlement.created_at < f.created_to)
    if f.station_id is not None:
        statement = statement.where(Settlement.station_id == f.station_id)
    if f.technician_id is not None:
        statement = statement.where(Settlement.technician_id == f.technician_id)
    if f.status is not None:
        statement = statement.where(Settlement.status == f.status)
    if f.adjusted is not None:
        statement = statement.where((Settlement.adjustment_minor != 0) if f.adjusted else (Settlement.adjustment_minor == 0))
    if f.held is not None:
        statement = statement.where((Settlement.status == "held") if f.held else (Settlement.status != "held"))
    return statement


async def list_settlements(session: AsyncSession, f: SettlementFilter, *, limit: int,
                           cursor: str | None) -> tuple[list[Settlement], str | None]:
    rows = list((await session.exec(paginate(_filtered(f), Settlement, limit, cursor))).all())
    return page_of(rows, limit)


async def get_settlement(session: AsyncSession, settlement_id: uuid.UUID) -> Settlement:
    s = await session.get(Settlement, settlement_id)
    if s is None:
        raise NotFound("no such settlement")
    return s


# What an audit of the money needs from an order event's payload; anything else (a customer's
# phone or address) stays out of the auditor's view. Photos reach it only as the bundle's own
# list: those the report and its hazards name, by hash, each read of one logged like any other.
_AUDIT_PAYLOAD_KEYS = frozenset({
    "source", "priority", "offer_id", "policy", "technician_id", "emergency_order_id", "distance_m", "verification",
    "report_id", "final_price_minor", "currency", "valve_closed", "hazard_ids", "review_id", "automatic",
    "settlement_id", "payout_minor", "transfer_id"})


def _audit_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k in _AUDIT_PAYLOAD_KEYS}


async def evidence(session: AsyncSession, settlement_id: uuid.UUID) -> dict[str, Any]:
    """Everything an auditor needs to re-check one settlement, as plain data, and nothing more."""
    s = await get_settlement(session, settlement_id)
    order = await dispatch.get_order(session, s.order_id)
    events = await dispatch.order_events(session, s.order_id)
    payment = await session.get(Payment, s.order_id)
    rules = await session.get(RuleSet, s.rule_version)
    entries = await ledger.entries_for_order(session, s.order_id)
    evidence_photos = await photos.evidence_of(session, s.order_id)
    return {
        "settlement": s.model_dump(mode="json"),
        "order": {"id": str(order.id), "kind": order.kind, "status": order.status, "customer_id": str(order.customer_id),
                  "technician_id": str(order.technician_id) if order.technician_id else None,
                  "price_estimate_minor": order.price_estimate_minor, "currency": order.currency},
        # Check-in, identity verification and the work report travel in the events' payloads.
        "timeline": [{"action": e.action, "from": e.from_status, "to": e.to_status, "actor_role": e.actor_role,
                      "reason": e.reason, "payload": _audit_payload(e.payload), "at": e.created_at.isoformat()}
                     for e in events],
        "review": {"review_id": s.review_id, "stars": s.stars},
        "rules": rules.model_dump(mode="json") if rules else None,
        "arithmetic": s.arithmetic,
        "payment": payment.model_dump(mode="json") if payment else None,
        "provider_ids": {"hold": payment.hold_id if payment else None, "charge": payment.charge_id if payment else None,
                         "connected_account": s.connected_account_id, "transfer": s.transfer_id},
        "ledger": [{"id": str(e.id), "seq": e.seq, "kind": e.kind, "business_key": e.business_key,
                    "provider_object_id": e.provider_object_id, "created_at": e.created_at.isoformat(),
                    "content_hash": e.content_hash,
                    "postings": [{"account": p.account, "amount_minor": p.amount_minor, "currency": p.currency}
                                 for p in postings]} for e, postings in entries],
        # The bytes are fetched from `href`, or found in the archive as photos/<sha256>.<ext>.
        "photos": [{"sha256": p.ref, "media_type": p.media_type, "size_bytes": p.size_bytes,
                    "uploaded_at": p.uploaded_at.isoformat(), "shows": p.shows,
                    "href": f"/v1/orders/{order.id}/photos/{p.ref}", "file": _photo_file(p.ref, p.media_type)}
                   for p in evidence_photos],
    }


_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def _photo_file(sha256: str, media_type: str) -> str:
    return f"photos/{sha256}.{_EXTENSIONS[media_type]}"


async def evidence_archive(session: AsyncSession, settlement_id: uuid.UUID) -> bytes:
    """The bundle to keep or hand on: evidence.json and each photo's bytes under the name its entry
    gives, so that anyone can check a photo against its hash without access to this system."""
    bundle = await evidence(session, settlement_id)
    buffer = io.BytesIO()
    # Photos are compressed already: stored as they are.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("evidence.json", json.dumps(bundle, ensure_ascii=False, indent=2))
        for photo in bundle["photos"]:
            archive.writestr(photo["file"], await objects.get_store().get_async(photo["sha256"]))
    return buffer.getvalue()


@dataclass
class ChainReport:
    checked: int = 0
    chains: int = 0
    anchors: int = 0
    broken: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken


async def _postings_by_entry(session: AsyncSession, entry_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[ledger.Posting]]:
    found: dict[uuid.UUID, list[ledger.Posting]] = {entry_id: [] for entry_id in entry_ids}
    for p in (await session.exec(select(LedgerPosting).where(LedgerPosting.entry_id.in_(entry_ids))
                                 .execution_options(populate_existing=True))).all():
        found[p.entry_id].append(ledger.Posting(p.account, p.amount_minor, p.currency))
    return found


def _entry_problems(e: LedgerEntry, postings: list[ledger.Posting], prev_hash: str, expected_seq: int) -> list[str]:
    problems = []
    if e.chain_seq != expected_seq:
        problems.append(f"chain position {e.chain_seq} where {expected_seq} was expected (an entry is missing)")
    if e.prev_hash != prev_hash:
        problems.append("link to the previous entry is broken")
    if ledger.chain_hash(e.prev_hash, ledger.canonical_content(e, postings)) != e.content_hash:
        problems.append("content does not match its hash")
    if sum(p.amount_minor for p in postings) != 0 or e.id != ledger.entry_id_for(e.business_key):
        problems.append("postings or id are not what was appended")
    return problems


async def _verify_entries(session: AsyncSession, report: ChainReport, batch: int) -> None:
    """Walk every chain in (chain, chain_seq) order and name each entry whose content or link differs."""
    chain, prev_hash, expected_seq = None, ledger.GENESIS_HASH, 1
    after: tuple[str, int] = ("", 0)
    while True:
        entries = (await session.exec(select(LedgerEntry).where(tuple_(LedgerEntry.chain, LedgerEntry.chain_seq) > after)
                                      .order_by(LedgerEntry.chain, LedgerEntry.chain_seq).limit(batch)
                                      .execution_options(populate_existing=True))).all()
        if not entries:
            return
        postings = await _postings_by_entry(session, [e.id for e in entries])
        for e in entries:
            if e.chain != chain:
                chain, prev_hash, expected_seq = e.chain, ledger.GENESIS_HASH, 1
                report.chains += 1
            problems = _entry_problems(e, postings[e.id], prev_hash, expected_seq)
            if problems:
                report.broken.append({"entry_id": str(e.id), "seq": e.seq, "chain": e.chain,
                                      "chain_seq": e.chain_seq, "business_key": e.business_key, "problems": problems})
            prev_hash, expected_seq = e.content_hash, e.chain_seq + 1
            report.checked += 1
        after = (entries[-1].chain, entries[-1].chain_seq)


async def _verify_anchors(session: AsyncSession, report: ChainReport) -> None:
    """Each anchor links to the one before and names tips that are still in their chains."""
    prev_hash = ledger.GENESIS_HASH
    for a in (await session.exec(select(LedgerAnchor).order_by(LedgerAnchor.day)
                                 .execution_options(populate_existing=True))).all():
        problems = []
        if a.prev_hash != prev_hash:
            problems.append("link to the previous anchor is broken")
        if ledger.anchor_hash(a.prev_hash, a.day, a.tips) != a.anchor_hash:
            problems.append("tips do not match the anchor's hash")
        for chain, (seq, tip_hash) in sorted(a.tips.items()):
            found = (await session.exec(select(LedgerEntry.content_hash).where(
                LedgerEntry.chain == chain, LedgerEntry.chain_seq == seq))).first()
            if found != tip_hash:
                problems.append(f"anchored tip {chain}#{seq} is {'changed' if found else 'missing'}")
        if problems:
            report.broken.append({"anchor": a.day.isoformat(), "problems": problems})
        prev_hash = a.anchor_hash
        report.anchors += 1


async def verify_chain(session: AsyncSession, batch: int = 1000) -> ChainReport:
    """Recompute every chain and every daily anchor; name each entry or anchor that differs."""
    report = ChainReport()
    await _verify_entries(session, report, batch)
    await _verify_anchors(session, report)
    return report


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Text that a spreadsheet would read as a formula gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(v) for v in values])
    return buffer.getvalue()


async def ledger_csv(session: AsyncSession, start: datetime, end: datetime) -> AsyncIterator[str]:
    yield _csv_line(["entry_id", "seq", "created_at", "kind", "business_key", "order_id", "settlement_id",
                     "provider_object_id", "account", "amount_minor", "currency", "content_hash"])
    result = await session.stream(
        select(LedgerEntry, LedgerPosting).join(LedgerPosting, LedgerPosting.entry_id == LedgerEntry.id)
        .where(LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .order_by(LedgerEntry.seq, LedgerPosting.id))
    async for e, p in result:
        yield _csv_line([e.id, e.seq, e.created_at.isoformat(), e.kind, e.business_key, e.order_id or "",
                         e.settlement_id or "", e.provider_object_id or "", p.account, p.amount_minor, p.currency,
                         e.content_hash])


async def settlements_csv(session: AsyncSession, start: datetime, end: datetime) -> AsyncIterator[str]:
    columns = ["id", "order_id", "technician_id", "station_id", "status", "stars", "rule_version", "currency",
               "base_minor", "adjustment_minor", "fee_minor", "payout_minor", "clawback_minor", "transfer_id",
               "created_at", "transferred_at"]
    yield _csv_line(columns)
    result = await session.stream(_filtered(SettlementFilter(created_from=start, created_to=end))
                                  .order_by(Settlement.created_at, Settlement.id))
    async for (s,) in result:
        yield _csv_line([getattr(s, c) if getattr(s, c) is not None else "" for c in columns])
