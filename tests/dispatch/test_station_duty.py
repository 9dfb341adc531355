"""A station's duty staff: operations accounts an admin puts on duty for a station, notified
(kind ops_alert) besides the ops console when an order in the station's area waits past an
escalation threshold; only enabled admin accounts may be on duty."""

import uuid
from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.alerts import OpsAlert, raise_alert
from dispatch.models import Account, Notification, ServiceStation
from dispatch.service import Actor, create_order
from dispatch.stations import create_station, set_duty_staff
from kit.events import drain
from matching.service import raise_due_alerts
from tests.factories import make_customer, make_staff, make_technician

CENTER = (120.155, 30.274)
ELSEWHERE = (120.255, 30.374)


def square(lon: float, lat: float, half: float = 0.03) -> dict:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
            [lon - half, lat - half]]
    return {"type": "Polygon", "coordinates": [ring]}


async def a_station(session: AsyncSession, lon: float, lat: float) -> ServiceStation:
    return await create_station(session, name=f"站 {uuid.uuid4().hex[:6]}", city="demo", lon=lon, lat=lat,
                                service_area=square(lon, lat), daily_capacity=40)


async def ops_alerts_of(session: AsyncSession, account: Account) -> list[Notification]:
    return list((await session.exec(select(Notification).where(
        Notification.account_id == account.id, Notification.kind == "ops_alert"))).all())


async def test_duty_staff_of_the_orders_station_are_notified_when_an_emergency_waits_past_its_threshold(
    session: AsyncSession,
) -> None:
    here, there = await a_station(session, *CENTER), await a_station(session, *ELSEWHERE)
    on_duty, _ = await make_staff(session, "admin")
    on_leave, _ = await make_staff(session, "admin")
    elsewhere, _ = await make_staff(session, "admin")
    off_duty, _ = await make_staff(session, "admin")
    await set_duty_staff(session, here.id, [on_duty.id, on_leave.id])
    await set_duty_staff(session, there.id, [elsewhere.id])
    on_leave.disabled_at = datetime.now(timezone.utc)
    session.add(on_leave)
    c = await make_customer(session, *CENTER)
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="emergency_leak",
                               actor=Actor("customer", str(c.account.id)))
    await drain(session)  # created -> matching

    assert await raise_due_alerts(session, order.created_at + timedelta(seconds=30)) == 0
    assert await ops_alerts_of(session, on_duty) == []
    assert await raise_due_alerts(session, order.created_at + timedelta(seconds=121)) == 1
    alert = (await session.exec(select(OpsAlert).where(OpsAlert.order_id == order.id))).one()
    [told] = await ops_alerts_of(session, on_duty)
    assert told.payload == {"alert_id": str(alert.id), "kind": "emergency_unaccepted", "level": "critical",
                            "order_id": str(order.id), "priority": "emergency"}
    for account in (on_leave, elsewhere, off_duty):
        assert await ops_alerts_of(session, account) == []
    # The same open alert raised again tells nobody twice.
    await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=order.id, details={})
    assert len(await ops_alerts_of(session, on_duty)) == 1


async def test_an_alert_without_an_order_notifies_no_station(session: AsyncSession) -> None:
    station = await a_station(session, *CENTER)
    on_duty, _ = await make_staff(session, "admin")
    await set_duty_staff(session, station.id, [on_duty.id])
    await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=None, details={})
    assert await ops_alerts_of(session, on_duty) == []


async def test_admin_sets_and_replaces_a_stations_duty_staff(client: AsyncClient, session: AsyncSession) -> None:
    station = await a_station(session, *CENTER)
    _, headers = await make_staff(session, "admin")
    first, _ = await make_staff(session, "admin")
    second, _ = await make_staff(session, "admin")
    url = f"/v1/stations/{station.id}/duty-staff"
    assert (await client.get(url, headers=headers)).json()["data"] == []

    both = await client.put(url, headers=headers, json={"account_ids": [str(first.id), str(second.id), str(first.id)]})
    assert both.status_code == 200, both.text
    assert sorted(m["account_id"] for m in both.json()["data"]) == sorted([str(first.id), str(second.id)])
    one = await client.put(url, headers=headers, json={"account_ids": [str(second.id)]})
    assert [m["account_id"] for m in one.json()["data"]] == [str(second.id)]
    assert [m["email"] for m in (await client.get(url, headers=headers)).json()["data"]] == [second.email]
    assert (await client.put(url, headers=headers, json={"account_ids": []})).json()["data"] == []


async def test_only_enabled_admin_accounts_can_be_on_duty_and_only_admins_set_them(
    client: AsyncClient, session: AsyncSession,
) -> None:
    station = await a_station(session, *CENTER)
    _, headers = await make_staff(session, "admin")
    admin, _ = await make_staff(session, "admin")
    technician = await make_technician(session)
    url = f"/v1/stations/{station.id}/duty-staff"
    unknown = uuid.uuid4()

    refused = await client.put(url, headers=headers, json={"account_ids": [str(admin.id), str(technician.account.id),
                                                                           str(unknown)]})
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == "/problems/not-duty-staff"
    assert refused.json()["account_ids"] == [str(technician.account.id), str(unknown)]
    assert (await client.get(url, headers=headers)).json()["data"] == []  # nothing of a refused list is kept

    malformed = await client.put(url, headers=headers, json={"account_ids": "everyone"})
    assert malformed.status_code == 422 and malformed.headers["content-type"].startswith("application/problem+json")
    missing = await client.put(f"/v1/stations/{uuid.uuid4()}/duty-staff", headers=headers, json={"account_ids": []})
    assert missing.status_code == 404
    as_technician = await client.put(url, headers=technician.headers, json={"account_ids": [str(admin.id)]})
    assert as_technician.status_code == 403
