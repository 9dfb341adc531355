"""Settlement: rules, refunds, held settlements, technician payout accounts and settlements,
the provider's webhooks, and the auditor's read-only surface (every read is logged)."""

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import (
    Admin, CurrentTechnician, IdempotencyKey, SessionDep, Staff, get_session, log_read, remember_idempotent,
    replay_idempotent,
)
from kit.errors import InvalidInput
from kit.schemas import Page
from dispatch.security import Principal
from settlement import audit, service, webhooks
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
