"""Tables of the marketplace core. Geometry is geography(…,4326), lon/lat order."""

import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Identity,
    Index,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from kit.config import get_settings
from kit.models import timestamp_column, utcnow
from dispatch.states import STATES as ORDER_STATES


ROLES = ("customer", "technician", "auditor", "admin")
CERTIFICATION_KINDS = ("repair", "inspection", "installation", "emergency")
PRIORITIES = ("emergency", "urgent", "routine")
ORDER_SOURCES = ("customer", "meter", "alarm", "followup", "campaign")


def home_city() -> str:
    """The configured city: where a row made without an explicit city belongs (a one-city install)."""
    return get_settings().city


def city_id_field(**kw: Any) -> Any:
    return Field(default_factory=home_city, foreign_key="dispatch_city.id", max_length=60, **kw)


class City(SQLModel, table=True):
    """A partition of the marketplace: matching, expiry, ops views and metrics run per city."""

    __tablename__ = "dispatch_city"

    id: str = Field(primary_key=True, max_length=60)  # a slug, e.g. "hangzhou"
    name: str = Field(max_length=100)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    hotline: str | None = Field(default=None, max_length=20)
    currency: str = Field(default="CNY", max_length=3)


class Account(SQLModel, table=True):
    __tablename__ = "dispatch_account"
    __table_args__ = (CheckConstraint(f"role IN {ROLES}", name="role"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    role: str = Field(max_length=16)
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True})
    password_hash: str = Field(max_length=255)
    display_name: str = Field(max_length=100)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    # Every access token carries the version it was issued under; bumping it (logout,
    # disable) revokes them all at once.
    token_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    disabled_at: datetime | None = timestamp_column(nullable=True, default=None)


class RefreshToken(SQLModel, table=True):
    """One refresh token (its hash only). Each refresh spends one and issues the next of the same
    family; a spent token presented again means it was stolen, and the whole family is revoked."""

    __tablename__ = "dispatch_refresh_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", index=True)
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    created_at: datetime = timestamp_column(default_factory=utcnow)
    expires_at: datetime = timestamp_column()
    spent_at: datetime | None = timestamp_column(nullable=True, default=None)
    revoked_at: datetime | None = timestamp_column(nullable=True, default=None)


class Customer(SQLModel, table=True):
    __tablename__ = "dispatch_customer"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", unique=True)
    name: str = Field(max_length=100)
    phone: str = Field(max_length=32)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class CustomerBlock(SQLModel, table=True):
    """A technician the customer does not want sent again."""

    __tablename__ = "dispatch_customer_block"

    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id", primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", primary_key=True)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Address(SQLModel, table=True):
    __tablename__ = "dispatch_address"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id", index=True)
    label: str = Field(max_length=60)
    # The whole address on one line: composed from the parts below when they are given.
    line: str = Field(max_length=200)
    # The structured address (dispatch.addresses); null on addresses saved as a line only.
    province: str | None = Field(default=None, max_length=30)
    city: str | None = Field(default=None, max_length=30)
    district: str | None = Field(default=None, max_length=30)
    street: str | None = Field(default=None, max_length=100)  # road and number: 文三路 90 号
    community: str | None = Field(default=None, max_length=60)  # 小区
    building: str | None = Field(default=None, max_length=20)
    unit: str | None = Field(default=None, max_length=20)
    room: str | None = Field(default=None, max_length=20)
    # WGS-84, where the customer dropped the pin.
    location: Any = Field(
        sa_column=Column(Geography("POINT", srid=4326, spatial_index=True), nullable=False)
    )
    created_at: datetime = timestamp_column(default_factory=utcnow)


class ServiceStation(SQLModel, table=True):
    __tablename__ = "dispatch_service_station"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100)
    city_id: str = city_id_field(index=True)
    location: Any = Field(
        sa_column=Column(Geography("POINT", srid=4326, spatial_index=True), nullable=False)
    )
    service_area: Any = Field(
        sa_column=Column(Geography("POLYGON", srid=4326, spatial_index=True), nullable=False)
    )
    daily_capacity: int = Field(default=40, ge=0)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Technician(SQLModel, table=True):
    __tablename__ = "dispatch_technician"
    __table_args__ = (
        CheckConstraint("status IN ('offline','online','busy','suspended')", name="status"),
        CheckConstraint("onboarding IN ('applicant','active')", name="onboarding"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", unique=True)
    station_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_service_station.id", index=True)
    # His station's city (the configured city while he has no station).
    city_id: str = city_id_field(index=True)
    name: str = Field(max_length=100)
    phone: str = Field(max_length=32)
    photo_ref: str | None = Field(default=None, max_length=300)
    status: str = Field(default="offline", max_length=16)
    onboarding: str = Field(default="applicant", max_length=16)
    max_jobs: int = Field(default=1, ge=1)
    # Last known position, persisted at a lower rate than Redis gets it: rebuilds the live index.
    last_location: Any = Field(
        default=None, sa_column=Column(Geography("POINT", srid=4326, spatial_index=True), nullable=True)
    )
    last_seen_at: datetime | None = timestamp_column(nullable=True, default=None)
    idle_since: datetime | None = timestamp_column(nullable=True, default=None)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Certification(SQLModel, table=True):
    __tablename__ = "dispatch_certification"
    __table_args__ = (
        CheckConstraint(f"kind IN {CERTIFICATION_KINDS}", name="kind"),
        CheckConstraint("status IN ('pending','verified','rejected','revoked')", name="status"),
        CheckConstraint("valid_until > valid_from", name="validity"),
        UniqueConstraint("issuer", "number"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    kind: str = Field(max_length=16)
    number: str = Field(max_length=64)
    issuer: str = Field(max_length=100)
    valid_from: datetime = timestamp_column()
    valid_until: datetime = timestamp_column()
    status: str = Field(default="pending", max_length=16)
    decided_by: uuid.UUID | None = Field(default=None, foreign_key="dispatch_account.id")
    decided_at: datetime | None = timestamp_column(nullable=True, default=None)
    decision_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class TrainingRecord(SQLModel, table=True):
    """Onboarding: training sessions attended and exams taken; a passed exam issues a certification."""

    __tablename__ = "dispatch_training_record"
    __table_args__ = (
        CheckConstraint("record_type IN ('training','exam')", name="record_type"),
        CheckConstraint(f"kind IN {CERTIFICATION_KINDS}", name="kind"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    record_type: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    held_at: datetime = timestamp_column()
    score: int | None = Field(default=None, ge=0, le=100)
    passed: bool | None = None
    certification_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_certification.id")
    recorded_by: uuid.UUID = Field(foreign_key="dispatch_account.id")
    created_at: datetime = timestamp_column(default_factory=utcnow)


class ServiceKind(SQLModel, table=True):
    """The service catalogue; admins extend it through the API, no code change."""

    __tablename__ = "dispatch_service_kind"
    __table_args__ = (CheckConstraint(f"required_certification IN {CERTIFICATION_KINDS}", name="cert"),)

    code: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=100)
    name_zh: str = Field(max_length=100)
    required_certification: str = Field(max_length=16)
    default_priority: str = Field(default="routine", max_length=16)
    base_price_minor: int = Field(ge=0)
    currency: str = Field(max_length=3)
    typical_duration_min: int = Field(ge=1)
    # Per-priority SLA minutes overriding the global defaults, e.g. {"urgent": 120}.
    sla_minutes: dict[str, int] = Field(default_factory=dict, sa_type=JSONB)
    active: bool = True


class Order(SQLModel, table=True):
    __tablename__ = "dispatch_order"
    __table_args__ = (
        CheckConstraint(f"priority IN {PRIORITIES}", name="priority"),
        CheckConstraint(f"source IN {ORDER_SOURCES}", name="source"),
        CheckConstraint(f"status IN {ORDER_STATES}", name="status"),
        CheckConstraint("price_estimate_minor >= 0", name="price"),
        CheckConstraint("(window_start IS NULL) = (window_end IS NULL) AND window_end > window_start", name="window"),
        Index("ix_dispatch_order_open", "status", "priority", "created_at"),
        Index("ix_dispatch_order_city_status", "city_id", "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id", index=True)
    address_id: uuid.UUID = Field(foreign_key="dispatch_address.id")
    # The city of its address (see dispatch.cities.city_at).
    city_id: str = city_id_field()
    location: Any = Field(
        sa_column=Column(Geography("POINT", srid=4326, spatial_index=True), nullable=False)
    )
    kind: str = Field(foreign_key="dispatch_service_kind.code", max_length=40)
    required_certification: str = Field(max_length=16)
    priority: str = Field(max_length=16)
    source: str = Field(default="customer", max_length=16)
    status: str = Field(default="created", max_length=20)
    description: str = Field(default="", max_length=2000)
    sla_deadline: datetime = timestamp_column()
    preferred_technician_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_technician.id")
    technician_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_technician.id", index=True)
    price_estimate_minor: int = Field(ge=0)
    currency: str = Field(max_length=3)
    status_reason: str | None = Field(default=None, max_length=500)
    # A booked appointment's arrival window (scheduling); None for on-demand orders.
    window_start: datetime | None = timestamp_column(nullable=True, default=None)
    window_end: datetime | None = timestamp_column(nullable=True, default=None)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    updated_at: datetime = timestamp_column(default_factory=utcnow)


class OrderEvent(SQLModel, table=True):
    """Append-only: one row per transition, written with the state change."""

    __tablename__ = "dispatch_order_event"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", index=True)
    action: str = Field(max_length=32)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str = Field(max_length=20)
    actor_role: str = Field(max_length=16)
    actor_id: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=500)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class IdempotencyRecord(SQLModel, table=True):
    """First response to a POST with an Idempotency-Key, replayed for the same key and body."""

    __tablename__ = "dispatch_idempotency_record"

    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    route: str = Field(max_length=200)
    request_hash: str = Field(max_length=64)
    response_status: int
    response_body: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Notification(SQLModel, table=True):
    __tablename__ = "dispatch_notification"
    __table_args__ = (
        UniqueConstraint("account_id", "dedupe_key"),
        Index("ix_dispatch_notification_unread", "account_id", "created_at", postgresql_where=text("read_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", index=True)
    kind: str = Field(max_length=40)
    title: str = Field(max_length=200)
    body: str = Field(max_length=2000)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    # The event that caused it, so a redelivered event does not notify twice.
    dedupe_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    read_at: datetime | None = timestamp_column(nullable=True, default=None)


class PushSubscription(SQLModel, table=True):
    """One device's Web Push subscription (the browser's PushSubscription): offers reach the
    phone while the page is closed or the screen locked. An endpoint belongs to the account that
    subscribed it last (a shared phone signed in by another technician)."""

    __tablename__ = "dispatch_push_subscription"
    __table_args__ = (UniqueConstraint("endpoint"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", index=True)
    endpoint: str = Field(max_length=1000)
    p256dh: str = Field(max_length=200)  # the browser's P-256 public key, base64url
    auth: str = Field(max_length=100)  # the 16-byte auth secret, base64url
    created_at: datetime = timestamp_column(default_factory=utcnow)
