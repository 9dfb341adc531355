"""What the meters' stages pass each other: one report from a device (`Telemetry`), the device
as ingest resolved it (`DeviceInfo`), and where its latest state lives in Redis. Ingest and the
rules both read these, so neither imports the other for them."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The device's latest state (JSON), written by ingest, read by the comm-lost check.
LATEST_KEY = "meters:latest:{}"


@dataclass(slots=True)
class Telemetry:
    """One report from one device, whatever the channel. Treated as a value; not frozen
    because a frozen dataclass takes three times as long to build, once per reading."""

    external_id: str
    protocol: str
    read_at: datetime
    received_at: datetime
    volume_m3: float | None = None
    lel_pct: float | None = None
    valve: str | None = None
    battery_low: bool | None = None
    alarm: bool | None = None
    tamper: bool | None = None
    # A reply to a valve command, not a reading.
    valve_reply: bool = False
    # {"hex": frame} or {"envelope": platform message}; the reading keeps it as text.
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # Hash of what the device said (frame bytes, or the platform's report); None: of the values.
    digest: int | None = None
    # False when read_at is the arrival time: a retransmission then arrives with another read_at.
    device_clock: bool = True


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: uuid.UUID
    kind: str
    external_id: str
    customer_id: uuid.UUID
    address_id: uuid.UUID
    has_valve: bool
    meter_type: int
    report_interval_s: int
    protocol: str = ""
    # The one source it may report through: "concentrator:<code>", "platform:<name>", or None
    # for a wired device without a concentrator (legacy plain TCP only).
    bound_source: str | None = None
