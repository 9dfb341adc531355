"""API shapes of ratings. Comments are stored as given; `comment_html` is the escaped form."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from kit.schemas import Input
from ratings.models import COMMENT_MAX_CHARS, CUSTOMER_TAGS, REVIEW_TAGS

Stars = Annotated[int, Field(ge=1, le=5)]
ReviewTag = Literal[REVIEW_TAGS]  # type: ignore[valid-type]
CustomerTag = Literal[CUSTOMER_TAGS]  # type: ignore[valid-type]
Comment = Annotated[str, StringConstraints(max_length=COMMENT_MAX_CHARS)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=1000)]


class ReviewCreate(Input):
    stars: Stars
    tags: list[ReviewTag] = Field(default_factory=list, max_length=len(REVIEW_TAGS))
    comment: Comment | None = None


class ReviewUpdate(Input):
    stars: Stars | None = None
    tags: list[ReviewTag] | None = Field(default=None, max_length=len(REVIEW_TAGS))
    comment: Comment | None = None

    @model_validator(mode="after")
    def _something(self) -> "ReviewUpdate":
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        if "stars" in self.model_fields_set and self.stars is None:
            raise ValueError("stars cannot be removed")
        if "tags" in self.model_fields_set and self.tags is None:
            raise ValueError("tags cannot be null; send [] to clear them")
        return self


class ReviewPublic(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    technician_id: uuid.UUID
    kind: str
    stars: int
    tags: list[str]
    comment: str | None
    comment_html: str | None
    automatic: bool
    excluded: bool
    created_at: datetime
    updated_at: datetime
    editable_until: datetime
    finalized_at: datetime | None


class CustomerRatingCreate(Input):
    stars: Stars
    tags: list[CustomerTag] = Field(default_factory=list, max_length=len(CUSTOMER_TAGS))


class CustomerRatingPublic(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    technician_id: uuid.UUID
    stars: int
    tags: list[str]
    created_at: datetime


class CustomerRatingsPage(BaseModel):
    data: list[CustomerRatingPublic]
    next_cursor: str | None = None
    average_stars: float | None
    count: int


class ReputationFigure(BaseModel):
    score: float
    count: int  # reviews carrying weight
    effective_count: float  # their total weight after decay, automatic and repeat discounts


class ReputationPublic(BaseModel):
    technician_id: uuid.UUID
    overall: ReputationFigure
    by_kind: dict[str, ReputationFigure]
    as_of: datetime


class AppealCreate(Input):
    reason: Reason


class AppealDecisionIn(Input):
    decision: Literal["upheld", "rejected"]
    reason: Reason


class AppealPublic(BaseModel):
    id: uuid.UUID
    review_id: uuid.UUID
    technician_id: uuid.UUID
    reason: str
    status: str
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    decision_reason: str | None
    created_at: datetime


class FlagPublic(BaseModel):
    id: uuid.UUID
    kind: str
    subject_type: str
    subject_id: uuid.UUID
    evidence: dict[str, Any]
    created_at: datetime
    detected_at: datetime
    cleared_at: datetime | None
