"""Reactions to other packages' events. Delivery is at-least-once: every step is idempotent
(provider idempotency keys, deterministic ledger keys, one payment and one settlement per order)."""

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.events import OrderStatusChanged
from dispatch.field.events import PriceChangeApproved
from kit.events import handles, subscribe
from ratings.events import ReviewFinalized
from settlement import cancellation, service


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    gateway = service.get_gateway()
    if event.to == "accepted":
        await service.place_hold(session, event.order_id, gateway)
    elif event.to == "completed":
        await service.capture_order(session, event.order_id, event.payload.get("final_price_minor"), gateway)
    elif event.to == "cancelled":
        await cancellation.settle_cancelled_order(
            session, event.order_id, technician_id=event.technician_id,
            fee=event.payload.get("cancellation_fee"), gateway=gateway)


@handles(PriceChangeApproved)
async def on_price_change_approved(session: AsyncSession, event: PriceChangeApproved) -> None:
    await service.raise_hold(session, event.order_id, event.amount_minor, service.get_gateway())


@handles(ReviewFinalized)
async def on_review_finalized(session: AsyncSession, event: ReviewFinalized) -> None:
    await service.compute_settlement(session, order_id=event.order_id, review_id=str(event.review_id),
                                     stars=event.stars)


def register() -> None:
    """Subscribe settlement to its events; the app lifespan, the workers and the tests call this."""
    subscribe("dispatch.order_status_changed", on_order_status_changed)
    subscribe("field.price_change_approved", on_price_change_approved)
    subscribe("ratings.review_finalized", on_review_finalized)
