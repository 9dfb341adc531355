"""Reactions to other packages' events. Delivery is at-least-once: every step is idempotent
(provider idempotency keys, deterministic ledger keys, one payment and one settlement per order)."""

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from kit.events import subscribe
from settlement import cancellation, service


async def on_order_status_changed(session: AsyncSession, payload: dict[str, Any]) -> None:
    order_id = uuid.UUID(payload["order_id"])
    gateway = service.get_gateway()
    if payload["to"] == "accepted":
        await service.place_hold(session, order_id, gateway)
    elif payload["to"] == "completed":
        final_price = (payload.get("payload") or {}).get("final_price_minor")
        await service.capture_order(session, order_id, final_price, gateway)
    elif payload["to"] == "cancelled":
        technician_id = payload.get("technician_id")
        await cancellation.settle_cancelled_order(
            session, order_id, technician_id=uuid.UUID(technician_id) if technician_id else None,
            fee=(payload.get("payload") or {}).get("cancellation_fee"), gateway=gateway)


async def on_price_change_approved(session: AsyncSession, payload: dict[str, Any]) -> None:
    await service.raise_hold(session, uuid.UUID(payload["order_id"]), int(payload["amount_minor"]),
                             service.get_gateway())


async def on_review_finalized(session: AsyncSession, payload: dict[str, Any]) -> None:
    await service.compute_settlement(session, order_id=uuid.UUID(payload["order_id"]),
                                     review_id=str(payload["review_id"]), stars=int(payload["stars"]))


def register() -> None:
    """Subscribe settlement to its events; the app lifespan, the workers and the tests call this."""
    subscribe("dispatch.order_status_changed", on_order_status_changed)
    subscribe("field.price_change_approved", on_price_change_approved)
    subscribe("ratings.review_finalized", on_review_finalized)
