"""Offers: the matching handshake (派单 -> 接单/拒单), durable in PostgreSQL."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Identity, Index, LargeBinary, text
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


class TripTime(SQLModel, table=True):
    """One technician's drive to one order, from departure (his position then) to check-in:
    what the ETA model learns from. Local hour and weekday are the city's at departure."""

    __tablename__ = "matching_trip_time"
    __table_args__ = (
        Index("ix_matching_trip_time_arrived", "arrived_at", postgresql_where=text("duration_s IS NOT NULL")),
    )

    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    city_id: str = city_id_field()
    kind: str = Field(max_length=40)
    district: str = Field(max_length=40)
    start_lon: float
    start_lat: float
    end_lon: float
    end_lat: float
    distance_m: float  # great-circle
    local_hour: int = Field(ge=0, le=23)
    weekday: int = Field(ge=0, le=6)  # Monday = 0
    departed_at: datetime = timestamp_column()
    arrived_at: datetime | None = timestamp_column(nullable=True, default=None)
    duration_s: float | None = None


class EtaModel(SQLModel, table=True):
    """A fitted travel-time model (joblib bytes) and how it did on the trips it held out."""

    __tablename__ = "matching_eta_model"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    trained_at: datetime = timestamp_column(default_factory=utcnow)
    trips: int
    learned_mae_s: float
    learned_p90_s: float
    baseline_mae_s: float
    baseline_p90_s: float
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ValueVersion(SQLModel, table=True):
    """One training of a city's look-ahead values (matching/values.py); the newest is current."""

    __tablename__ = "matching_value_version"
    __table_args__ = (Index("ix_matching_value_version_city_id", "city_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    city_id: str = Field(foreign_key="dispatch_city.id", max_length=60)
    trained_at: datetime = timestamp_column(default_factory=utcnow)
    period_start: datetime = timestamp_column()  # the completed orders it learned from: [start, end)
    period_end: datetime = timestamp_column()
    orders: int
    resolution: int  # H3
    slot_s: int
    discount_per_s: float


class CellValue(SQLModel, table=True):
    """V of one (H3 cell, slot of the local day) in one version: minus the discounted seconds a
    technician there loses ahead, driving to his next jobs or waiting for them."""

    __tablename__ = "matching_cell_value"

    version_id: int = Field(sa_column=Column(BigInteger, ForeignKey("matching_value_version.id", ondelete="CASCADE"),
                                             primary_key=True))
    cell: str = Field(primary_key=True, max_length=16)
    slot: int = Field(primary_key=True)
    value_s: float
