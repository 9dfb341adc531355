"""Reviews, customer ratings, appeals, reputation and abuse flags. Services flush, never commit.

Every function that depends on the time takes `now`, so tests and the job drive the clock.
Only finalized, non-excluded reviews feed reputations: what matching ranks on is what
settlement paid on, and an edit inside the window cannot swing either.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from sqlalchemy import and_, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.errors import Conflict, DomainError, InvalidInput, NotFound
from kit.events import publish_event
from dispatch import service as dispatch_service
from kit.pagination import page_of, paginate
from dispatch.service import Actor, get_order, get_order_for, transition
from dispatch.technicians import get_technician
from ratings import events
from ratings.models import (
    COMMENT_MAX_CHARS, CUSTOMER_TAGS, REVIEW_TAGS, Appeal, CustomerRating, Flag, Review,
)
from ratings.reputation import (
    Reputation, ReputationConfig, ReviewInput, customers_always_one_star,
    five_star_burst_from_new_accounts, flag_for_retraining, reputation, reputation_by_kind,
)

log = structlog.get_logger(__name__)
RATINGS_ACTOR = Actor.system("ratings")


class OrderNotReviewable(Conflict):
    """Only a completed order can be reviewed or have its customer rated."""

    slug = "order-not-reviewable"


class ReviewExists(Conflict):
    """This order already has a review."""

    slug = "review-exists"


class ReviewWindowClosed(Conflict):
    """The review window of this order has closed."""

    slug = "review-window-closed"


class ReviewFrozen(Conflict):
    """The edit window of this review has closed."""

    slug = "review-frozen"


class CustomerRatingExists(Conflict):
    """This order's customer has already been rated."""

    slug = "customer-rating-exists"


class AppealExists(Conflict):
    """This review has already been appealed."""

    slug = "appeal-exists"


class AppealDecided(Conflict):
    """This appeal has already been decided."""

    slug = "appeal-decided"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def _check(stars: int, tags: Iterable[str], vocabulary: tuple[str, ...]) -> list[str]:
    if not 1 <= stars <= 5:
        raise InvalidInput("stars must be 1 to 5")
    tags = list(dict.fromkeys(tags))
    unknown = sorted(set(tags) - set(vocabulary))
    if unknown:
        raise InvalidInput(f"unknown tags: {', '.join(unknown)}")
    return tags


async def _review_of_order(session: AsyncSession, order_id: uuid.UUID) -> Review | None:
    return (await session.exec(
        select(Review).where(Review.order_id == order_id).execution_options(populate_existing=True)
    )).first()


# Reviews


async def submit_review(
    session: AsyncSession, *, order_id: uuid.UUID, customer_id: uuid.UUID, stars: int,
    tags: Iterable[str] = (), comment: str | None = None, now: datetime | None = None,
) -> Review:
    now = _now(now)
    settings = get_settings()
    tags = _check(stars, tags, REVIEW_TAGS)
    if comment is not None and len(comment) > COMMENT_MAX_CHARS:
        raise InvalidInput(f"the comment is longer than {COMMENT_MAX_CHARS} characters")
    order = await get_order_for(session, order_id, role="customer", customer_id=customer_id)
    if await _review_of_order(session, order.id) is not None:
        raise ReviewExists()
    if order.status != "completed" or order.technician_id is None:
        raise OrderNotReviewable(f"the order is {order.status}; only a completed order can be reviewed")
    completed_at = await dispatch_service.completed_at(session, order.id)
    if completed_at is None or now >= completed_at + timedelta(hours=settings.review_window_h):
        raise ReviewWindowClosed()
    review = Review(
        order_id=order.id, customer_id=customer_id, technician_id=order.technician_id,
        kind=order.required_certification, stars=stars, tags=tags, comment=comment,
        created_at=now, updated_at=now, editable_until=now + timedelta(hours=settings.review_edit_window_h),
    )
    session.add(review)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent submission or the automatic review won
        raise ReviewExists() from exc
    await publish_event(session, events.ReviewSubmitted(
        order_id=review.order_id, review_id=review.id, technician_id=review.technician_id, stars=review.stars))
    return review


async def update_review(
    session: AsyncSession, *, order_id: uuid.UUID, customer_id: uuid.UUID, changes: dict[str, Any],
    now: datetime | None = None,
) -> Review:
    now = _now(now)
    order = await get_order_for(session, order_id, role="customer", customer_id=customer_id)
    review = await _review_of_order(session, order.id)
    if review is None:
        raise NotFound("this order has no review")
    if review.finalized_at is not None or now >= review.editable_until:
        raise ReviewFrozen()
    stars = changes.get("stars", review.stars)
    tags = _check(stars, changes.get("tags", review.tags), REVIEW_TAGS)
    comment = changes.get("comment", review.comment)
    if comment is not None and len(comment) > COMMENT_MAX_CHARS:
        raise InvalidInput(f"the comment is longer than {COMMENT_MAX_CHARS} characters")
    # Conditional on still being open, so an edit cannot slip in after the job froze it.
    result = await session.exec(
        update(Review)
        .where(Review.id == review.id, Review.finalized_at.is_(None), Review.editable_until > now)
        .values(stars=stars, tags=tags, comment=comment, updated_at=now)
    )
    if result.rowcount != 1:
        raise ReviewFrozen()
    await session.flush()
    refreshed = await _review_of_order(session, order.id)
    assert refreshed is not None
    return refreshed


async def review_for(
    session: AsyncSession, order_id: uuid.UUID, *, role: str, customer_id: uuid.UUID | None = None,
    technician_id: uuid.UUID | None = None,
) -> Review:
    """The order's review as the caller may see it: its customer, its technician, or staff."""
    order = await get_order_for(session, order_id, role=role, customer_id=customer_id, technician_id=technician_id)
    review = await _review_of_order(session, order.id)
    if review is None:
        raise NotFound("this order has no review")
    return review


async def finalize_review(session: AsyncSession, review_id: uuid.UUID, now: datetime | None = None) -> bool:
    """Freeze a review, move its order to `reviewed` and emit `ratings.review_finalized`.

    The UPDATE only matches while `finalized_at` is NULL, so of any number of concurrent
    callers exactly one proceeds: the event is emitted once per review, and the review is
    unique per order. Returns whether this call finalized it.
    """
    now = _now(now)
    try:
        async with session.begin_nested():
            result = await session.exec(
                update(Review).where(Review.id == review_id, Review.finalized_at.is_(None))
                .values(finalized_at=now)
            )
            if result.rowcount != 1:
                return False
            review = await session.get(Review, review_id, populate_existing=True)
            assert review is not None
            await transition(session, review.order_id, "review", RATINGS_ACTOR, now=now,
                             payload={"review_id": str(review.id), "automatic": review.automatic})
            assert review.finalized_at is not None
            await publish_event(session, events.ReviewFinalized(
                order_id=review.order_id, review_id=review.id, technician_id=review.technician_id,
                customer_id=review.customer_id, stars=review.stars, automatic=review.automatic,
                finalized_at=review.finalized_at))
    except DomainError as exc:  # e.g. the order left `completed` by another path; left for ops
        log.warning("ratings.finalize_failed", review_id=str(review_id), error=exc.detail)
        return False
    return True


async def create_automatic_review(
    session: AsyncSession, *, order_id: uuid.UUID, completed_at: datetime, now: datetime | None = None,
) -> Review | None:
    """The neutral review closing an order its customer did not review in time; None if one exists."""
    now = _now(now)
    settings = get_settings()
    order = await get_order(session, order_id)
    if order.technician_id is None:
        raise OrderNotReviewable("the order has no technician")
    deadline = completed_at + timedelta(hours=settings.review_window_h)
    review = Review(
        order_id=order.id, customer_id=order.customer_id, technician_id=order.technician_id,
        kind=order.required_certification, stars=settings.review_automatic_stars, automatic=True,
        created_at=deadline, updated_at=deadline, editable_until=deadline,
    )
    session.add(review)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:  # the customer's own review arrived first
        return None
    return review


# Customer ratings (two-sided; never shown to the customer)


async def rate_customer(
    session: AsyncSession, *, order_id: uuid.UUID, technician_id: uuid.UUID, stars: int,
    tags: Iterable[str] = (), now: datetime | None = None,
) -> CustomerRating:
    now = _now(now)
    tags = _check(stars, tags, CUSTOMER_TAGS)
    order = await get_order_for(session, order_id, role="technician", technician_id=technician_id)
    if order.status not in ("completed", "reviewed", "settled"):
        raise OrderNotReviewable(f"the order is {order.status}; only a completed order can be rated")
    rating = CustomerRating(order_id=order.id, customer_id=order.customer_id, technician_id=technician_id,
                            stars=stars, tags=tags, created_at=now)
    session.add(rating)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise CustomerRatingExists() from exc
    return rating


async def customer_ratings(
    session: AsyncSession, customer_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None,
) -> tuple[list[CustomerRating], str | None]:
    statement = select(CustomerRating).where(CustomerRating.customer_id == customer_id)
    return page_of(list((await session.exec(paginate(statement, CustomerRating, limit, cursor))).all()), limit)


async def customer_rating_summary(session: AsyncSession, customer_id: uuid.UUID) -> tuple[float | None, int]:
    """(mean stars, count) technicians gave this customer: for operations and matching."""
    mean, count = (await session.exec(
        select(func.avg(CustomerRating.stars), func.count()).where(CustomerRating.customer_id == customer_id)
    )).one()
    return (float(mean) if mean is not None else None), count


# Reputation


def reputation_config(platform_mean: float) -> ReputationConfig:
    s = get_settings()
    return ReputationConfig(
        prior_mean=platform_mean, prior_weight=s.reputation_prior_weight,
        half_life_days=s.reputation_half_life_days, automatic_weight=s.review_automatic_weight,
        repeat_customer_weight=s.review_repeat_weight, repeat_period_days=s.review_repeat_period_days,
    )


def _counted(now: datetime) -> tuple[Any, ...]:
    # Excluded reviews are filtered here rather than passed with excluded=True: reputation.py
    # skips them before any weighting, so the result is the same with fewer rows.
    return (Review.finalized_at.is_not(None), Review.excluded.is_(False), Review.created_at <= now)


async def _load(
    session: AsyncSession, technician_ids: list[uuid.UUID], now: datetime,
) -> tuple[float, dict[uuid.UUID, list[ReviewInput]]]:
    """The platform mean and the counted reviews of these technicians, in one query.

    The platform mean (customers' own reviews only) is itself shrunk toward the configured
    prior, so a young platform is not ranked against the mean of its first few reviews.
    """
    s = get_settings()
    platform = (
        select(func.coalesce(func.sum(Review.stars), 0).label("total"), func.count().label("n"))
        .where(*_counted(now), Review.automatic.is_(False))
        .subquery()
    )
    rows = (await session.exec(
        select(platform.c.total, platform.c.n, Review.technician_id, Review.stars, Review.created_at,
               Review.automatic, Review.customer_id, Review.kind)
        .select_from(platform)
        .outerjoin(Review, and_(Review.technician_id.in_(technician_ids), *_counted(now)))
    )).all()
    total, n = rows[0][0], rows[0][1]
    k = s.reputation_platform_prior_reviews
    platform_mean = min(max((k * s.reputation_prior_mean + total) / (k + n), 1.0), 5.0)
    by_technician: dict[uuid.UUID, list[ReviewInput]] = defaultdict(list)
    for _, _, technician_id, stars, at, automatic, customer_id, kind in rows:
        if technician_id is not None:
            by_technician[technician_id].append(ReviewInput(
                stars=stars, at=at, automatic=automatic, customer_id=str(customer_id), excluded=False, kind=kind))
    return platform_mean, by_technician


async def technician_reputation(
    session: AsyncSession, technician_id: uuid.UUID, kind: str | None = None, now: datetime | None = None,
) -> Reputation:
    now = _now(now)
    platform_mean, reviews = await _load(session, [technician_id], now)
    return reputation(reviews[technician_id], now, reputation_config(platform_mean), kind=kind)


async def technician_reputation_by_kind(
    session: AsyncSession, technician_id: uuid.UUID, now: datetime | None = None,
) -> tuple[Reputation, dict[str, Reputation]]:
    """Overall and per certification kind, for the public reputation view."""
    now = _now(now)
    await get_technician(session, technician_id)
    platform_mean, reviews = await _load(session, [technician_id], now)
    config = reputation_config(platform_mean)
    mine = reviews[technician_id]
    return reputation(mine, now, config), reputation_by_kind(mine, now, config)


async def reputations(
    session: AsyncSession, technician_ids: Iterable[uuid.UUID], now: datetime | None = None,
) -> dict[uuid.UUID, float]:
    """Scores for matching: every id gets one (the platform mean if it has no reviews)."""
    now = _now(now)
    ids = list(dict.fromkeys(technician_ids))
    platform_mean, reviews = await _load(session, ids, now)
    config = reputation_config(platform_mean)
    return {tid: reputation(reviews[tid], now, config).score for tid in ids}


# Appeals


async def file_appeal(
    session: AsyncSession, *, review_id: uuid.UUID, technician_id: uuid.UUID, reason: str,
    now: datetime | None = None,
) -> Appeal:
    now = _now(now)
    review = await session.get(Review, review_id)
    if review is None or review.technician_id != technician_id:
        raise NotFound("no such review")
    appeal = Appeal(review_id=review.id, technician_id=technician_id, reason=reason, created_at=now)
    session.add(appeal)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AppealExists() from exc
    return appeal


async def decide_appeal(
    session: AsyncSession, *, appeal_id: uuid.UUID, decided_by: uuid.UUID, decision: str, reason: str,
    now: datetime | None = None,
) -> Appeal:
    """Upheld: the review is excluded from reputations (kept, for the record). Rejected: nothing changes."""
    now = _now(now)
    if decision not in ("upheld", "rejected"):
        raise InvalidInput("decision must be upheld or rejected")
    appeal = await session.get(Appeal, appeal_id)
    if appeal is None:
        raise NotFound("no such appeal")
    result = await session.exec(
        update(Appeal).where(Appeal.id == appeal_id, Appeal.status == "pending")
        .values(status=decision, decided_by=decided_by, decided_at=now, decision_reason=reason)
    )
    if result.rowcount != 1:
        raise AppealDecided()
    if decision == "upheld":
        await session.exec(update(Review).where(Review.id == appeal.review_id).values(excluded=True, updated_at=now))
        review = await session.get(Review, appeal.review_id, populate_existing=True)
        assert review is not None
        await publish_event(session, events.ReviewExcluded(
            order_id=review.order_id, review_id=review.id, technician_id=review.technician_id, appeal_id=appeal.id))
        await refresh_flags(session, technician_ids=[review.technician_id], now=now)
    await session.flush()
    decided = await session.get(Appeal, appeal_id, populate_existing=True)
    assert decided is not None
    return decided


async def list_appeals(
    session: AsyncSession, *, status: str | None, limit: int = 50, cursor: str | None = None,
) -> tuple[list[Appeal], str | None]:
    statement = select(Appeal)
    if status is not None:
        statement = statement.where(Appeal.status == status)
    return page_of(list((await session.exec(paginate(statement, Appeal, limit, cursor))).all()), limit)


# Flags


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


async def _set_flag(
    session: AsyncSession, kind: str, subject_type: str, subject_id: uuid.UUID,
    evidence: dict[str, Any] | None, now: datetime,
) -> None:
    """Raise (or refresh) the flag with its evidence, or clear it when the pattern is gone."""
    if evidence is None:
        await session.exec(
            update(Flag).where(Flag.kind == kind, Flag.subject_id == subject_id, Flag.cleared_at.is_(None))
            .values(cleared_at=now)
        )
        return
    statement = insert(Flag).values(
        id=uuid.uuid4(), kind=kind, subject_type=subject_type, subject_id=subject_id, evidence=evidence,
        created_at=now, detected_at=now,
    )
    await session.exec(statement.on_conflict_do_update(
        index_elements=[Flag.kind, Flag.subject_id],
        set_={"evidence": evidence, "detected_at": now, "cleared_at": None},
    ))


async def _one_star_evidence(session: AsyncSession, customer_id: uuid.UUID, now: datetime) -> dict[str, Any] | None:
    rows = (await session.exec(
        select(Review.id, Review.stars, Review.created_at, Review.automatic, Review.technician_id)
        .where(Review.customer_id == customer_id, Review.finalized_at.is_not(None), Review.automatic.is_(False),
               Review.created_at <= now)
    )).all()
    inputs = [ReviewInput(stars=stars, at=at, automatic=automatic, customer_id=str(customer_id), excluded=False)
              for _, stars, at, automatic, _ in rows]
    found = customers_always_one_star({str(customer_id): inputs}, get_settings().abuse_one_star_min_reviews)
    if not found:
        return None
    evidence = found[0]
    return {
        "review_count": evidence.review_count, "first_at": _iso(evidence.first_at), "last_at": _iso(evidence.last_at),
        "review_ids": sorted(str(r[0]) for r in rows), "technician_ids": sorted({str(r[4]) for r in rows}),
    }


async def _burst_evidence(session: AsyncSession, technician_id: uuid.UUID, now: datetime) -> dict[str, Any] | None:
    s = get_settings()
    rows = (await session.exec(
        select(Review.stars, Review.created_at, Review.automatic, Review.customer_id)
        .where(Review.technician_id == technician_id, Review.stars == 5, Review.automatic.is_(False),
               Review.finalized_at.is_not(None), Review.created_at <= now)
    )).all()
    signed_up = await dispatch_service.customers_since(session, (row[3] for row in rows))
    inputs = [
        (ReviewInput(stars=stars, at=at, automatic=automatic, customer_id=str(customer_id), excluded=False),
         at - signed_up[customer_id])
        for stars, at, automatic, customer_id in rows
    ]
    bursts = five_star_burst_from_new_accounts(
        inputs, window=timedelta(hours=s.abuse_burst_window_h), min_count=s.abuse_burst_min_count,
        max_account_age=timedelta(days=s.abuse_new_account_days),
    )
    if not bursts:
        return None
    return {"bursts": [
        {"start_at": _iso(b.start_at), "end_at": _iso(b.end_at), "review_count": b.review_count,
         "customer_ids": list(b.customer_ids)}
        for b in bursts
    ], "new_account_days": s.abuse_new_account_days, "window_h": s.abuse_burst_window_h}


async def _retraining_evidence(session: AsyncSession, technician_id: uuid.UUID, now: datetime) -> dict[str, Any] | None:
    s = get_settings()
    rep = await technician_reputation(session, technician_id, now=now)
    if not flag_for_retraining(rep, s.retraining_threshold, s.retraining_min_count):
        return None
    return {"score": round(rep.score, 4), "effective_count": round(rep.effective_count, 4), "count": rep.count,
            "threshold": s.retraining_threshold, "min_count": s.retraining_min_count}


async def refresh_flags(
    session: AsyncSession, *, technician_ids: Iterable[uuid.UUID] = (), customer_ids: Iterable[uuid.UUID] = (),
    now: datetime | None = None,
) -> None:
    """Re-run the detectors for these subjects (after finalizations or an appeal decision)."""
    now = _now(now)
    for customer_id in dict.fromkeys(customer_ids):
        await _set_flag(session, "customer_always_one_star", "customer", customer_id,
                        await _one_star_evidence(session, customer_id, now), now)
    for technician_id in dict.fromkeys(technician_ids):
        await _set_flag(session, "five_star_burst", "technician", technician_id,
                        await _burst_evidence(session, technician_id, now), now)
        await _set_flag(session, "retraining", "technician", technician_id,
                        await _retraining_evidence(session, technician_id, now), now)
    await session.flush()


async def list_flags(
    session: AsyncSession, *, kind: str | None = None, include_cleared: bool = False, limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Flag], str | None]:
    statement = select(Flag).execution_options(populate_existing=True)
    if kind is not None:
        statement = statement.where(Flag.kind == kind)
    if not include_cleared:
        statement = statement.where(Flag.cleared_at.is_(None))
    return page_of(list((await session.exec(paginate(statement, Flag, limit, cursor))).all()), limit)
