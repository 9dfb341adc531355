"""Offers: the matching handshake (派单 -> 接单/拒单), durable in PostgreSQL."""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, text
from sqlmodel import Field, SQLModel

from dispatch.models import city_id_field
from kit.models import timestamp_column, utcnow

OFFER_STATUSES = ("offered", "accepted", "declined", "expired", "withdrawn")


class Offer(SQLModel, table=True):
    __tablename__ = "matching_offer"
    __table_args__ = (
        CheckConstraint(f"status IN {OFFER_STATUSES}", name="status"),
        # An emergency round offers one order to several technicians at once, each once.
        Index("uq_matching_offer_open_order_technician", "order_id", "technician_id", unique=True,
              postgresql_where=text("status = 'offered'")),
        Index("ix_matching_offer_open_expiry", "expires_at", postgresql_where=text("status = 'offered'")),
        Index("ix_matching_offer_city_status", "city_id", "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", index=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    city_id: str = city_id_field()  # its order's
    status: str = Field(default="offered", max_length=16)
    policy: str = Field(max_length=16)  # emergency | batch | direct | greedy | preempt | round
    attempt: int = Field(ge=1)
    distance_m: float
    eta_s: float
    created_at: datetime = timestamp_column(default_factory=utcnow)
    expires_at: datetime = timestamp_column()
    decided_at: datetime | None = timestamp_column(nullable=True, default=None)
    decline_reason: str | None = Field(default=None, max_length=200)
