"""Orders driven to `completed` through dispatch's own transitions, and finalized reviews for reputations."""

import uuid
from datetime import datetime, timedelta, timezone

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order
from dispatch.service import Actor, create_order, transition
from ratings.models import Review
from tests.factories import CustomerCtx, TechnicianCtx

SYSTEM = Actor.system("test")


async def completed_order(
    session: AsyncSession, customer: CustomerCtx, technician: TechnicianCtx, *,
    completed_at: datetime | None = None, kind: str = "repair", until: str = "complete",
) -> Order:
    completed_at = completed_at or datetime.now(timezone.utc) - timedelta(hours=1)
    order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                               kind=kind, actor=SYSTEM, now=completed_at - timedelta(hours=2))
    steps = ["start_matching", "offer", "accept", "depart", "arrive", "start_service", "complete"]
    for step in steps[: steps.index(until) + 1]:
        order = await transition(session, order.id, step, SYSTEM, now=completed_at,
                                 set_values={"technician_id": technician.technician.id} if step == "accept" else None,
                                 payload={"report_id": "factory-report"} if step == "complete" else None)
    return order


async def finalized_review(
    session: AsyncSession, customer: CustomerCtx, technician: TechnicianCtx, *, stars: int, at: datetime,
    kind: str = "repair", automatic: bool = False,
) -> Review:
    """A frozen review written straight into the table: for reputation arithmetic, not the flow."""
    order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                               kind=kind, actor=SYSTEM, now=at - timedelta(hours=3))
    review = Review(id=uuid.uuid4(), order_id=order.id, customer_id=customer.customer.id,
                    technician_id=technician.technician.id, kind=order.required_certification, stars=stars,
                    automatic=automatic, created_at=at, updated_at=at, editable_until=at, finalized_at=at)
    session.add(review)
    await session.flush()
    return review
