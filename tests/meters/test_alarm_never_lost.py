"""Idempotency on what the device said, not on the clock second: a heartbeat and an alarm
in the same millisecond, the same second or the same TCP write are two readings and the
alarm raises its order; only a true retransmission (same bytes / same report) is a no-op.
Real sockets (the concentrator listener) and HTTP (the signed webhook)."""

import asyncio
import json
import time
import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from dispatch.models import Order
from meters.models import Reading
from meters.nbiot import sign
from tests.meters.meters_factories import cjt188_reply, make_device, mbus_frame, wait_for

SECRET = "ctwing-test-secret"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "meters_webhook_secrets", {"ctwing": SECRET})


def report(imei: str, millis: int, **service_data) -> bytes:  # noqa: ANN003
    return json.dumps({"messageType": "dataReport", "productId": "17000001", "IMEI": imei, "timestamp": millis,
                       "payload": {"serviceData": service_data}}).encode()


async def push(client: AsyncClient, body: bytes, stamp: int | None = None) -> dict:
    ts = str(stamp or int(time.time()))
    response = await client.post("/v1/telemetry/ctwing", content=body, headers={
        "X-Timestamp": ts, "X-Signature": sign(SECRET, ts, body), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def readings_of(device_id: uuid.UUID):  # noqa: ANN201
    return select(func.count()).select_from(Reading).where(Reading.device_id == device_id)


def emergencies_of(customer_id: uuid.UUID):  # noqa: ANN201
    return select(func.count()).select_from(Order).where(Order.customer_id == customer_id,
                                                         Order.kind == "emergency_leak")


@pytest.mark.parametrize("alarm_offset_ms", [0, 600], ids=["same millisecond", "same second"])
async def test_webhook_heartbeat_then_alarm_in_one_instant_orders_the_emergency(
    client: AsyncClient, session: AsyncSession, alarm_offset_ms: int,
) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot",
                                           external_id=f"86100000000{alarm_offset_ms:04d}")
    at = (int(time.time()) - 5) * 1000 + 100  # …:xx.100
    heartbeat = await push(client, report(detector.external_id, at, gas_value=0, gas_sensor_state=0))
    alarm = await push(client, report(detector.external_id, at + alarm_offset_ms, gas_value=40, gas_sensor_state=1))
    assert (heartbeat["status"], alarm["status"], len(alarm["order_ids"])) == ("stored", "stored", 1)
    assert (await session.exec(readings_of(detector.id))).scalar() == 2
    assert (await session.exec(emergencies_of(customer.customer.id))).scalar() == 1
    stored = (await session.exec(select(Reading.read_at).where(Reading.device_id == detector.id)
                                 .order_by(Reading.read_at))).scalars().all()
    assert stored[-1].microsecond == (100 + alarm_offset_ms) % 1000 * 1000  # full precision kept


async def test_webhook_retransmission_resigned_later_is_a_duplicate(client: AsyncClient, session: AsyncSession) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000000777")
    body = report(detector.external_id, int(time.time() * 1000), gas_value=40, gas_sensor_state=1)
    first = await push(client, body, int(time.time()) - 2)
    again = await push(client, body)  # the platform retries: same report, a new signature
    assert (first["status"], again["status"], again["order_ids"]) == ("stored", "duplicate", [])
    assert (await session.exec(emergencies_of(customer.customer.id))).scalar() == 1


async def test_mbus_heartbeat_and_alarm_in_one_tcp_write_are_both_stored(plain_server, shared, session) -> None:  # noqa: ANN001
    _, port = plain_server
    async with shared():
        detector, customer = await make_device(session, kind="detector", protocol="mbus", external_id="87650001")
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbus_frame(address=87650001) + mbus_frame(alarm=True, address=87650001))
    await writer.drain()
    assert await wait_for(shared, readings_of(detector.id), 2) == 2
    assert await wait_for(shared, emergencies_of(customer.customer.id), 1) == 1
    writer.close()


async def test_mbus_alarm_in_the_same_second_as_a_heartbeat_is_stored(plain_server, shared, session) -> None:  # noqa: ANN001
    _, port = plain_server
    async with shared():
        detector, customer = await make_device(session, kind="detector", protocol="mbus", external_id="87650002")
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbus_frame(address=87650002))
    await writer.drain()
    assert await wait_for(shared, readings_of(detector.id), 1) == 1
    writer.write(mbus_frame(alarm=True, address=87650002))  # a few ms later: the same second
    await writer.drain()
    assert await wait_for(shared, readings_of(detector.id), 2) == 2
    assert await wait_for(shared, emergencies_of(customer.customer.id), 1) == 1
    writer.close()


async def test_mbus_retransmitted_frame_is_stored_once(plain_server, shared, session) -> None:  # noqa: ANN001
    _, port = plain_server
    async with shared():
        detector, customer = await make_device(session, kind="detector", protocol="mbus", external_id="87650003")
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):  # the concentrator resends the same telegram (same access number and content)
        writer.write(mbus_frame(alarm=True, address=87650003))
        await writer.drain()
        await asyncio.sleep(0.2)
    assert await wait_for(shared, readings_of(detector.id), 1) == 1
    await asyncio.sleep(0.2)
    assert await wait_for(shared, readings_of(detector.id), 1) == 1
    assert await wait_for(shared, emergencies_of(customer.customer.id), 1) == 1
    writer.close()


async def test_cjt188_reports_with_one_meter_clock_second_are_both_kept_and_evaluated(plain_server, shared, session) -> None:  # noqa: ANN001
    _, port = plain_server
    async with shared():
        meter, customer = await make_device(session, external_id="00000000000031")
    normal, abnormal = cjt188_reply(meter.external_id), cjt188_reply(meter.external_id, valve=0b10)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(normal + abnormal + normal)  # one write; the last is a retransmission
    await writer.drain()
    assert await wait_for(shared, readings_of(meter.id), 2) == 2
    faults = select(func.count()).select_from(Order).where(Order.customer_id == customer.customer.id,
                                                          Order.kind == "meter_fault", Order.priority == "urgent")
    assert await wait_for(shared, faults, 1) == 1
    writer.close()
