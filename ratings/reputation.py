"""Technician reputation from star reviews, and review-abuse detectors. Pure.

The score is a Bayesian average shrunk toward the platform mean:

    score = (prior_weight * prior_mean + sum(w_i * stars_i)) / (prior_weight + sum(w_i))

where each review's weight w_i is its time decay times the automatic-review and
repeat-customer factors (excluded reviews weigh 0). Because every weight depends only
on the review itself and on the same customer's *earlier* reviews, appending a review (later
than all others) never re-weights them, so the score moves monotonically toward its stars.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_STARS = 1
MAX_STARS = 5


@dataclass(frozen=True, slots=True)
class ReviewInput:
    stars: int
    at: datetime
    automatic: bool
    customer_id: str
    excluded: bool
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class ReputationConfig:
    prior_mean: float
    prior_weight: float
    half_life_days: float
    automatic_weight: float
    repeat_customer_weight: float
    repeat_period_days: float

    def __post_init__(self) -> None:
        if not MIN_STARS <= self.prior_mean <= MAX_STARS:
            raise ValueError(f"prior_mean must be in [{MIN_STARS}, {MAX_STARS}], got {self.prior_mean}")
        # A zero prior weight would leave a technician without reviews undefined.
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight must be > 0, got {self.prior_weight}")
        if not self.half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0, got {self.half_life_days}")
        for name in ("automatic_weight", "repeat_customer_weight"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not self.repeat_period_days >= 0:
            raise ValueError(f"repeat_period_days must be >= 0, got {self.repeat_period_days}")


@dataclass(frozen=True, slots=True)
class Reputation:
    score: float
    effective_count: float  # sum of review weights: what the score really rests on
    count: int  # reviews that carry any weight


def _sort_key(review: ReviewInput) -> tuple:
    # A total order on content, so ties at the same instant never depend on input order.
    return (review.at, review.customer_id, review.stars, review.automatic, review.kind or "")


def _validate(review: ReviewInput, now: datetime) -> None:
    if not MIN_STARS <= review.stars <= MAX_STARS:
        raise ValueError(f"stars must be in [{MIN_STARS}, {MAX_STARS}], got {review.stars}")
    if review.at > now:
        raise ValueError(f"review at {review.at.isoformat()} is after now {now.isoformat()}")


def review_weights(
    reviews: Iterable[ReviewInput], now: datetime, config: ReputationConfig
) -> list[tuple[ReviewInput, float]]:
    """Each counted review with its weight, in time order."""
    ordered = sorted(reviews, key=_sort_key)
    repeat_period = timedelta(days=config.repeat_period_days)
    last_counted_by_customer: dict[str, datetime] = {}
    weighted: list[tuple[ReviewInput, float]] = []
    for review in ordered:
        _validate(review, now)
        if review.excluded:
            continue
        age_days = (now - review.at).total_seconds() / 86400
        weight = 0.5 ** (age_days / config.half_life_days)
        if review.automatic:
            weight *= config.automatic_weight
        previous = last_counted_by_customer.get(review.customer_id)
        if previous is not None and review.at - previous <= repeat_period:
            weight *= config.repeat_customer_weight
        last_counted_by_customer[review.customer_id] = review.at
        if weight > 0:
            weighted.append((review, weight))
    return weighted


def reputation(
    reviews: Iterable[ReviewInput],
    now: datetime,
    config: ReputationConfig,
    *,
    kind: str | None = None,
) -> Reputation:
    """Reputation over all reviews, or only those of one certification `kind`."""
    if kind is not None:
        reviews = [r for r in reviews if r.kind == kind]
    weighted = review_weights(reviews, now, config)
    # fsum is exactly rounded, so the result is independent of summation order.
    total_weight = math.fsum(w for _, w in weighted)
    weighted_stars = math.fsum(w * r.stars for r, w in weighted)
    score = (config.prior_weight * config.prior_mean + weighted_stars) / (
        config.prior_weight + total_weight
    )
    # Clamp away the last-ulp rounding so the score is provably within the star range.
    score = min(max(score, MIN_STARS), MAX_STARS)
    return Reputation(score=score, effective_count=total_weight, count=len(weighted))


def reputation_by_kind(
    reviews: Iterable[ReviewInput], now: datetime, config: ReputationConfig
) -> dict[str, Reputation]:
    """One reputation per certification kind present in the reviews."""
    by_kind: dict[str, list[ReviewInput]] = defaultdict(list)
    for review in reviews:
        if review.kind is not None:
            by_kind[review.kind].append(review)
    return {kind: reputation(rs, now, config) for kind, rs in sorted(by_kind.items())}


def flag_for_retraining(rep: Reputation, threshold: float, min_count: float) -> bool:
    """Low score resting on enough recent evidence.

    Compares `effective_count`, not `count`: a few bad reviews from years ago should not
    send anyone back to training.
    """
    return rep.effective_count >= min_count and rep.score < threshold


@dataclass(frozen=True, slots=True)
class OneStarCustomerEvidence:
    customer_id: str
    review_count: int
    first_at: datetime
    last_at: datetime


def customers_always_one_star(
    reviews_by_customer: Mapping[str, Sequence[ReviewInput]], min_reviews: int
) -> list[OneStarCustomerEvidence]:
    """Customers who wrote at least `min_reviews` reviews, every one of them 1 star.

    Automatic reviews are ignored (the customer did not write them); excluded ones are
    kept, since an upheld appeal is itself part of the pattern.
    """
    found = []
    for customer_id, reviews in sorted(reviews_by_customer.items()):
        written = [r for r in reviews if not r.automatic]
        if len(written) >= min_reviews and all(r.stars == MIN_STARS for r in written):
            times = sorted(r.at for r in written)
            found.append(OneStarCustomerEvidence(customer_id, len(written), times[0], times[-1]))
    return found


@dataclass(frozen=True, slots=True)
class FiveStarBurstEvidence:
    start_at: datetime
    end_at: datetime
    review_count: int
    customer_ids: tuple[str, ...]


def five_star_burst_from_new_accounts(
    reviews_with_account_age: Iterable[tuple[ReviewInput, timedelta]],
    window: timedelta,
    min_count: int,
    max_account_age: timedelta,
) -> list[FiveStarBurstEvidence]:
    """Bursts of >= `min_count` 5-star reviews within `window` from accounts younger
    than `max_account_age` (age at the time of the review), for one technician.

    Overlapping windows are merged, so one campaign yields one piece of evidence.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    suspicious = sorted(
        (
            review
            for review, account_age in reviews_with_account_age
            if review.stars == MAX_STARS and not review.automatic and account_age <= max_account_age
        ),
        key=_sort_key,
    )
    # Mark every review lying in some window that holds enough of them.
    in_burst = [False] * len(suspicious)
    end = 0
    for start in range(len(suspicious)):
        end = max(end, start)
        while end + 1 < len(suspicious) and suspicious[end + 1].at - suspicious[start].at <= window:
            end += 1
        if end - start + 1 >= min_count:
            for i in range(start, end + 1):
                in_burst[i] = True

    # Consecutive marked reviews closer than `window` belong to the same burst.
    runs: list[list[ReviewInput]] = []
    for review, marked in zip(suspicious, in_burst):
        if not marked:
            continue
        if runs and review.at - runs[-1][-1].at <= window:
            runs[-1].append(review)
        else:
            runs.append([review])
    return [
        FiveStarBurstEvidence(
            start_at=run[0].at,
            end_at=run[-1].at,
            review_count=len(run),
            customer_ids=tuple(sorted({r.customer_id for r in run})),
        )
        for run in runs
    ]
