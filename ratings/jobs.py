"""The periodic job closing reviews: freeze edited-out reviews, and review the unreviewed
automatically once their window ends, so settlement never waits forever."""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import exists, func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from dispatch import service as dispatch_service
from ratings import service
from ratings.models import Review


def _due_reviews(now: datetime):  # noqa: ANN202
    return select(Review.id).where(Review.finalized_at.is_(None), Review.editable_until <= now)


def _unreviewed_orders(now: datetime):  # noqa: ANN202
    """Completed orders without a review whose review window has ended, with their completion time."""
    completed = dispatch_service.completed_orders(now - timedelta(hours=get_settings().review_window_h)).subquery()
    return (select(completed.c.order_id, completed.c.completed_at)
            .where(~exists().where(Review.order_id == completed.c.order_id)))


async def count_due(session: AsyncSession, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    reviews = (await session.exec(select(func.count()).select_from(_due_reviews(now).subquery()))).one()
    orders = (await session.exec(select(func.count()).select_from(_unreviewed_orders(now).subquery()))).one()
    return reviews + orders


async def finalize_due(
    session: AsyncSession, now: datetime | None = None, *, limit: int | None = None,
    on_finalized: Callable[[], None] | None = None,
) -> int:
    """Finalize what is due at `now`; returns how many reviews were finalized.

    Safe to run concurrently and repeatedly: each finalization is a conditional UPDATE, so a
    review (and its order) is finalized, and `ratings.review_finalized` emitted, once.
    """
    now = now or datetime.now(timezone.utc)
    finalized = 0
    technicians: set[uuid.UUID] = set()
    customers: set[uuid.UUID] = set()

    async def finalize(review_id: uuid.UUID) -> None:
        nonlocal finalized
        if await service.finalize_review(session, review_id, now):
            review = await session.get(Review, review_id)
            assert review is not None
            technicians.add(review.technician_id)
            customers.add(review.customer_id)
            finalized += 1
            if on_finalized is not None:
                on_finalized()

    for review_id in (await session.exec(_due_reviews(now).order_by(Review.editable_until).limit(limit))).all():
        await finalize(review_id)
    for order_id, completed_at in (await session.exec(_unreviewed_orders(now).limit(limit))).all():
        review = await service.create_automatic_review(session, order_id=order_id, completed_at=completed_at, now=now)
        if review is not None:
            await finalize(review.id)
    await service.refresh_flags(session, technician_ids=technicians, customer_ids=customers, now=now)
    return finalized
