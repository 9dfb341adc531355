"""Ratings' event topics and their payloads (the wire contract other packages read)."""

from typing import Any

from ratings.models import Review

REVIEW_SUBMITTED = "ratings.review_submitted"
# Settlement listens to this one: emitted exactly once per order, when the review is frozen.
REVIEW_FINALIZED = "ratings.review_finalized"
# An upheld appeal took a review out of the reputation.
REVIEW_EXCLUDED = "ratings.review_excluded"


def review_submitted(review: Review) -> dict[str, Any]:
    return {"order_id": str(review.order_id), "review_id": str(review.id),
            "technician_id": str(review.technician_id), "stars": review.stars}


def review_finalized(review: Review) -> dict[str, Any]:
    assert review.finalized_at is not None
    return {"order_id": str(review.order_id), "review_id": str(review.id),
            "technician_id": str(review.technician_id), "customer_id": str(review.customer_id),
            "stars": review.stars, "automatic": review.automatic,
            "finalized_at": review.finalized_at.isoformat()}


def review_excluded(review: Review, appeal_id: str) -> dict[str, Any]:
    return {"order_id": str(review.order_id), "review_id": str(review.id),
            "technician_id": str(review.technician_id), "appeal_id": appeal_id}
