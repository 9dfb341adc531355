"""Tables of field execution. They reference dispatch rows by id; orders move only through
`dispatch.service.transition`."""

import uuid
from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import CheckConstraint, Column, Date, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dispatch.certificate_photos import FORMATS as PHOTO_FORMATS
from dispatch.certificate_photos import MAX_BYTES as PHOTO_MAX_BYTES
from kit.models import timestamp_column, utcnow

VERIFICATION_METHODS = ("qr", "code", "waived")
HAZARD_CATEGORIES = (
    "leaking_connector", "aged_hose", "illegal_modification", "no_alarm", "ventilation",
    "corroded_pipe", "appliance_fault", "other",
)
HAZARD_SEVERITIES = ("minor", "major", "critical")
HAZARD_RESOLUTIONS = ("fixed_on_site", "needs_followup")
TIME_SLOTS = ("morning", "afternoon", "evening")
PRICE_CHANGE_STATUSES = ("pending", "approved", "rejected", "superseded", "withdrawn")


class Visit(SQLModel, table=True):
    """One technician's visit for one order: the door code, check-in/out and the outcome."""

    __tablename__ = "field_visit"
    __table_args__ = (
        CheckConstraint("outcome IN ('open','done','no_access')", name="outcome"),
        CheckConstraint(f"verification IN {VERIFICATION_METHODS}", name="verification"),
    )

    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", primary_key=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id", index=True)
    # Shown to the customer, so kept readable; it only unlocks this visit and expires.
    code: str = Field(max_length=6)
    code_issued_at: datetime = timestamp_column()
    code_failures: int = 0
    code_locked_at: datetime | None = timestamp_column(nullable=True, default=None)
    verification: str | None = Field(default=None, max_length=8)
    verified_at: datetime | None = timestamp_column(nullable=True, default=None)
    departed_at: datetime | None = timestamp_column(nullable=True, default=None)
    checked_in_at: datetime | None = timestamp_column(nullable=True, default=None)
    arrival_distance_m: float | None = None
    checked_out_at: datetime | None = timestamp_column(nullable=True, default=None)
    outcome: str = Field(default="open", max_length=16)
    no_access_photo_ref: str | None = Field(default=None, max_length=300)
    no_access_location: Any = Field(
        default=None, sa_column=Column(Geography("POINT", srid=4326, spatial_index=False), nullable=True))
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Verification(SQLModel, table=True):
    """Every identity check at the door, kept on the order: QR scans, codes (right and wrong), waivers."""

    __tablename__ = "field_verification"
    __table_args__ = (CheckConstraint(f"method IN {VERIFICATION_METHODS}", name="method"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", index=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id")
    method: str = Field(max_length=8)
    succeeded: bool
    actor_role: str = Field(max_length=16)
    actor_id: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=300)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class WorkReport(SQLModel, table=True):
    __tablename__ = "field_work_report"
    __table_args__ = (CheckConstraint("final_price_minor >= 0", name="price"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", unique=True)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id")
    work_done: str = Field(max_length=2000)
    # [{"name", "quantity", "unit_price_minor"}]
    parts: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB)
    final_price_minor: int
    currency: str = Field(max_length=3)
    photo_refs: list[str] = Field(default_factory=list, sa_type=JSONB)
    valve_closed: bool = False
    created_at: datetime = timestamp_column(default_factory=utcnow)


class PriceChange(SQLModel, table=True):
    """A final price above the authorised amount, waiting for the customer's decision."""

    __tablename__ = "field_price_change"
    __table_args__ = (
        # superseded: the technician asked another price; withdrawn: the job ended without it.
        CheckConstraint(f"status IN {PRICE_CHANGE_STATUSES}", name="status"),
        CheckConstraint("amount_minor > authorised_minor", name="above_authorised"),
        Index("uq_field_price_change_pending", "order_id", unique=True,
              postgresql_where=text("status = 'pending'")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", index=True)
    amount_minor: int
    authorised_minor: int
    currency: str = Field(max_length=3)
    status: str = Field(default="pending", max_length=16)
    requested_at: datetime = timestamp_column(default_factory=utcnow)
    decided_at: datetime | None = timestamp_column(nullable=True, default=None)


class Hazard(SQLModel, table=True):
    """An unsafe condition found in a home: fixed on the spot (what was done is kept on it), or
    open with a deadline and a follow-up order until a later visit records it fixed."""

    __tablename__ = "field_hazard"
    __table_args__ = (
        CheckConstraint(f"category IN {HAZARD_CATEGORIES}", name="category"),
        CheckConstraint(f"severity IN {HAZARD_SEVERITIES}", name="severity"),
        CheckConstraint("status IN ('open','fixed')", name="status"),
        CheckConstraint("deadline_at > found_at", name="deadline"),
        CheckConstraint(f"resolution IN {HAZARD_RESOLUTIONS}", name="resolution"),
        # Fixed on site: done, with what was done and no deadline; otherwise a deadline to meet.
        CheckConstraint("CASE WHEN resolution = 'fixed_on_site' THEN status = 'fixed' AND fix_work_done IS NOT NULL "
                        "AND deadline_at IS NULL ELSE deadline_at IS NOT NULL END", name="resolution_fields"),
        Index("ix_field_hazard_open", "station_id", "found_at", postgresql_where=text("status = 'open'")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", index=True)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id")
    address_id: uuid.UUID = Field(foreign_key="dispatch_address.id", index=True)
    station_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_service_station.id")
    category: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    description: str = Field(default="", max_length=1000)
    photo_refs: list[str] = Field(default_factory=list, sa_type=JSONB)
    resolution: str = Field(default="needs_followup", max_length=16)
    deadline_at: datetime | None = timestamp_column(nullable=True, default=None)
    status: str = Field(default="open", max_length=16)
    fix_work_done: str | None = Field(default=None, max_length=2000)
    # [{"name", "quantity", "unit_price_minor"}], as in the work report
    fix_parts: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB)
    fix_photo_refs: list[str] = Field(default_factory=list, sa_type=JSONB)
    followup_order_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_order.id")
    found_at: datetime = timestamp_column()
    fixed_at: datetime | None = timestamp_column(nullable=True, default=None)
    fixed_order_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_order.id")


class JobPhoto(SQLModel, table=True):
    """A photo the technician took on the job, named in the report or a hazard by its sha256; its
    bytes are in the object store under that digest (kit/objects.py). Keyed by order too: a ref
    names a photo of this job, and the same image sent again is one row."""

    __tablename__ = "field_job_photo"
    __table_args__ = (
        CheckConstraint(f"media_type IN {tuple(PHOTO_FORMATS)}", name="media_type"),
        CheckConstraint(f"size_bytes > 0 AND size_bytes <= {PHOTO_MAX_BYTES}", name="size_bytes"),
    )

    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", primary_key=True)
    sha256: str = Field(max_length=64, primary_key=True)
    media_type: str = Field(max_length=32)
    size_bytes: int
    uploaded_by: uuid.UUID = Field(foreign_key="dispatch_technician.id")
    uploaded_at: datetime = timestamp_column(default_factory=utcnow)


class InspectionPlan(SQLModel, table=True):
    """One planned periodic inspection of a household: a day, a time of day and which try it is."""

    __tablename__ = "field_inspection_plan"
    __table_args__ = (
        CheckConstraint(f"slot IN {TIME_SLOTS}", name="slot"),
        CheckConstraint(
            "status IN ('planned','ordered','done','no_access','replanned','exhausted')", name="status"),
        Index("ix_field_inspection_plan_day", "station_id", "planned_on"),
        Index("uq_field_inspection_plan_active", "address_id", unique=True,
              postgresql_where=text("status IN ('planned','ordered','no_access')")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    address_id: uuid.UUID = Field(foreign_key="dispatch_address.id")
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id")
    station_id: uuid.UUID = Field(foreign_key="dispatch_service_station.id")
    planned_on: date = Field(sa_type=Date)
    slot: str = Field(max_length=16)
    attempt: int = Field(default=1, ge=1)
    status: str = Field(default="planned", max_length=16)
    order_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_order.id", index=True)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    updated_at: datetime = timestamp_column(default_factory=utcnow)
