"""Names other people see (customers, technicians, stations) refuse markup and control characters
with a 422 problem+json, while real names in any script, with spaces, dots and hyphens, pass."""

import pytest
from httpx import AsyncClient, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import make_staff, make_technician

HOSTILE = [
    '<meta http-equiv="refresh" content="0;url=http://evil.test/">',
    "<img src=x onerror=alert(1)>",
    "Tom & Jerry",
    'say "hi"',
    "line\nbreak",
    "tab\there",
    "bell\x07",
    "right-to-left\u202eoverride",
    "zero\u200bwidth",
]
GOOD = ["张师傅", "Mary-Jane O'Neil", "J. R. Smith", "阿卜杜拉·买买提", "Zoë Ångström"]
RING = [[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1], [120.0, 30.0]]


def assert_name_refused(response: Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/validation-error"
    assert any(error["loc"][-1] == "name" for error in body["errors"]), body


def registration(name: str, n: int) -> dict:
    return {"email": f"person{n}@example.com", "password": "long enough pw", "name": name, "phone": "+86 13912345678"}


def station(name: str) -> dict:
    return {"name": name, "city": "demo", "location": {"type": "Point", "coordinates": [120.05, 30.05]},
            "service_area": {"type": "Polygon", "coordinates": [RING]}}


@pytest.mark.parametrize("role", ["customer", "technician"])
async def test_registration_refuses_markup_and_control_characters_in_the_name(client: AsyncClient, role: str) -> None:
    for n, name in enumerate(HOSTILE):
        assert_name_refused(await client.post(f"/v1/auth/register/{role}", json=registration(name, n)))


async def test_technician_cannot_rename_himself_to_markup(client: AsyncClient, session: AsyncSession) -> None:
    tech = await make_technician(session)
    for name in HOSTILE:
        assert_name_refused(await client.patch("/v1/technicians/me", headers=tech.headers, json={"name": name}))
    me = await client.get("/v1/technicians/me", headers=tech.headers)
    assert me.json()["name"] == "韩梅梅"


async def test_station_names_refuse_markup_on_create_and_update(client: AsyncClient, session: AsyncSession) -> None:
    _, admin = await make_staff(session, "admin")
    for name in HOSTILE:
        assert_name_refused(await client.post("/v1/stations", headers=admin, json=station(name)))
    created = await client.post("/v1/stations", headers=admin, json=station("西湖区（北山）No. 3 服务站"))
    assert created.status_code == 201, created.text
    for name in HOSTILE:
        assert_name_refused(await client.patch(f"/v1/stations/{created.json()['id']}", headers=admin, json={"name": name}))


async def test_names_in_any_script_with_spaces_dots_and_hyphens_are_accepted(
    client: AsyncClient, session: AsyncSession,
) -> None:
    for n, name in enumerate(GOOD):
        response = await client.post("/v1/auth/register/technician", json=registration(f"  {name} ", n))
        assert response.status_code == 201, (name, response.text)
    tech = await make_technician(session)
    renamed = await client.patch("/v1/technicians/me", headers=tech.headers, json={"name": "张 师傅"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "张 师傅"
