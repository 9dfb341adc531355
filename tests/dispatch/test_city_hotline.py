"""The "I smell gas" hotline is the city's own: `?city=` names the city (the customer app sends
the city of the chosen address, which the address API gives), 119 comes always, an unknown city
is a problem, not a 500."""

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.cities import ensure_city
from dispatch.seed import CITIES
from dispatch.stations import create_station
from kit.config import get_settings
from tests.factories import make_customer

SHANGHAI = CITIES["shanghai"].center


def square(lon: float, lat: float, half: float = 0.03) -> dict:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
            [lon - half, lat - half]]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture
async def seeded_cities(session: AsyncSession) -> None:
    """Hangzhou and Shanghai as the demo seed makes them: each city's row holds its hotline."""
    for city, plan in (("hangzhou", CITIES["demo"]), ("shanghai", CITIES["shanghai"])):
        # Set again: a row another test committed may exist without one.
        (await ensure_city(session, city, name=plan.name)).hotline = plan.hotline
        await create_station(session, name=plan.station_names[0], city=city, lon=plan.center[0], lat=plan.center[1],
                             service_area=square(*plan.center), daily_capacity=40)


@pytest.mark.usefixtures("seeded_cities")
@pytest.mark.parametrize("city,number", [("hangzhou", "0571-96777"), ("shanghai", "021-962777")])
async def test_each_city_answers_its_own_hotline_then_119(client: AsyncClient, city: str, number: str) -> None:
    response = await client.get(f"/v1/safety/gas-leak?city={city}")
    assert response.status_code == 200, response.text
    assert response.json()["hotlines"] == [{"city": city, "number": number}, {"number": "119"}]
    assert response.headers["cache-control"] == "public, max-age=300"


@pytest.mark.usefixtures("seeded_cities")
async def test_without_a_city_the_installs_city_answers(client: AsyncClient) -> None:
    assert (await client.get("/v1/safety/gas-leak")).json()["hotlines"] == [
        {"city": get_settings().city, "number": "96777"}, {"number": "119"}]


async def test_the_settings_line_stands_in_for_a_city_row_without_one(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await ensure_city(session, "ningbo", name="宁波")
    monkeypatch.setattr(get_settings(), "emergency_hotlines", {"ningbo": "+86-574-96777"})
    assert (await client.get("/v1/safety/gas-leak?city=ningbo")).json()["hotlines"] == [
        {"city": "ningbo", "number": "+86-574-96777"}, {"number": "119"}]


@pytest.mark.parametrize("city,status", [("atlantis", 404), ("Not a city", 422), ("x" * 61, 422)])
async def test_an_unknown_or_malformed_city_is_a_problem(client: AsyncClient, city: str, status: int) -> None:
    response = await client.get("/v1/safety/gas-leak", params={"city": city})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.usefixtures("seeded_cities")
async def test_an_address_carries_the_city_whose_hotline_to_call(client: AsyncClient, session: AsyncSession) -> None:
    household = await make_customer(session, *SHANGHAI)
    [address] = (await client.get("/v1/customers/me/addresses", headers=household.headers)).json()["data"]
    assert address["city"] == "shanghai"
    one = (await client.get(f"/v1/customers/me/addresses/{address['id']}", headers=household.headers)).json()
    assert one["city"] == "shanghai"
    created = await client.post("/v1/customers/me/addresses", headers=household.headers, json={
        "label": "父母家", "line": "西湖区 1 号", "location": {"type": "Point", "coordinates": list(CITIES["demo"].center)}})
    assert created.json()["city"] == "hangzhou"
    hotlines = (await client.get(f"/v1/safety/gas-leak?city={address['city']}")).json()["hotlines"]
    assert hotlines[0] == {"city": "shanghai", "number": "021-962777"}
