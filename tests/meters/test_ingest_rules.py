"""Ingestion and rules against the real database and Redis, in the test's transaction."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch_service
from kit.config import get_settings
from kit.events import drain
from dispatch.models import Order
from kit.models import OutboxMessage
from meters import reminders, rules
from meters import service as meters_service
from meters.ingest import Ingestor, Telemetry, latest_state
from meters.protocols import cjt188
from meters.models import Fault, Quarantine, Reading, ValveCommand
from tests.meters.meters_factories import make_device

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def report(external_id: str, minutes: int = 0, **values) -> Telemetry:
    at = NOW + timedelta(minutes=minutes)
    return Telemetry(external_id, "nbiot", at, at, **values)


async def orders_of(session: AsyncSession, customer_id) -> list[Order]:  # noqa: ANN001
    return list((await session.exec(select(Order).where(Order.customer_id == customer_id))).scalars())


async def test_unknown_device_is_quarantined_not_stored(session: AsyncSession, redis) -> None:  # noqa: ANN001
    result = await Ingestor().ingest(session, redis, [report("NOSUCHDEVICE", alarm=True)], channel="tcp", source="legacy:t", now=NOW)
    assert (result.quarantined, result.stored, result.order_ids) == (1, 0, [])
    row = (await session.exec(select(Quarantine).where(Quarantine.external_id == "NOSUCHDEVICE"))).scalar_one()
    assert row.reason == "unknown device"


async def test_retransmitted_reading_is_stored_once(session: AsyncSession, redis) -> None:  # noqa: ANN001
    device, _ = await make_device(session, external_id="00000000000011")
    ingestor = Ingestor()
    first = await ingestor.ingest(session, redis, [report(device.external_id, volume_m3=1.5)] * 2, channel="tcp", source="legacy:t", now=NOW)
    again = await ingestor.ingest(session, redis, [report(device.external_id, volume_m3=1.5)], channel="tcp", source="legacy:t", now=NOW)
    assert (first.stored, first.duplicates, again.stored, again.duplicates) == (1, 1, 0, 1)
    count = (await session.exec(select(func.count()).select_from(Reading).where(Reading.device_id == device.id))).scalar()
    assert count == 1
    assert (await latest_state(redis, device.id))["volume_m3"] == 1.5


async def test_batch_of_stored_and_new_readings_stores_and_evaluates_only_the_new(session: AsyncSession, redis) -> None:  # noqa: ANN001
    device, customer = await make_device(session, external_id="00000000000013")
    ingestor = Ingestor()
    external_id = device.external_id
    await ingestor.ingest(session, redis, [report(external_id, 0, volume_m3=1.0), report(external_id, 2, volume_m3=3.0)],
                          channel="tcp", source="legacy:t", now=NOW)
    mixed = [report(external_id, 0, volume_m3=1.0), report(external_id, 1, volume_m3=2.0, battery_low=True),
             report(external_id, 2, volume_m3=3.0), report(external_id, 3, volume_m3=4.0)]
    result = await ingestor.ingest(session, redis, mixed, channel="tcp", source="legacy:t", now=NOW)
    assert (result.stored, result.duplicates) == (2, 2)
    volumes = (await session.exec(select(Reading.volume_m3).where(Reading.device_id == device.id)
                                  .order_by(Reading.read_at))).scalars().all()
    assert volumes == [1.0, 2.0, 3.0, 4.0]
    orders = await orders_of(session, customer.customer.id)  # the new low-battery reading was evaluated
    assert [(o.kind, o.priority) for o in orders] == [("meter_fault", "routine")]
    assert (await latest_state(redis, device.id))["volume_m3"] == 4.0


async def test_low_battery_opens_one_order_and_repeats_annotate(session: AsyncSession, redis) -> None:  # noqa: ANN001
    device, customer = await make_device(session, external_id="00000000000012")
    ingestor = Ingestor()
    for minute in (0, 60, 120):
        await ingestor.ingest(session, redis, [report(device.external_id, minute, battery_low=True)],
                              channel="tcp", source="legacy:t", now=NOW)
    orders = await orders_of(session, customer.customer.id)
    assert [(o.kind, o.source, o.priority) for o in orders] == [("meter_fault", "meter", "routine")]
    fault = (await session.exec(select(Fault).where(Fault.device_id == device.id))).scalar_one()
    assert (fault.fault_kind, fault.occurrences, fault.order_id) == ("battery_low", 3, orders[0].id)


async def test_methane_alarm_orders_emergency_advises_household_and_closes_valve(session: AsyncSession, redis) -> None:  # noqa: ANN001
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861234567890123")
    meter, _ = await make_device(session, external_id="00000000000013", customer=customer, has_valve=True)
    ingestor = Ingestor()
    first = await ingestor.ingest(session, redis, [report(detector.external_id, alarm=True, lel_pct=30.0)],
                                  channel="webhook", source="platform:ctwing", now=NOW)
    second = await ingestor.ingest(session, redis, [report(detector.external_id, 1, alarm=True, lel_pct=35.0)],
                                   channel="webhook", source="platform:ctwing", now=NOW)
    assert len(first.order_ids) == 1 and second.order_ids == []
    orders = await orders_of(session, customer.customer.id)
    assert [(o.kind, o.priority, o.source) for o in orders] == [("emergency_leak", "emergency", "alarm")]
    advice = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "meters.safety_advice_issued"))).scalars().all()
    assert [a.payload["customer_id"] for a in advice] == [str(customer.customer.id)]
    text = advice[0].payload["text"]
    assert all(w in text["zh"] for w in ("通风", "电器", "关闭燃气总阀"))
    assert all(w in text["en"] for w in ("ventilate", "switches", "close the main gas valve"))
    command = (await session.exec(select(ValveCommand).where(ValveCommand.device_id == meter.id))).scalar_one()
    decoded = cjt188.decode(bytes.fromhex(command.frame_hex))
    assert (command.command, decoded.address, decoded.valve_command) == ("close", meter.external_id, "close")
    assert first.commands == [(meter.external_id, command.frame_hex, command.id)]


async def test_lel_threshold_only_applies_when_configured(session: AsyncSession, redis, monkeypatch) -> None:  # noqa: ANN001
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861234567890124")
    ingestor = Ingestor()
    await ingestor.ingest(session, redis, [report(detector.external_id, lel_pct=60.0, alarm=False)], channel="webhook", source="platform:ctwing", now=NOW)
    assert await orders_of(session, customer.customer.id) == []
    monkeypatch.setattr(ingestor.settings, "meters_lel_alarm_pct", 50.0)
    await ingestor.ingest(session, redis, [report(detector.external_id, 1, lel_pct=60.0, alarm=False)], channel="webhook", source="platform:ctwing", now=NOW)
    assert [o.kind for o in await orders_of(session, customer.customer.id)] == ["emergency_leak"]


async def test_cleared_alarm_is_noted_and_fault_closes_with_its_order(session: AsyncSession, redis) -> None:  # noqa: ANN001
    meters_service.register()
    device, customer = await make_device(session, external_id="00000000000014")
    ingestor = Ingestor()
    await ingestor.ingest(session, redis, [report(device.external_id, 0, valve="abnormal")], channel="tcp", source="legacy:t", now=NOW)
    await ingestor.ingest(session, redis, [report(device.external_id, 60, valve="open")], channel="tcp", source="legacy:t", now=NOW)
    fault = (await session.exec(select(Fault).where(Fault.device_id == device.id))).scalar_one()
    await session.refresh(fault)
    assert fault.cleared_at is not None and fault.closed_at is None
    await dispatch_service.cancel_order(session, fault.order_id, dispatch_service.Actor.system("ops"), "test")
    await drain(session)
    await session.refresh(fault)
    assert fault.closed_at is not None
    # Closed: the next abnormal valve opens a new fault and a new order.
    await ingestor.ingest(session, redis, [report(device.external_id, 120, valve="abnormal")], channel="tcp", source="legacy:t", now=NOW)
    assert len(await orders_of(session, customer.customer.id)) == 2


async def test_comm_lost_fires_only_after_the_interval_multiple(session: AsyncSession, redis) -> None:  # noqa: ANN001
    device, customer = await make_device(session, external_id="00000000000015", interval_s=3600)
    await Ingestor().ingest(session, redis, [report(device.external_id, volume_m3=3.0)], channel="tcp", source="legacy:t", now=NOW)
    quiet = await rules.check_comm_lost(session, redis, now=NOW + timedelta(hours=2, minutes=59), factor=3.0)
    assert quiet == []
    lost = await rules.check_comm_lost(session, redis, now=NOW + timedelta(hours=3, minutes=1), factor=3.0)
    again = await rules.check_comm_lost(session, redis, now=NOW + timedelta(hours=4), factor=3.0)
    assert len(lost) == 1 and again == []
    assert [o.kind for o in await orders_of(session, customer.customer.id)] == ["meter_fault"]


async def test_comm_lost_uses_stored_readings_when_redis_lost_the_state(session: AsyncSession, redis) -> None:  # noqa: ANN001
    device, _ = await make_device(session, external_id="00000000000016", interval_s=3600)
    await Ingestor().ingest(session, redis, [report(device.external_id, volume_m3=3.0)], channel="tcp", source="legacy:t", now=NOW)
    await redis.flushdb()
    assert await rules.check_comm_lost(session, redis, now=NOW + timedelta(hours=1), factor=3.0) == []


async def test_maintenance_reminder_due_once_per_period(session: AsyncSession, redis) -> None:  # noqa: ANN001
    installed = NOW - timedelta(days=10)
    device, customer = await make_device(session, external_id="00000000000017", installed_at=installed, appliances=["boiler", "stove"])
    ingestor = Ingestor()
    await ingestor.ingest(session, redis, [report(device.external_id, -60 * 24 * 9, volume_m3=100.0),
                                           report(device.external_id, 0, volume_m3=2300.0)], channel="tcp", source="legacy:t", now=NOW)
    settings = get_settings().model_copy(update={"meters_reminder_thresholds": {
        "boiler": {"m3": 2000.0, "days": 365.0}, "stove": {"m3": 5000.0, "days": 365.0}}})
    first = await reminders.due_reminders(session, settings=settings, now=NOW)
    again = await reminders.due_reminders(session, settings=settings, now=NOW + timedelta(days=29))
    later = await reminders.due_reminders(session, settings=settings, now=NOW + timedelta(days=31))
    assert [(r["appliance_kind"], r["order_kind"], r["used_m3"]) for r in first] == [("boiler", "boiler_service", 2200.0)]
    assert again == [] and [r["appliance_kind"] for r in later] == ["boiler"]
    assert first[0]["customer_id"] == str(customer.customer.id)
