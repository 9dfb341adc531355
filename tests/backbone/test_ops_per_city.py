"""Operations per city: an alert belongs to its order's city, and the alert list, the ops socket
and the on-duty technicians answer for one city with `?city=` (every city without it); a meter
is registered in its address's city."""

import asyncio
import json
import uuid
from datetime import datetime, timezone

import pytest
import websockets
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.alerts import OpsAlert, raise_alert
from dispatch.models import Order
from dispatch.service import Actor, create_order
from kit.db import session_scope
from matching import service as engine
from meters import service as meters
from tests.backbone.cities_support import (
    HANGZHOU,
    SHANGHAI,
    online_at,
    two_cities,
)
from tests.factories import make_customer, make_staff


async def _order_at(session: AsyncSession, lon: float, lat: float) -> Order:
    c = await make_customer(session, lon=lon, lat=lat)
    return await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind="repair",
                              actor=Actor("customer", str(c.account.id)))


async def _alert_in(session: AsyncSession, lon: float, lat: float) -> OpsAlert:
    order = await _order_at(session, lon, lat)
    return await raise_alert(session, kind="offer_lapsed", level="warning", order_id=order.id, details={})


async def test_an_alert_takes_its_orders_city_and_one_without_an_order_the_city_it_names(
        session: AsyncSession) -> None:
    await two_cities(session)
    assert (await _alert_in(session, *SHANGHAI)).city_id == "shanghai"
    assert (await _alert_in(session, *HANGZHOU)).city_id == "hangzhou"
    alone = await raise_alert(session, kind="emergency_unaccepted", level="critical", order_id=None, details={},
                              city_id="shanghai")
    assert alone.city_id == "shanghai"


async def test_each_city_lists_only_its_own_alerts_and_without_a_city_all_of_them(
        client: AsyncClient, session: AsyncSession) -> None:
    await two_cities(session)
    in_hangzhou = await _alert_in(session, *HANGZHOU)
    in_shanghai = await _alert_in(session, *SHANGHAI)
    _, admin = await make_staff(session, "admin")

    async def listed(query: str) -> set[str]:
        response = await client.get(f"/v1/ops/alerts{query}", headers=admin)
        assert response.status_code == 200, response.text
        return {a["id"] for a in response.json()["data"]}

    assert await listed("?city=hangzhou") == {str(in_hangzhou.id)}
    assert await listed("?city=shanghai") == {str(in_shanghai.id)}
    assert await listed("") == {str(in_hangzhou.id), str(in_shanghai.id)}
    one = (await client.get("/v1/ops/alerts?city=shanghai", headers=admin)).json()["data"][0]
    assert one["city_id"] == "shanghai"
    bad = await client.get("/v1/ops/alerts?city=Not%20A%20City", headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


async def test_each_city_sees_only_its_technicians_on_duty_each_at_his_live_position(
        client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    stations = await two_cities(session)
    index = engine.geo_index(redis)
    in_hangzhou = await online_at(session, index, stations["hangzhou"], HANGZHOU[0] + 0.002, HANGZHOU[1])
    in_shanghai = await online_at(session, index, stations["shanghai"], SHANGHAI[0] + 0.002, SHANGHAI[1])
    # The test's session never commits: put its picture in Redis as a rebuild would.
    await engine.rebuild_index(session, index)
    _, admin = await make_staff(session, "admin")

    async def listed(query: str) -> dict[str, dict]:
        response = await client.get(f"/v1/operations/technicians{query}", headers=admin)
        assert response.status_code == 200, response.text
        return {t["id"]: t for t in response.json()["data"]}

    hangzhou = await listed("?city=hangzhou")
    shanghai = await listed("?city=shanghai")
    assert set(hangzhou) == {str(in_hangzhou.id)} and set(shanghai) == {str(in_shanghai.id)}
    assert shanghai[str(in_shanghai.id)]["position"]["coordinates"] == pytest.approx([SHANGHAI[0] + 0.002, SHANGHAI[1]])
    assert set(await listed("")) == {str(in_hangzhou.id), str(in_shanghai.id)}
    assert (await client.get("/v1/operations/technicians?city=..", headers=admin)).status_code == 422


async def test_a_meter_is_registered_in_its_addresss_city(session: AsyncSession) -> None:
    await two_cities(session)
    for city, (lon, lat) in (("shanghai", SHANGHAI), ("hangzhou", HANGZHOU)):
        home = await make_customer(session, lon=lon, lat=lat)
        device = await meters.register_device(
            session, kind="meter", protocol="cjt188", external_id=f"{uuid.uuid4().int % 10**14:014d}",
            customer_id=home.customer.id, address_id=home.address.id,
            installed_at=datetime.now(timezone.utc), report_interval_s=3600)
        assert device.city_id == city


def _ops_socket(base: str, token: str, city: str | None = None):  # noqa: ANN202
    query = f"?city={city}" if city else ""
    return websockets.connect(base.replace("http://", "ws://") + f"/v1/ws/ops{query}",
                              additional_headers={"Authorization": f"Bearer {token}"})


async def _alerts(ws, n: int, timeout: float = 10.0) -> list[str]:  # noqa: ANN001
    """The city of each of the next n alerts the socket hears."""
    async def loop() -> list[str]:
        cities: list[str] = []
        while len(cities) < n:
            message = json.loads(await ws.recv())
            if message["type"] == "alert":
                cities.append(message["alert"]["city_id"])
        return cities

    return await asyncio.wait_for(loop(), timeout)


async def test_the_ops_socket_of_a_city_hears_only_that_citys_alerts(api_worker, committed_sessions) -> None:  # noqa: ANN001
    async with committed_sessions() as session:
        await two_cities(session)
        _, admin_headers = await make_staff(session, "admin")
        await session.commit()
    token = admin_headers["Authorization"][7:]
    base = api_worker()
    async with (_ops_socket(base, token, "hangzhou") as hangzhou, _ops_socket(base, token, "shanghai") as shanghai,
                _ops_socket(base, token) as everywhere):
        for ws, cities in ((hangzhou, ["hangzhou"]), (shanghai, ["shanghai"])):
            ready = json.loads(await ws.recv())
            assert (ready["type"], ready["cities"]) == ("ready", cities)
        ready = json.loads(await everywhere.recv())
        assert ready["type"] == "ready" and {"hangzhou", "shanghai"} <= set(ready["cities"])
        # In turn, so that each socket's next alerts show what it heard and what it did not.
        for lon, lat in (HANGZHOU, SHANGHAI, HANGZHOU, SHANGHAI):
            async with session_scope() as session:  # pushes after its commit
                await _alert_in(session, lon, lat)
        assert await _alerts(hangzhou, 2) == ["hangzhou", "hangzhou"]
        assert await _alerts(shanghai, 2) == ["shanghai", "shanghai"]
        assert await _alerts(everywhere, 4) == ["hangzhou", "shanghai", "hangzhou", "shanghai"]

    async with _ops_socket(base, token, "atlantis") as unknown:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await unknown.recv()
        assert closed.value.rcvd.code == 4404
