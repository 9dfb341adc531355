"""Telemetry in: device lookup, binding check, quarantine, batched idempotent reading
inserts, rules on the new readings, latest state and last frames per device in Redis.

One `ingest` call is one batch in the caller's session; the caller commits. Readings go in
with one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING` keyed by
(device, read_at, digest of what the device said): a retransmission is stored and evaluated
once, while a different report in the same instant (a heartbeat and an alarm) is a new
reading. Reports timed by their arrival (no device clock) are retransmissions when the same
bytes came within `meters_retransmit_window_s`.
"""

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy import insert, select, text, update
from sqlmodel.ext.asyncio.session import AsyncSession

from meters import rules
from meters.models import Concentrator, Device, Quarantine, ValveCommand
from meters.protocols import cjt188, mbus
from meters.protocols.stream import StreamFrame
from meters.telemetry import LATEST_KEY, DeviceInfo, Telemetry

log = structlog.get_logger(__name__)

FRAMES = Counter("gasdispatch_meters_frames_total", "Frames received", ["channel"])
REJECTED = Counter("gasdispatch_meters_rejected_total", "Telemetry rejected", ["channel", "reason"])
GARBAGE_BYTES = Counter("gasdispatch_meters_garbage_bytes_total", "Bytes skipped between frames")
STORED = Counter("gasdispatch_meters_readings_stored_total", "Readings stored (duplicates excluded)")
DUPLICATES = Counter("gasdispatch_meters_readings_duplicate_total", "Retransmitted readings not stored again")
QUARANTINED = Counter("gasdispatch_meters_quarantined_total", "Reports kept aside, never acted on",
                      ["channel", "reason"])
COMMANDS = Counter("gasdispatch_meters_commands_total", "Valve commands by channel and state",
                   ["channel", "state"])

def digest_of(content: bytes) -> int:
    """A signed 64-bit content hash (the bigint `meters_reading.digest`)."""
    hasher = _BLAKE2B_8.copy()  # copying a made hasher is faster than making one, once per reading
    hasher.update(content)
    return int.from_bytes(hasher.digest(), "little", signed=True)


_BLAKE2B_8 = hashlib.blake2b(digest_size=8)


def reading_digest(t: Telemetry) -> int:
    if t.digest is not None:
        return t.digest
    return digest_of(repr((t.volume_m3, t.lel_pct, t.valve, t.battery_low, t.alarm, t.tamper)).encode())


async def last_frames(session: AsyncSession, device_id: uuid.UUID, external_id: str, *, limit: int = 20,
                      ) -> list[dict[str, Any]]:
    """What the device last sent, newest first: stored readings' frames and the reports kept
    in quarantine under its id (e.g. through a concentrator it is not bound to)."""
    rows = (await session.execute(text("""
        (SELECT received_at, read_at, raw, 'stored' AS outcome, NULL AS source FROM meters_reading
          WHERE device_id = :device_id ORDER BY read_at DESC LIMIT :limit)
        UNION ALL
        (SELECT received_at, NULL, raw::text, 'quarantined: ' || reason, source FROM meters_quarantine
          WHERE external_id = :external_id ORDER BY id DESC LIMIT :limit)
        ORDER BY received_at DESC LIMIT :limit
    """), {"device_id": device_id, "external_id": external_id, "limit": limit})).all()
    return [{"received_at": r[0], "read_at": r[1], "raw": r[2], "outcome": r[3], "source": r[4]} for r in rows]


def binding_violation(device: DeviceInfo, source: str, alternates: dict[str, list[str]]) -> str | None:
    """Why `source` may not report for the device (a quarantine reason), or None."""
    expected = device.bound_source
    if expected is None:
        return None if source.startswith("legacy:") else "device not bound to a concentrator"
    if source == expected or source in alternates.get(expected, ()):
        return None
    return "wrong platform" if expected.startswith("platform:") else "wrong concentrator"


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    # quarantine reason -> reports
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    # external ids of known devices that reported through their bound source
    accepted: set[str] = field(default_factory=set)
    order_ids: list[uuid.UUID] = field(default_factory=list)
    # (device external id, frame hex, command id) to write to a connected concentrator.
    commands: list[tuple[str, str, uuid.UUID]] = field(default_factory=list)


def telemetry_from_frame(frame: StreamFrame, received_at: datetime, tz: ZoneInfo) -> Telemetry | None:
    """A reassembled frame as telemetry; None for frames that carry no report (ACKs,
    requests). Raises FrameError for frames that do not decode."""
    if frame.protocol == "cjt188":
        # The frame's bytes (sequence number SER included) are the report's identity.
        fields = cjt188.read_reply(frame.data)
        if fields is not None:  # nearly every frame: a 901F read reply, decoded without a frame object
            address, volume, clock, valve, battery_low = fields
            return Telemetry(address, "cjt188", _meter_time(clock, tz) or received_at, received_at, volume, None,
                             valve, battery_low, raw={"hex": frame.data.hex()}, digest=digest_of(frame.data),
                             device_clock=clock is not None)
        decoded = cjt188.decode(frame.data)
        if decoded.direction != "reply":
            return None
        raw = {"hex": frame.data.hex()}
        if decoded.di == f"{cjt188.DI_VALVE:04X}":
            return Telemetry(decoded.address, "cjt188", received_at, received_at, valve=decoded.valve,
                             battery_low=decoded.battery_low, valve_reply=True, raw=raw,
                             digest=digest_of(frame.data), device_clock=False)
        if decoded.di != f"{cjt188.DI_READ_DATA:04X}":
            return None
        # The meter's clock is local time; without one the arrival time stands in.
        return Telemetry(decoded.address, "cjt188", _meter_time(decoded.clock, tz) or received_at, received_at,
                         volume_m3=decoded.current_volume_m3, valve=decoded.valve, battery_low=decoded.battery_low,
                         raw=raw, digest=digest_of(frame.data), device_clock=decoded.clock is not None)
    if len(frame.data) < 6:  # ACK and short frames are link control
        return None
    # M-Bus: the access number and the status byte are in the frame, so its bytes are the identity.
    reading = mbus.decode(frame.data)
    return Telemetry(reading.id, "mbus", received_at, received_at, volume_m3=reading.volume_m3,
                     battery_low=reading.power_low, alarm=reading.alarm, raw={"hex": frame.data.hex()},
                     digest=digest_of(frame.data), device_clock=False)


def _meter_time(clock: datetime | None, tz: ZoneInfo) -> datetime | None:
    if clock is None:
        return None
    key = (clock, tz)
    utc = _UTC_TIMES.get(key)
    if utc is None:
        utc = clock.replace(tzinfo=tz).astimezone(timezone.utc)
        if len(_UTC_TIMES) >= _UTC_TIMES_KEPT:
            _UTC_TIMES.clear()
        _UTC_TIMES[key] = utc
    return utc


# (meter clock, zone) -> UTC: the meters of a batch share a few clock readings, and
# `cjt188.read_reply` hands out the same object for the same stamp, whose hash is cached.
_UTC_TIMES: dict[tuple[datetime, ZoneInfo], datetime] = {}
_UTC_TIMES_KEPT = 4096


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
                Device.has_valve, Device.meter_type, Device.report_interval_s, Device.protocol,
                Concentrator.code, Device.platform,
            ).outerjoin(Concentrator, Concentrator.id == Device.concentrator_id)
             .where(Device.external_id.in_(missing)))).all()
            for *row, concentrator_code, platform in rows:
                bound = (f"concentrator:{concentrator_code}" if concentrator_code
                         else f"platform:{platform}" if platform else None)
                info = DeviceInfo(*row, bound_source=bound)
                self._cache[info.external_id] = (now, info)
                found[info.external_id] = info
        return found


# Returns the positions (1-based) of the rows that were stored before, so the common batch
# without any gets back no rows to decode at all. Times travel as microseconds since the
# epoch: asyncpg's timestamptz encoder costs several times its int8 one, per value.
_INSERT_READINGS = text("""
WITH batch AS (
    SELECT device_id, timestamptz 'epoch' + read_us * interval '1 microsecond' AS read_at, digest,
           timestamptz 'epoch' + received_us * interval '1 microsecond' AS received_at, volume_m3, lel_pct, valve,
           battery_low, alarm, tamper, raw, n
    FROM unnest(
        CAST(:device_id AS uuid[]), CAST(:read_at AS int8[]), CAST(:digest AS int8[]),
        CAST(:received_at AS int8[]), CAST(:volume_m3 AS float8[]), CAST(:lel_pct AS float8[]),
        CAST(:valve AS varchar[]), CAST(:battery_low AS boolean[]), CAST(:alarm AS boolean[]),
        CAST(:tamper AS boolean[]), CAST(:raw AS text[]))
    WITH ORDINALITY AS b(device_id, read_us, digest, received_us, volume_m3, lel_pct, valve, battery_low, alarm,
                         tamper, raw, n)
), stored AS (
    INSERT INTO meters_reading (device_id, read_at, digest, received_at, volume_m3, lel_pct, valve, battery_low,
                                alarm, tamper, raw)
    SELECT device_id, read_at, digest, received_at, volume_m3, lel_pct, valve, battery_low, alarm, tamper, raw
    FROM batch
    ON CONFLICT DO NOTHING
    RETURNING device_id, read_at, digest
)
SELECT b.n FROM batch b
WHERE (SELECT count(*) FROM stored) < (SELECT count(*) FROM batch)
  AND NOT EXISTS (SELECT FROM stored s WHERE s.device_id = b.device_id AND s.read_at = b.read_at
                                         AND s.digest = b.digest)
""")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_READING_COLUMNS = ("device_id", "read_at", "digest", "received_at", "volume_m3", "lel_pct", "valve", "battery_low",
                    "alarm", "tamper", "raw")
# Reports timed by arrival: the same bytes already stored within the window.
_RECENT_DIGESTS = text("""
SELECT r.device_id, r.digest FROM meters_reading r
JOIN unnest(CAST(:device_id AS uuid[]), CAST(:digest AS int8[]), CAST(:read_at AS timestamptz[])) AS u(device_id, digest, read_at)
  ON r.device_id = u.device_id AND r.digest = u.digest
 AND r.read_at >= u.read_at - make_interval(secs => :window) AND r.read_at < u.read_at
""")


class Ingestor:
    def __init__(self, registry: DeviceRegistry | None = None) -> None:
        from kit.config import get_settings

        self.registry = registry or DeviceRegistry()
        self.settings = get_settings()

    async def ingest(
        self, session: AsyncSession, redis: Redis, items: list[Telemetry], *, channel: str, source: str,
        now: datetime | None = None,
    ) -> IngestResult:
        """`source` is who delivered the batch: "concentrator:<code>", "legacy:<address>" or
        "platform:<name>"; a device reports only through the source it is bound to."""
        now = now or datetime.now(timezone.utc)
        result = IngestResult()
        if not items:
            return result
        devices = await self.registry.resolve(session, {t.external_id for t in items})
        known: list[tuple[DeviceInfo, Telemetry]] = []
        refused: dict[str, list[Telemetry]] = {}
        replies: list[tuple[DeviceInfo, Telemetry]] = []
        alternates = self.settings.meters_binding_alternates
        # One verdict per device, not per report: a batch carries many reports of each.
        verdicts = {external_id: binding_violation(device, source, alternates)
                    for external_id, device in devices.items()}
        for t in items:
            device = devices.get(t.external_id)
            reason = verdicts.get(t.external_id, "unknown device")
            if reason is not None:
                refused.setdefault(reason, []).append(t)
            elif t.valve_reply:
                replies.append((device, t))
                result.accepted.add(t.external_id)
            else:
                known.append((device, t))
                result.accepted.add(t.external_id)
        for reason, reports in refused.items():
            expected = devices[reports[0].external_id].bound_source if reason != "unknown device" else None
            await self._quarantine(session, reports, channel=channel, source=source, reason=reason,
                                   expected_source=expected)
            result.quarantined += len(reports)
            result.quarantine_reasons[reason] = len(reports)
        for device, reply in replies:
            await acknowledge_command(session, device.id, reply_hex=reply.raw.get("hex"), at=reply.received_at,
                                      channel="tcp")
        new = await self._store(session, known) if known else []
        result.stored, result.duplicates = len(new), len(known) - len(new)
        STORED.inc(len(new))
        DUPLICATES.inc(result.duplicates)
        if not new:
            return result
        previous = await _latest_states(redis, {device.id for device, _ in new})
        outcome = await rules.evaluate(session, new, previous, settings=self.settings, now=now)
        result.order_ids, result.commands = outcome.order_ids, outcome.commands
        await _save_latest(redis, new, previous, outcome.active)
        return result

    async def _store(
        self, session: AsyncSession, items: list[tuple[DeviceInfo, Telemetry]],
    ) -> list[tuple[DeviceInfo, Telemetry]]:
        """The readings the database did not have, sorted by read_at (stable: the order of
        arrival within one instant)."""
        # Within a batch the first copy of a report wins, as the database would.
        # Keyed by external id (one per device) since a str caches its hash and a UUID does not.
        unique: dict[tuple[str, datetime, int], tuple[DeviceInfo, Telemetry, int]] = {}
        for device, t in items:
            digest = reading_digest(t)
            unique.setdefault((t.external_id, t.read_at, digest), (device, t, digest))
        rows = list(unique.values())
        arrival_timed = [row for row in rows if not row[1].device_clock]
        if arrival_timed:
            seen = set((await session.execute(_RECENT_DIGESTS, {
                "device_id": [device.id for device, _, _ in arrival_timed],
                "digest": [digest for _, _, digest in arrival_timed],
                "read_at": [t.read_at for _, t, _ in arrival_timed],
                "window": float(self.settings.meters_retransmit_window_s),
            })).all())
            if seen:
                rows = [row for row in rows if row[1].device_clock or (row[0].id, row[2]) not in seen]
        if not rows:
            return []
        instants = {t.read_at for _, t, _ in rows}  # a batch shares a few
        instants.update(t.received_at for _, t, _ in rows)
        micros = {at: (at.astimezone(timezone.utc) - _EPOCH) // _MICROSECOND for at in instants}
        columns = zip(*[(device.id, micros[t.read_at], digest, micros[t.received_at], t.volume_m3, t.lel_pct,
                         t.valve, t.battery_low, t.alarm, t.tamper, _raw_text(t)) for device, t, digest in rows],
                      strict=True)
        stored_before = (await session.execute(_INSERT_READINGS, {
            name: list(values) for name, values in zip(_READING_COLUMNS, columns, strict=True)})).scalars().all()
        if stored_before:  # keep only what went in now
            skipped = set(stored_before)
            rows = [row for n, row in enumerate(rows, 1) if n not in skipped]
        stored = [(device, t) for device, t, _ in rows]
        stored.sort(key=_read_at)
        return stored

    @staticmethod
    async def _quarantine(
        session: AsyncSession, items: list[Telemetry], *, channel: str, source: str, reason: str,
        expected_source: str | None = None,
    ) -> None:
        bound = {"expected_source": expected_source} if expected_source else {}
        await session.execute(insert(Quarantine), [
            {"channel": channel, "source": source[:100], "external_id": t.external_id[:64], "protocol": t.protocol,
             "reason": reason, "raw": {**t.raw, **bound, "read_at": t.read_at.isoformat()},
             "received_at": t.received_at}
            for t in items
        ])
        QUARANTINED.labels(channel, reason).inc(len(items))
        log.info("meters.quarantined", channel=channel, source=source, reason=reason, count=len(items),
                 expected_source=expected_source)


async def quarantine_raw(session: AsyncSession, *, channel: str, source: str, reason: str, raw: dict[str, Any],
                         external_id: str | None = None, protocol: str | None = None) -> None:
    """Keep a report we could not attribute or map (unknown product, unknown device)."""
    session.add(Quarantine(channel=channel, source=source[:100], external_id=external_id, protocol=protocol,
                           reason=reason[:64], raw=raw))
    QUARANTINED.labels(channel, reason[:64]).inc()
    await session.flush()


async def acknowledge_command(
    session: AsyncSession, device_id: uuid.UUID, *, reply_hex: str | None, at: datetime, channel: str,
    command_id: uuid.UUID | None = None,
) -> bool:
    """The named command, or the device's newest sent (or still queued) one, gets the reply."""
    query = select(ValveCommand.id).where(ValveCommand.device_id == device_id,
                                          ValveCommand.status.in_(("sent", "queued")))
    if command_id is not None:
        query = query.where(ValveCommand.id == command_id)
    found = (await session.execute(query.order_by(ValveCommand.created_at.desc()).limit(1))).scalar_one_or_none()
    if found is None:
        log.info("meters.valve_reply_unsolicited", device_id=str(device_id), channel=channel)
        return False
    await session.execute(update(ValveCommand).where(ValveCommand.id == found).values(
        status="acknowledged", reply_hex=reply_hex, replied_at=at))
    COMMANDS.labels(channel, "acknowledged").inc()
    return True


async def _latest_states(redis: Redis, device_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    if not device_ids:
        return {}
    ordered = list(device_ids)
    values = await redis.mget([_latest_key(d) for d in ordered])
    found = [(d, v) for d, v in zip(ordered, values, strict=True) if v]
    if not found:
        return {}
    # One parse for the batch: per state, json.loads costs more in calling than in parsing.
    raw = [v for _, v in found]
    batch = b"[" + b",".join(raw) + b"]" if isinstance(raw[0], bytes) else "[" + ",".join(raw) + "]"
    return {d: state for (d, _), state in zip(found, json.loads(batch), strict=True)}


def _latest_key(device_id: uuid.UUID) -> str:
    key = _LATEST_KEYS.get(device_id)
    if key is None:  # str(UUID) is slow enough to show per reading
        if len(_LATEST_KEYS) >= _LATEST_KEYS_KEPT:
            _LATEST_KEYS.clear()
        key = _LATEST_KEYS[device_id] = LATEST_KEY.format(device_id)
    return key


_LATEST_KEYS: dict[uuid.UUID, str] = {}
_LATEST_KEYS_KEPT = 100_000


async def latest_state(redis: Redis, device_id: uuid.UUID) -> dict[str, Any] | None:
    return (await _latest_states(redis, {device_id})).get(device_id)


async def _save_latest(
    redis: Redis, new: list[tuple[DeviceInfo, Telemetry]], previous: dict[uuid.UUID, dict[str, Any]],
    active: dict[uuid.UUID, list[str]],
) -> None:
    last: dict[uuid.UUID, Telemetry] = {}
    for device, t in new:  # sorted by read_at: the last one per device wins
        last[device.id] = t
    # A batch shares a few datetime objects (see `_meter_time`); isoformat is slow. By identity:
    # equal instants in other zones print differently.
    iso: dict[int, str] = {}
    latest: dict[str, str] = {}
    for device_id, t in last.items():
        read_at = iso.get(id(t.read_at)) or iso.setdefault(id(t.read_at), t.read_at.isoformat())
        before = previous.get(device_id)
        if before is not None and before["read_at"] > read_at:
            continue  # a late report does not overwrite a newer state
        received_at = iso.get(id(t.received_at)) or iso.setdefault(id(t.received_at), t.received_at.isoformat())
        latest[_latest_key(device_id)] = _encode_state({
            "read_at": read_at, "received_at": received_at, "volume_m3": t.volume_m3,
            "lel_pct": t.lel_pct, "valve": t.valve, "battery_low": t.battery_low, "alarm": t.alarm,
            "tamper": t.tamper, "active": active.get(device_id, []),
        })
    if latest:
        await redis.mset(latest)


# The same text as json.dumps, without its per-call encoder set-up and cycle check.
_encode_state = json.JSONEncoder(check_circular=False).encode


def _raw_text(t: Telemetry) -> str | None:
    if "hex" in t.raw:
        return t.raw["hex"]
    return json.dumps(t.raw["envelope"], ensure_ascii=False) if "envelope" in t.raw else None


def _read_at(item: tuple[DeviceInfo, Telemetry]) -> datetime:
    return item[1].read_at
