"""Bad input gets a 4xx problem+json naming the field; never a 500."""

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import make_customer, make_staff


def assert_problem(response, status: int) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"].startswith("/problems/") and body["title"]
    return body


async def test_malformed_json_is_422(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    response = await client.post("/v1/orders", headers={**c.headers, "content-type": "application/json"},
                                 content=b'{"kind": "repair", ')
    assert_problem(response, 422)


@pytest.mark.parametrize("coordinates,field", [
    ([181.0, 30.0], "longitude"), ([-180.5, 30.0], "longitude"), ([120.0, 91.0], "latitude"), ([120.0, -90.1], "latitude"),
])
async def test_out_of_range_coordinates_are_422(client: AsyncClient, session: AsyncSession, coordinates: list, field: str) -> None:
    c = await make_customer(session)
    response = await client.post("/v1/customers/me/addresses", headers=c.headers, json={
        "label": "家", "line": "somewhere", "location": {"type": "Point", "coordinates": coordinates}})
    body = assert_problem(response, 422)
    assert any(field in e["msg"] and "location" in e["loc"] for e in body["errors"])


async def test_unknown_enum_value_is_422_naming_the_field(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    response = await client.post("/v1/orders", headers=c.headers, json={
        "kind": "repair", "address_id": str(c.address.id), "priority": "whenever"})
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"][-1] == "priority"


async def test_oversized_strings_are_422(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    response = await client.post("/v1/orders", headers=c.headers, json={
        "kind": "repair", "address_id": str(c.address.id), "description": "漏" * 2001})
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"][-1] == "description"


async def test_unknown_fields_and_wrong_types_are_422(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    assert_problem(await client.post("/v1/orders", headers=c.headers, json={
        "kind": "repair", "address_id": str(c.address.id), "price": 1}), 422)
    assert_problem(await client.post("/v1/orders", headers=c.headers, json={"kind": 5, "address_id": "not-a-uuid"}), 422)
    assert_problem(await client.post("/v1/orders", headers=c.headers, json=[1, 2, 3]), 422)


async def test_huge_body_is_413(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    response = await client.post("/v1/orders", headers={**c.headers, "content-type": "application/json"},
                                 content=b"[" + b"1," * 600_000 + b"1]")
    assert_problem(response, 413)


async def test_bad_path_ids_and_query_values_are_4xx(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    assert_problem(await client.get("/v1/orders/not-a-uuid", headers=c.headers), 422)
    assert_problem(await client.get("/v1/orders", headers=c.headers, params={"limit": 0}), 422)
    assert_problem(await client.get("/v1/orders", headers=c.headers, params={"status": "bogus"}), 422)
    assert_problem(await client.get("/v1/nothing-here"), 404)


async def test_invalid_station_polygon_is_422(client: AsyncClient, session: AsyncSession) -> None:
    _, admin = await make_staff(session, "admin")
    bowtie = [[120.0, 30.0], [120.1, 30.1], [120.1, 30.0], [120.0, 30.1], [120.0, 30.0]]
    response = await client.post("/v1/stations", headers=admin, json={
        "name": "站", "city": "demo", "location": {"type": "Point", "coordinates": [120.05, 30.05]},
        "service_area": {"type": "Polygon", "coordinates": [bowtie]}})
    assert_problem(response, 422)


async def test_station_geojson_round_trips(client: AsyncClient, session: AsyncSession) -> None:
    _, admin = await make_staff(session, "admin")
    ring = [[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1], [120.0, 30.0]]
    created = await client.post("/v1/stations", headers=admin, json={
        "name": "西湖站", "city": "demo", "location": {"type": "Point", "coordinates": [120.05, 30.05]},
        "service_area": {"type": "Polygon", "coordinates": [ring]}})
    assert created.status_code == 201, created.text
    assert created.json()["service_area"] == {"type": "Polygon", "coordinates": [ring]}
    assert created.json()["location"] == {"type": "Point", "coordinates": [120.05, 30.05]}
