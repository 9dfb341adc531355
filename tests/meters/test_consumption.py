"""The daily consumption check on stored readings: a real household's series (pygazpar
sample, see test_anomaly.py), once clean and once with a leak injected."""

import json
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order
from meters.consumption import check_consumption
from meters.models import Fault
from tests.meters.meters_factories import make_device

SAMPLE = Path(__file__).parent / "data" / "pygazpar_daily_data_sample.json"
TZ = ZoneInfo("Asia/Shanghai")
DAYS = 464  # a year of history, then two weeks


async def store_series(session: AsyncSession, device_id, leak_from: int | None) -> datetime:  # noqa: ANN001
    rows = json.loads(SAMPLE.read_text())[:DAYS]
    today = datetime.now(TZ).date()
    first = today - timedelta(days=DAYS)
    register, values = 1000.0, []
    for i, row in enumerate(rows):
        register += row["volume_m3"] + (5.0 if leak_from is not None and i >= leak_from else 0.0)
        read_at = datetime.combine(first + timedelta(days=i), time(23, 0), TZ).astimezone(timezone.utc)
        values.append({"device_id": device_id, "read_at": read_at, "received_at": read_at, "volume_m3": round(register, 3)})
    await session.exec(text(
        "INSERT INTO meters_reading (device_id, read_at, received_at, volume_m3) "
        "VALUES (:device_id, :read_at, :received_at, :volume_m3)"), params=values)
    return datetime.combine(today, time(6, 0), TZ).astimezone(timezone.utc)


async def test_a_leak_in_stored_readings_raises_one_suspected_leak_order_with_evidence(session: AsyncSession) -> None:
    device, _ = await make_device(session, external_id="00000000000701", installed_at=datetime.now(timezone.utc) - timedelta(days=500))
    now = await store_series(session, device.id, leak_from=DAYS - 12)
    raised = await check_consumption(session, now=now, tz=TZ)
    assert [r["kind"] for r in raised] == ["suspected_leak"]
    order = await session.get(Order, raised[0]["order_id"])
    assert (order.kind, order.source) == ("suspected_leak", "meter")
    fault = (await session.exec(select(Fault).where(Fault.device_id == device.id))).one()
    evidence = fault.notes[0]
    assert evidence["detector"] == "consumption" and evidence["ratio_to_last_28_days"] > 1
    again = await check_consumption(session, now=now + timedelta(hours=1), tz=TZ)
    assert all(r["order_id"] is None for r in again)  # the open fault is annotated, no second order
    assert len((await session.exec(select(Order).where(Order.kind == "suspected_leak",
                                                       Order.customer_id == order.customer_id))).all()) == 1


async def test_a_clean_household_raises_nothing(session: AsyncSession) -> None:
    device, _ = await make_device(session, external_id="00000000000702", installed_at=datetime.now(timezone.utc) - timedelta(days=500))
    now = await store_series(session, device.id, leak_from=None)
    assert await check_consumption(session, now=now, tz=TZ) == []


async def test_a_meter_with_too_little_history_is_not_judged(session: AsyncSession) -> None:
    device, _ = await make_device(session, external_id="00000000000703")
    await session.exec(text(
        "INSERT INTO meters_reading (device_id, read_at, received_at, volume_m3) VALUES (:d, now(), now(), 5)"),
        params={"d": device.id})
    assert await check_consumption(session, now=datetime.now(timezone.utc), tz=TZ) == []
