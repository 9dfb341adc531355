"""Tables of the meters package: devices, readings (partitioned), faults, commands, inbox.

`meters_reading` is range-partitioned by `read_at` in the migration (DDL Alembic cannot
express); the model mirrors its columns so queries are typed, and migrations/env.py keeps it
out of autogenerate.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dispatch.models import city_id_field
from kit.models import timestamp_column, utcnow

DEVICE_KINDS = ("meter", "detector")
PROTOCOLS = ("cjt188", "mbus", "nbiot")
FAULT_KINDS = (
    "methane_alarm", "valve_abnormal", "battery_low", "tamper", "meter_stopped", "comm_lost", "suspected_leak",
)
COMMAND_STATUSES = ("queued", "sent", "acknowledged", "failed")
# tcp: written to the concentrator's connection; platform: through the IoT platform's API.
COMMAND_CHANNELS = ("tcp", "platform")
APPLIANCE_KINDS = ("boiler", "stove", "hose")


class Concentrator(SQLModel, table=True):
    """A concentrator (or DTU) allowed to connect; the token is stored only as a hash."""

    __tablename__ = "meters_concentrator"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    code: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    token_hash: str = Field(max_length=255)
    description: str = Field(default="", max_length=200)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Device(SQLModel, table=True):
    __tablename__ = "meters_device"
    __table_args__ = (
        CheckConstraint(f"kind IN {DEVICE_KINDS}", name="kind"),
        CheckConstraint(f"protocol IN {PROTOCOLS}", name="protocol"),
        CheckConstraint("report_interval_s > 0", name="interval"),
        CheckConstraint("(protocol = 'nbiot') = (platform IS NOT NULL)", name="platform"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=16)
    protocol: str = Field(max_length=16)
    # Meter address (CJ/T 188 A6..A0, M-Bus id) or IMEI for NB-IoT devices.
    external_id: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    product: str | None = Field(default=None, max_length=64)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id", index=True)
    address_id: uuid.UUID = Field(foreign_key="dispatch_address.id", index=True)
    city_id: str = city_id_field(index=True)  # its address's
    # The only channel the device may report through (binding): its concentrator (none: only
    # legacy plain TCP), or for NB-IoT the IoT platform it is registered with.
    concentrator_id: uuid.UUID | None = Field(default=None, foreign_key="meters_concentrator.id")
    platform: str | None = Field(default=None, max_length=32)
    has_valve: bool = False
    meter_type: int = 0x30
    # Appliances this meter feeds, for maintenance reminders.
    appliances: list[str] = Field(default_factory=list, sa_type=JSONB)
    report_interval_s: int = 3600
    installed_at: datetime = timestamp_column()
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Reading(SQLModel, table=True):
    """One report. `digest` hashes what the device said (frame bytes with its sequence number,
    or the platform report), so the primary key makes only a retransmission a no-op; two
    different reports at the same instant are both kept."""

    __tablename__ = "meters_reading"

    # No foreign key to the device: readings are written only for resolved devices, and a
    # per-row check would cost the hot path; devices are never deleted.
    device_id: uuid.UUID = Field(primary_key=True)
    read_at: datetime = Field(sa_type=DateTime(timezone=True), primary_key=True)
    digest: int = Field(sa_column=Column(BigInteger, primary_key=True, server_default=text("0")))
    received_at: datetime = timestamp_column()
    volume_m3: float | None = None
    lel_pct: float | None = None
    valve: str | None = Field(default=None, max_length=16)
    battery_low: bool | None = None
    alarm: bool | None = None
    tamper: bool | None = None
    # What the device sent: the frame as hex, or the platform's message as JSON.
    raw: str | None = None


class Quarantine(SQLModel, table=True):
    """Telemetry from devices we do not know: kept for operations, never acted on."""

    __tablename__ = "meters_quarantine"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    channel: str = Field(max_length=16)
    source: str = Field(max_length=100)
    external_id: str | None = Field(default=None, max_length=64, index=True)
    protocol: str | None = Field(default=None, max_length=16)
    reason: str = Field(max_length=64)
    raw: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    received_at: datetime = timestamp_column(default_factory=utcnow)


class InboxMessage(SQLModel, table=True):
    """Webhook message ids already processed: a second delivery is refused."""

    __tablename__ = "meters_inbox"

    platform: str = Field(max_length=32, primary_key=True)
    message_id: str = Field(max_length=128, primary_key=True)
    received_at: datetime = timestamp_column(default_factory=utcnow)


class Fault(SQLModel, table=True):
    """One open fault per device and kind (database-enforced); it closes with its order."""

    __tablename__ = "meters_fault"
    __table_args__ = (
        CheckConstraint(f"fault_kind IN {FAULT_KINDS}", name="fault_kind"),
        Index("uq_meters_fault_open", "device_id", "fault_kind", unique=True,
              postgresql_where=text("closed_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    device_id: uuid.UUID = Field(foreign_key="meters_device.id", index=True)
    fault_kind: str = Field(max_length=32)
    order_id: uuid.UUID | None = Field(default=None, foreign_key="dispatch_order.id", index=True)
    occurrences: int = 1
    # Annotations: repeats, clearings, evidence; appended, never rewritten.
    notes: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB)
    opened_at: datetime = timestamp_column()
    last_seen_at: datetime = timestamp_column()
    cleared_at: datetime | None = timestamp_column(nullable=True, default=None)
    closed_at: datetime | None = timestamp_column(nullable=True, default=None)


class ValveCommand(SQLModel, table=True):
    __tablename__ = "meters_valve_command"
    __table_args__ = (
        CheckConstraint(f"status IN {COMMAND_STATUSES}", name="status"),
        CheckConstraint(f"channel IN {COMMAND_CHANNELS}", name="channel"),
        Index("ix_meters_valve_command_queued", "device_id", postgresql_where=text("status = 'queued'")),
        Index("ix_meters_valve_command_due", "next_attempt_at",
              postgresql_where=text("status = 'queued' AND channel = 'platform'")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    device_id: uuid.UUID = Field(foreign_key="meters_device.id", index=True)
    fault_id: uuid.UUID | None = Field(default=None, foreign_key="meters_fault.id")
    command: str = Field(max_length=16)
    channel: str = Field(default="tcp", max_length=16)
    # The CJ/T 188 frame for tcp; empty for platform commands (the adapter builds the request).
    frame_hex: str = Field(max_length=200)
    status: str = Field(default="queued", max_length=16)
    # Platform delivery: attempts so far, when to try next, why the last one failed.
    attempts: int = 0
    next_attempt_at: datetime | None = timestamp_column(nullable=True, default=None)
    last_error: str | None = Field(default=None, max_length=200)
    reply_hex: str | None = Field(default=None, sa_column=Column(String(600), nullable=True))
    created_at: datetime = timestamp_column(default_factory=utcnow)
    sent_at: datetime | None = timestamp_column(nullable=True, default=None)
    replied_at: datetime | None = timestamp_column(nullable=True, default=None)


class Reminder(SQLModel, table=True):
    """Per address and appliance: last service and last reminder (one per period, enforced
    by a conditional update on this row)."""

    __tablename__ = "meters_reminder"
    __table_args__ = (CheckConstraint(f"appliance_kind IN {APPLIANCE_KINDS}", name="appliance_kind"),)

    address_id: uuid.UUID = Field(foreign_key="dispatch_address.id", primary_key=True)
    appliance_kind: str = Field(max_length=16, primary_key=True)
    customer_id: uuid.UUID = Field(foreign_key="dispatch_customer.id")
    last_serviced_at: datetime | None = timestamp_column(nullable=True, default=None)
    last_reminded_at: datetime | None = timestamp_column(nullable=True, default=None)
