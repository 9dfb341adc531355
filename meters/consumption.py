"""The daily consumption check: readings -> daily and hourly use -> anomaly findings ->
`suspected_leak` / `meter_stopped` faults with the evidence attached (one open fault per
device and kind, as for every other rule)."""

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from meters.anomaly import AnomalyConfig, detect_anomalies
from meters.telemetry import DeviceInfo
from meters.models import Device
from meters.rules import raise_fault

log = structlog.get_logger(__name__)

# Cumulative registers: use over a period is the rise of the highest reading per period.
_PERIOD_MAXIMA = text("""
    SELECT device_id, date_trunc(:unit, read_at AT TIME ZONE :tz) AS period, max(volume_m3)
    FROM meters_reading
    WHERE device_id = ANY(:ids) AND read_at >= :since AND volume_m3 IS NOT NULL
    GROUP BY 1, 2 ORDER BY 1, 2
""")


def _uses(maxima: list[tuple[datetime, float]], step: timedelta) -> list[tuple[datetime, float]]:
    """Use per period from consecutive maxima; a gap in the readings yields no value, and a
    falling register (replacement, rollover) is not use."""
    out = []
    for (prev_at, prev), (at, value) in zip(maxima, maxima[1:]):
        if at - prev_at == step and value >= prev:
            out.append((at, round(value - prev, 6)))
    return out


async def check_consumption(
    session: AsyncSession, *, now: datetime, tz: ZoneInfo, recent_days: int = 14,
    config: AnomalyConfig = AnomalyConfig(),
) -> list[dict[str, Any]]:
    """Run the detector over every meter's history; findings in the last `recent_days` open
    faults (and orders). Returns what was raised."""
    devices = (await session.exec(select(Device).where(Device.kind == "meter"))).all()
    if not devices:
        return []
    ids = [d.id for d in devices]
    since = now - timedelta(days=config.min_history_days + 400)
    daily: dict[Any, list[tuple[datetime, float]]] = defaultdict(list)
    for device_id, period, top in (await session.exec(_PERIOD_MAXIMA, params={
            "unit": "day", "tz": str(tz), "ids": ids, "since": since})).all():
        daily[device_id].append((period, top))
    hourly: dict[Any, list[tuple[datetime, float]]] = defaultdict(list)
    for device_id, period, top in (await session.exec(_PERIOD_MAXIMA, params={
            "unit": "hour", "tz": str(tz), "ids": ids, "since": now - timedelta(days=recent_days + 7)})).all():
        hourly[device_id].append((period, top))
    recent_from = (now.astimezone(tz) - timedelta(days=recent_days)).date()
    raised = []
    for device in devices:
        days = [(at.date(), use) for at, use in _uses(daily[device.id], timedelta(days=1))]
        if len(days) < config.min_history_days:
            continue
        try:
            findings = detect_anomalies(device.external_id, days, _uses(hourly[device.id], timedelta(hours=1)) or None,
                                        since=max(recent_from, days[0][0] + timedelta(days=config.min_history_days)),
                                        config=config)
        except ValueError as exc:  # a series the detector cannot use is logged, never fatal
            log.warning("meters.consumption_skipped", device=device.external_id, reason=str(exc))
            continue
        for finding in findings:
            info = DeviceInfo(device.id, device.kind, device.external_id, device.customer_id, device.address_id,
                              device.has_valve, device.meter_type, device.report_interval_s)
            order_id = await raise_fault(session, info, finding.kind, now=now, evidence={
                "detector": "consumption", "start_day": finding.start_day.isoformat(),
                "score": round(finding.score, 4), **finding.evidence})
            raised.append({"device_id": str(device.id), "kind": finding.kind,
                           "start_day": finding.start_day.isoformat(), "order_id": str(order_id) if order_id else None})
    return raised

