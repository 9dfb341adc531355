"""Telemetry in: device lookup, quarantine of unknown devices, batched idempotent reading
inserts, rules on the new readings, latest state per device in Redis.

One `ingest` call is one batch in the caller's session; the caller commits. Readings go in
with one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING`, so a
retransmitted report is stored once and evaluated once.
"""

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy import insert, select, text, update
from sqlmodel.ext.asyncio.session import AsyncSession

from meters.models import Device, Quarantine, ValveCommand
from meters.protocols import cjt188, mbus
from meters.protocols.stream import StreamFrame

log = structlog.get_logger(__name__)

FRAMES = Counter("gasdispatch_meters_frames_total", "Frames received", ["channel"])
REJECTED = Counter("gasdispatch_meters_rejected_total", "Telemetry rejected", ["channel", "reason"])
GARBAGE_BYTES = Counter("gasdispatch_meters_garbage_bytes_total", "Bytes skipped between frames")
STORED = Counter("gasdispatch_meters_readings_stored_total", "Readings stored (duplicates excluded)")
QUARANTINED = Counter("gasdispatch_meters_quarantined_total", "Reports from unknown devices", ["channel"])

LATEST_KEY = "meters:latest:{}"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One report from one device, whatever the channel."""

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
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


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


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    order_ids: list[uuid.UUID] = field(default_factory=list)
    # (device external id, frame hex, command id) to write to a connected concentrator.
    commands: list[tuple[str, str, uuid.UUID]] = field(default_factory=list)


def telemetry_from_frame(frame: StreamFrame, received_at: datetime, tz: ZoneInfo) -> Telemetry | None:
    """A reassembled frame as telemetry; None for frames that carry no report (ACKs,
    requests). Raises FrameError for frames that do not decode."""
    if frame.protocol == "cjt188":
        fields = cjt188.read_reply(frame.data)
        if fields is not None:  # nearly every frame: a 901F read reply, decoded without a frame object
            address, volume, clock, valve, battery_low = fields
            read_at = clock.replace(tzinfo=tz).astimezone(timezone.utc) if clock else _second(received_at)
            return Telemetry(address, "cjt188", read_at, received_at, volume, None, valve, battery_low,
                             raw={"hex": frame.data.hex()})
        decoded = cjt188.decode(frame.data)
        if decoded.direction != "reply":
            return None
        raw = {"hex": frame.data.hex()}
        if decoded.di == f"{cjt188.DI_VALVE:04X}":
            return Telemetry(decoded.address, "cjt188", _second(received_at), received_at, valve=decoded.valve,
                             battery_low=decoded.battery_low, valve_reply=True, raw=raw)
        if decoded.di != f"{cjt188.DI_READ_DATA:04X}":
            return None
        # The meter's clock is local time; without one the arrival second stands in.
        read_at = decoded.clock.replace(tzinfo=tz).astimezone(timezone.utc) if decoded.clock else _second(received_at)
        return Telemetry(decoded.address, "cjt188", read_at, received_at, volume_m3=decoded.current_volume_m3,
                         valve=decoded.valve, battery_low=decoded.battery_low, raw=raw)
    if len(frame.data) < 6:  # ACK and short frames are link control
        return None
    reading = mbus.decode(frame.data)
    return Telemetry(reading.id, "mbus", _second(received_at), received_at, volume_m3=reading.volume_m3,
                     battery_low=reading.power_low, alarm=reading.alarm, raw={"hex": frame.data.hex()})


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class DeviceRegistry:
    """external id -> device, cached in process; unknown ids are looked up again each time
    so a device registered a moment ago is recognised on its next report."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._cache: dict[str, tuple[float, DeviceInfo]] = {}
        self._ttl_s = ttl_s

    async def resolve(self, session: AsyncSession, external_ids: Iterable[str]) -> dict[str, DeviceInfo]:
        now = time.monotonic()
        found: dict[str, DeviceInfo] = {}
        missing: set[str] = set()
        for external_id in set(external_ids):
            hit = self._cache.get(external_id)
            if hit is not None and now - hit[0] < self._ttl_s:
                found[external_id] = hit[1]
            else:
                missing.add(external_id)
        if missing:
            rows = (await session.execute(select(
                Device.id, Device.kind, Device.external_id, Device.customer_id, Device.address_id,
                Device.has_valve, Device.meter_type, Device.report_interval_s,
            ).where(Device.external_id.in_(missing)))).all()
            for row in rows:
                info = DeviceInfo(*row)
                self._cache[info.external_id] = (now, info)
                found[info.external_id] = info
        return found


_INSERT_READINGS = text("""
INSERT INTO meters_reading (device_id, read_at, received_at, volume_m3, lel_pct, valve, battery_low, alarm, tamper)
SELECT * FROM unnest(
    CAST(:device_id AS uuid[]), CAST(:read_at AS timestamptz[]), CAST(:received_at AS timestamptz[]),
    CAST(:volume_m3 AS float8[]), CAST(:lel_pct AS float8[]), CAST(:valve AS varchar[]),
    CAST(:battery_low AS boolean[]), CAST(:alarm AS boolean[]), CAST(:tamper AS boolean[]))
ON CONFLICT DO NOTHING
RETURNING device_id, read_at
""")


class Ingestor:
    def __init__(self, registry: DeviceRegistry | None = None) -> None:
        from dispatch.config import get_settings

        self.registry = registry or DeviceRegistry()
        self.settings = get_settings()

    async def ingest(
        self, session: AsyncSession, redis: Redis, items: list[Telemetry], *, channel: str, source: str,
        now: datetime | None = None,
    ) -> IngestResult:
        from meters import rules

        now = now or datetime.now(timezone.utc)
        result = IngestResult()
        if not items:
            return result
        devices = await self.registry.resolve(session, {t.external_id for t in items})
        known: list[tuple[DeviceInfo, Telemetry]] = []
        unknown: list[Telemetry] = []
        replies: list[tuple[DeviceInfo, Telemetry]] = []
        for t in items:
            device = devices.get(t.external_id)
            if device is None:
                unknown.append(t)
            elif t.valve_reply:
                replies.append((device, t))
            else:
                known.append((device, t))
        if unknown:
            await self._quarantine(session, unknown, channel=channel, source=source, reason="unknown device")
            result.quarantined = len(unknown)
        for device, reply in replies:
            await _acknowledge_valve_command(session, device, reply)
        if not known:
            return result
        new = await self._store(session, known)
        result.stored, result.duplicates = len(new), len(known) - len(new)
        STORED.inc(len(new))
        previous = await _latest_states(redis, {device.id for device, _ in new})
        outcome = await rules.evaluate(session, new, previous, settings=self.settings, now=now)
        result.order_ids, result.commands = outcome.order_ids, outcome.commands
        await _save_latest(redis, new, previous, outcome.active)
        return result

    async def _store(
        self, session: AsyncSession, items: list[tuple[DeviceInfo, Telemetry]],
    ) -> list[tuple[DeviceInfo, Telemetry]]:
        """The readings the database did not have, sorted by read_at."""
        # Within a batch the first report for a (device, second) wins, as the database would.
        # Keyed by external id (one per device) since a str caches its hash and a UUID does not.
        unique: dict[tuple[str, datetime], tuple[DeviceInfo, Telemetry]] = {}
        for item in items:
            unique.setdefault((item[1].external_id, item[1].read_at), item)
        rows = list(unique.values())
        reports = [t for _, t in rows]
        inserted = (await session.execute(_INSERT_READINGS, {
            "device_id": [device.id for device, _ in rows],
            "read_at": [t.read_at for t in reports],
            "received_at": [t.received_at for t in reports],
            "volume_m3": [t.volume_m3 for t in reports],
            "lel_pct": [t.lel_pct for t in reports],
            "valve": [t.valve for t in reports],
            "battery_low": [t.battery_low for t in reports],
            "alarm": [t.alarm for t in reports],
            "tamper": [t.tamper for t in reports],
        })).all()
        if len(inserted) < len(rows):  # some were stored before: keep only what went in now
            keys = {(row[0], row[1]) for row in inserted}
            rows = [item for item in rows if (item[0].id, item[1].read_at) in keys]
        rows.sort(key=_read_at)
        return rows

    @staticmethod
    async def _quarantine(session: AsyncSession, items: list[Telemetry], *, channel: str, source: str, reason: str) -> None:
        await session.execute(insert(Quarantine), [
            {"channel": channel, "source": source[:100], "external_id": t.external_id[:64], "protocol": t.protocol,
             "reason": reason, "raw": {**t.raw, "read_at": t.read_at.isoformat()}, "received_at": t.received_at}
            for t in items
        ])
        QUARANTINED.labels(channel).inc(len(items))
        log.info("meters.quarantined", channel=channel, source=source, count=len(items))


async def quarantine_raw(session: AsyncSession, *, channel: str, source: str, reason: str, raw: dict[str, Any],
                         external_id: str | None = None, protocol: str | None = None) -> None:
    """Keep a report we could not attribute or map (unknown product, unknown device)."""
    session.add(Quarantine(channel=channel, source=source[:100], external_id=external_id, protocol=protocol,
                           reason=reason[:64], raw=raw))
    QUARANTINED.labels(channel).inc()
    await session.flush()


async def _acknowledge_valve_command(session: AsyncSession, device: DeviceInfo, reply: Telemetry) -> None:
    """The newest sent (or still queued) command of the device gets the reply."""
    command_id = (await session.execute(
        select(ValveCommand.id).where(ValveCommand.device_id == device.id, ValveCommand.status.in_(("sent", "queued")))
        .order_by(ValveCommand.created_at.desc()).limit(1)
    )).scalar_one_or_none()
    if command_id is None:
        log.info("meters.valve_reply_unsolicited", device=device.external_id)
        return
    await session.execute(update(ValveCommand).where(ValveCommand.id == command_id).values(
        status="acknowledged", reply_hex=reply.raw.get("hex"), replied_at=reply.received_at))


async def _latest_states(redis: Redis, device_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    if not device_ids:
        return {}
    ordered = list(device_ids)
    values = await redis.mget([LATEST_KEY.format(d) for d in ordered])
    return {d: json.loads(v) for d, v in zip(ordered, values, strict=True) if v}


async def latest_state(redis: Redis, device_id: uuid.UUID) -> dict[str, Any] | None:
    return (await _latest_states(redis, {device_id})).get(device_id)


async def _save_latest(
    redis: Redis, new: list[tuple[DeviceInfo, Telemetry]], previous: dict[uuid.UUID, dict[str, Any]],
    active: dict[uuid.UUID, list[str]],
) -> None:
    last: dict[uuid.UUID, Telemetry] = {}
    for device, t in new:  # sorted by read_at: the last one per device wins
        last[device.id] = t
    latest: dict[str, str] = {}
    for device_id, t in last.items():
        read_at = t.read_at.isoformat()
        before = previous.get(device_id)
        if before is not None and before["read_at"] > read_at:
            continue  # a late report does not overwrite a newer state
        latest[LATEST_KEY.format(device_id)] = json.dumps({
            "read_at": read_at, "received_at": t.received_at.isoformat(), "volume_m3": t.volume_m3,
            "lel_pct": t.lel_pct, "valve": t.valve, "battery_low": t.battery_low, "alarm": t.alarm,
            "tamper": t.tamper, "active": active.get(device_id, []),
        })
    if latest:
        await redis.mset(latest)


def _read_at(item: tuple[DeviceInfo, Telemetry]) -> datetime:
    return item[1].read_at
