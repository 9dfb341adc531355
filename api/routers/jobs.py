"""The event backbone for operations: dead letters (deliveries that used up their tries), retry
one or discard one; the engine's health. Admins act; auditors may read."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import Admin, SessionDep, Staff
from kit import jobs
from kit.models import OutboxMessage
from kit.schemas import Page

router = APIRouter(tags=["operations"])
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class DeadLetterPublic(BaseModel):
    id: int
    event_id: int
    topic: str
    subscriber: str
    order_id: str | None
    state: str
    attempts: int
    deferrals: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] | None = None


def _public(delivery: Any, payload: dict[str, Any] | None = None) -> DeadLetterPublic:
    return DeadLetterPublic(id=delivery.id, event_id=delivery.event_id, topic=delivery.topic,
                            subscriber=delivery.subscriber, order_id=delivery.order_key, state=delivery.state,
                            attempts=delivery.attempts, deferrals=delivery.deferrals, last_error=delivery.last_error,
                            created_at=delivery.created_at, finished_at=delivery.finished_at, payload=payload)


@router.get("/v1/ops/dead-letters")
async def list_dead_letters(
    staff: Staff, session: SessionDep, subscriber: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DeadLetterPublic]:
    """Newest first, with each event's payload."""
    rows, next_cursor = await jobs.list_dead_letters(session, limit=limit, cursor=cursor, subscriber=subscriber)
    payloads = {}
    for row in rows:
        message = await session.get(OutboxMessage, row.event_id)
        payloads[row.id] = message.payload if message else None
    return Page(data=[_public(r, payloads[r.id]) for r in rows], next_cursor=next_cursor)


@router.post("/v1/ops/dead-letters/{delivery_id}/retry")
async def retry_dead_letter(delivery_id: DeliveryId, admin: Admin, session: SessionDep) -> DeadLetterPublic:
    """Delivered again with a fresh count of tries; 409 if it is not a dead letter."""
    return _public(await jobs.retry_dead_letter(session, delivery_id))


@router.post("/v1/ops/dead-letters/{delivery_id}/discard")
async def discard_dead_letter(delivery_id: DeliveryId, admin: Admin, session: SessionDep) -> DeadLetterPublic:
    """Never delivered; kept as the record. 409 if it is not a dead letter."""
    return _public(await jobs.discard_dead_letter(session, delivery_id))


@router.get("/v1/ops/engine")
async def engine(staff: Staff, session: SessionDep) -> dict[str, Any]:
    """Workers alive, jobs queued, dead letters, the oldest ready job's age."""
    return await jobs.engine_health(session)
