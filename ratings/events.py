"""Ratings' event topics and their payloads (the wire contract other packages read)."""

import uuid

from kit.events import Event, IsoDatetime


class ReviewSubmitted(Event):
    topic = "ratings.review_submitted"
    order_id: uuid.UUID
    review_id: uuid.UUID
    technician_id: uuid.UUID
    stars: int


class ReviewFinalized(Event):
    """Settlement listens to this one: emitted exactly once per order, when the review is frozen."""

    topic = "ratings.review_finalized"
    order_id: uuid.UUID
    review_id: uuid.UUID
    technician_id: uuid.UUID
    customer_id: uuid.UUID
    stars: int
    automatic: bool
    finalized_at: IsoDatetime


class ReviewExcluded(Event):
    """An upheld appeal took a review out of the reputation."""

    topic = "ratings.review_excluded"
    order_id: uuid.UUID
    review_id: uuid.UUID
    technician_id: uuid.UUID
    appeal_id: uuid.UUID
