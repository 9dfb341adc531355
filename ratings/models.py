"""Tables of ratings: reviews of technicians, ratings of customers, appeals, abuse flags."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

import kit.db  # noqa: F401  (naming convention must be set before tables are declared)
from dispatch.models import CERTIFICATION_KINDS
from kit.models import utcnow

# Fixed vocabularies: free-form tags would be unsearchable and a vector for abuse.
REVIEW_TAGS = (
    "on_time", "polite", "clean_work", "explained_hazard", "fixed_first_time", "showed_credentials",
    "late", "rude", "messy", "left_unresolved",
)
CUSTOMER_TAGS = (
    "present_on_time", "respectful", "safe_access", "pets_secured",
    "not_present", "hostile", "unsafe_premises", "aggressive_pet",
)
COMMENT_MAX_CHARS = 1000
APPEAL_STATUSES = ("pending", "upheld", "rejected")
FLAG_KINDS = ("customer_always_one_star", "five_star_burst", "retraining")


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), nullable=nullable, **kw)


class Review(SQLModel, table=True):
    """A customer's review of the technician of one order; one per order, frozen once finalized."""

    __tablename__ = "ratings_review"
    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
        CheckConstraint(f"kind IN {CERTIFICATION_KINDS}", name="kind"),
        # The edit window and the finalize job select by these.
        Index("ix_ratings_review_unfinalized", "editable_until", postgresql_where=text("finalized_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Unique: the database, not the code path, guarantees one review (and one finalization) per order.
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", unique=True)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id", index=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    kind: str = Field(max_length=16)  # the certification the job needed
    stars: int
    tags: list[str] = Field(default_factory=list, sa_type=JSONB)
    comment: str | None = Field(default=None, max_length=COMMENT_MAX_CHARS)
    automatic: bool = False
    excluded: bool = False
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    editable_until: datetime = _ts()
    finalized_at: datetime | None = _ts(nullable=True, default=None)


class CustomerRating(SQLModel, table=True):
    """The technician's rating of the customer: for operations and matching, never the customer."""

    __tablename__ = "ratings_customer_rating"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", unique=True)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id", index=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id")
    stars: int
    tags: list[str] = Field(default_factory=list, sa_type=JSONB)
    created_at: datetime = _ts(default_factory=utcnow)


class Appeal(SQLModel, table=True):
    """A technician contesting a review; operations decide, and the decision is kept."""

    __tablename__ = "ratings_appeal"
    __table_args__ = (
        CheckConstraint(f"status IN {APPEAL_STATUSES}", name="status"),
        CheckConstraint("(status = 'pending') = (decided_at IS NULL)", name="decided"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    review_id: uuid.UUID = Field(foreign_key="ratings_review.id", unique=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    reason: str = Field(max_length=1000)
    status: str = Field(default="pending", max_length=16, index=True)
    decided_by: uuid.UUID | None = Field(default=None, foreign_key="dispatch_account.id")
    decided_at: datetime | None = _ts(nullable=True, default=None)
    decision_reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = _ts(default_factory=utcnow)


class Flag(SQLModel, table=True):
    """A pattern for operations to look at, with its evidence; cleared when it stops holding."""

    __tablename__ = "ratings_flag"
    __table_args__ = (
        CheckConstraint(f"kind IN {FLAG_KINDS}", name="kind"),
        CheckConstraint("subject_type IN ('customer','technician')", name="subject_type"),
        UniqueConstraint("kind", "subject_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=32)
    subject_type: str = Field(max_length=16)
    subject_id: uuid.UUID
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    created_at: datetime = _ts(default_factory=utcnow)  # first detected
    detected_at: datetime = _ts(default_factory=utcnow)  # last detected
    cleared_at: datetime | None = _ts(nullable=True, default=None)
