"""Columns and tables every package shares: timestamps, the outbox of events and their deliveries."""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger, CheckConstraint, Column, DateTime, ForeignKey, Identity, Index, String, UniqueConstraint, text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

import kit.db  # noqa: F401  (naming convention must be set before tables are declared)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def timestamp_column(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), nullable=nullable, **kw)


class OutboxMessage(SQLModel, table=True):
    """Events for other packages, committed with the change that caused them; a relay delivers."""

    __tablename__ = "dispatch_outbox"
    __table_args__ = (
        Index("ix_dispatch_outbox_pending", "id", postgresql_where=text("delivered_at IS NULL")),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    topic: str = Field(max_length=80)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    delivered_at: datetime | None = timestamp_column(nullable=True, default=None)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))


DELIVERY_STATES = ("pending", "done", "dead", "discarded")


class Delivery(SQLModel, table=True):
    """One event for one subscribing package: delivered in its own transaction, retried with
    backoff, dead-lettered after the last try; for one order, in the order of its events."""

    __tablename__ = "kit_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "subscriber"),
        CheckConstraint("state IN ('pending', 'done', 'dead', 'discarded')", name="state"),
        Index("ix_kit_delivery_pending_order", "subscriber", "order_key", "event_id",
              postgresql_where=text("state = 'pending'")),
        Index("ix_kit_delivery_dead", "created_at", "id", postgresql_where=text("state = 'dead'")),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    event_id: int = Field(sa_column=Column(
        BigInteger, ForeignKey("dispatch_outbox.id", ondelete="CASCADE"), nullable=False))
    topic: str = Field(max_length=80)
    subscriber: str = Field(max_length=80)
    # The order the event is about (payload `order_id`): its deliveries run one after another.
    order_key: str | None = Field(default=None, max_length=80)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    deferrals: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    next_attempt_at: datetime = timestamp_column(default_factory=utcnow)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    finished_at: datetime | None = timestamp_column(nullable=True, default=None)
