"""One emergency per home: alarms of several detectors at one address, and the customer's own
"I smell gas" order, make one open emergency order with every device's evidence, one safety
notice and one valve close per valve; after it closes, a new alarm opens a new one."""

import asyncio
import json
import time

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch_service
from kit.config import get_settings
from kit.events import drain
from dispatch.models import Order
from kit.models import OutboxMessage
from meters.models import Fault, ValveCommand
from meters.nbiot import sign
from tests.factories import make_staff
from tests.meters.meters_factories import make_device, mbus_frame, wait_for

SECRET = "ctwing-test-secret"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "meters_webhook_secrets", {"ctwing": SECRET})


async def alarm_push(client: AsyncClient, imei: str) -> dict:
    body = json.dumps({"messageType": "dataReport", "productId": "17000001", "IMEI": imei,
                       "timestamp": int(time.time() * 1000), "payload": {"serviceData": {"gas_sensor_state": 1}}}).encode()
    ts = str(int(time.time()))
    response = await client.post("/v1/telemetry/ctwing", content=body, headers={
        "X-Timestamp": ts, "X-Signature": sign(SECRET, ts, body), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def emergencies(customer_id):  # noqa: ANN001, ANN201
    return select(Order).where(Order.customer_id == customer_id, Order.kind == "emergency_leak")


async def safety_notices(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.topic == "meters.safety_advice_issued"))).scalar()


async def test_two_detectors_in_one_flat_share_one_emergency_over_tcp_and_webhook(
    plain_server, shared, session, client, redis,  # noqa: ANN001
) -> None:
    _, port = plain_server
    async with shared():
        kitchen, customer = await make_device(session, kind="detector", protocol="mbus", external_id="87660001")
        boiler, _ = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000006601",
                                      customer=customer)
        valve, _ = await make_device(session, external_id="00000000000661", customer=customer, has_valve=True)
        nb_valve, _ = await make_device(session, protocol="nbiot", external_id="861000000006602", customer=customer,
                                        has_valve=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbus_frame(alarm=True, address=87660001))
    await writer.drain()
    count = select(func.count()).select_from(Order).where(Order.customer_id == customer.customer.id)
    assert await wait_for(shared, count, 1) == 1
    second = await alarm_push(client, boiler.external_id)
    assert (second["status"], second["order_ids"]) == ("stored", [])

    order = (await session.exec(emergencies(customer.customer.id))).scalar_one()
    faults = (await session.exec(select(Fault).where(Fault.order_id == order.id))).scalars().all()
    assert sorted(f.device_id for f in faults) == sorted([kitchen.id, boiler.id])
    assert await safety_notices(session) == 1
    closes = (await session.exec(select(ValveCommand.device_id, ValveCommand.channel)
                                 .where(ValveCommand.command == "close"))).all()
    assert sorted(closes) == sorted([(valve.id, "tcp"), (nb_valve.id, "platform")])

    _, headers = await make_staff(session, "admin")
    evidence = (await client.get(f"/v1/orders/{order.id}/meter-evidence", headers=headers)).json()["data"]
    assert sorted(e["external_id"] for e in evidence) == sorted([kitchen.external_id, boiler.external_id])
    writer.close()


async def test_alarm_joins_the_customers_own_smell_gas_order(client: AsyncClient, session: AsyncSession) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000006603")
    valve, _ = await make_device(session, external_id="00000000000663", customer=customer, has_valve=True)
    own = await dispatch_service.create_order(
        session, customer_id=customer.customer.id, address_id=customer.address.id, kind="emergency_leak",
        actor=dispatch_service.Actor.system("customer-app"), description="smell of gas")
    result = await alarm_push(client, detector.external_id)
    assert result["order_ids"] == []
    fault = (await session.exec(select(Fault).where(Fault.device_id == detector.id))).scalar_one()
    assert fault.order_id == own.id
    assert await safety_notices(session) == 1  # the alarm is the first the meters side says about it
    assert (await session.exec(select(ValveCommand.device_id))).scalars().all() == [valve.id]


async def test_a_new_alarm_after_the_emergency_is_closed_opens_a_new_one(client: AsyncClient, session: AsyncSession) -> None:
    kitchen, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000006604")
    hall, _ = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000006605",
                                customer=customer)
    first = await alarm_push(client, kitchen.external_id)
    await dispatch_service.cancel_order(session, first["order_ids"][0], dispatch_service.Actor.system("ops"), "test")
    await drain(session)
    second = await alarm_push(client, hall.external_id)
    assert len(second["order_ids"]) == 1 and second["order_ids"] != first["order_ids"]
    assert len((await session.exec(emergencies(customer.customer.id))).scalars().all()) == 2
    assert await safety_notices(session) == 2


async def test_the_customers_smell_gas_report_joins_the_alarms_open_emergency(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    detector, customer = await make_device(session, kind="detector", protocol="nbiot", external_id="861000000006606")
    alarm = await alarm_push(client, detector.external_id)
    reported = await client.post("/v1/orders", headers=customer.headers, json={
        "kind": "emergency_leak", "address_id": str(customer.address.id), "description": "smell of gas"})
    assert reported.status_code == 200, reported.text
    assert reported.json()["id"] == alarm["order_ids"][0]
    assert len((await session.exec(emergencies(customer.customer.id))).scalars().all()) == 1
    repair = await client.post("/v1/orders", headers=customer.headers, json={
        "kind": "repair", "address_id": str(customer.address.id)})
    assert repair.status_code == 201  # only the gas-leak kind joins
    await dispatch_service.cancel_order(session, alarm["order_ids"][0], dispatch_service.Actor.system("ops"), "test")
    again = await client.post("/v1/orders", headers=customer.headers, json={
        "kind": "emergency_leak", "address_id": str(customer.address.id)})
    assert again.status_code == 201 and again.json()["id"] != alarm["order_ids"][0]
