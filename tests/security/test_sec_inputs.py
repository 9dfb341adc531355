"""Issue #13, item 9: bad input is a 4xx problem+json, never a 500. List routes and JSON bodies
come from the app's OpenAPI document, so a new route is covered without touching this file."""

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from app.asgi import create_app
from kit.config import get_settings
from dispatch.models import ServiceKind
from tests.factories import make_customer, make_staff, make_technician
from tests.field.support import make_station
from tests.meters.meters_factories import make_device


def _spec() -> dict:
    return create_app().openapi()


def list_routes() -> list[str]:
    """Every GET taking a pagination cursor."""
    return sorted(path for path, ops in _spec()["paths"].items()
                  if any(p["name"] == "cursor" for p in ops.get("get", {}).get("parameters", [])))


def json_body_routes() -> list[tuple[str, str]]:
    return sorted((method.upper(), path) for path, ops in _spec()["paths"].items() for method, op in ops.items()
                  if "application/json" in op.get("requestBody", {}).get("content", {}))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(value: object) -> str:
    return _b64(json.dumps(value).encode())


WHEN = "2026-01-01T00:00:00+00:00"
TAMPERED_CURSORS = {
    "integer id": _cursor([WHEN, 5]),
    "an id of letters": _cursor([WHEN, "abc"]),
    "id beyond bigint": _cursor([WHEN, "9" * 40]),
    "list id": _cursor([WHEN, [1]]),
    "time without zone": _cursor(["2026-01-01T00:00:00", str(uuid.uuid4())]),
    "time before year 1 in UTC": _cursor(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
    "three items": _cursor([WHEN, str(uuid.uuid4()), 3]),
    "an object": _cursor({"created_at": WHEN, "id": str(uuid.uuid4())}),
    "not base64": "!!!",
    "not utf-8": _b64(b"\xff\xfe\x00"),
}


@dataclass
class People:
    ids: dict[str, str]  # path parameter -> an existing row, so list routes under a parent are reached
    headers: dict[str, dict[str, str]]

    @property
    def address_id(self) -> str:
        return self.ids["address_id"]


@pytest.fixture
async def people(session: AsyncSession) -> People:
    customer = await make_customer(session)
    technician = await make_technician(session)
    device, _ = await make_device(session, customer=customer)
    station = await make_station(session)
    _, auditor = await make_staff(session, "auditor")
    _, admin = await make_staff(session, "admin")
    ids = {"customer_id": str(customer.customer.id), "address_id": str(customer.address.id), "device_id": str(device.id),
           "station_id": str(station.id), "code": "repair"}
    return People(ids, {"customer": customer.headers, "technician": technician.headers, "auditor": auditor, "admin": admin})


def _concrete(path: str, people: People) -> str:
    return re.sub(r"\{([a-z_]+)\}", lambda m: people.ids.get(m.group(1), str(uuid.uuid4())), path)


def assert_problem(response, status: int, slug: str | None = None) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    if slug is not None:
        assert body["type"] == f"/problems/{slug}", body
    return body


@pytest.mark.parametrize("path", list_routes())
async def test_a_tampered_cursor_on_any_list_route_is_rejected_as_invalid(
    client: AsyncClient, people: People, path: str,
) -> None:
    for name, cursor in TAMPERED_CURSORS.items():
        answers = [await client.get(_concrete(path, people), headers=headers, params={"cursor": cursor})
                   for headers in people.headers.values()]
        for response in answers:
            assert response.status_code < 500, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json", (name, response.text)
        # Some role may read the list: that role is told the cursor is invalid.
        assert any(a.status_code == 422 for a in answers), \
            (name, [(a.status_code, a.text) for a in answers])


async def test_a_cursor_the_server_issued_still_pages(client: AsyncClient, session: AsyncSession, people: People) -> None:
    for label in ("一", "二"):
        assert (await client.post("/v1/customers/me/addresses", headers=people.headers["customer"], json={
            "label": label, "line": "x", "location": {"type": "Point", "coordinates": [120.1, 30.2]}})).status_code == 201
    first = (await client.get("/v1/customers/me/addresses", headers=people.headers["customer"], params={"limit": 2})).json()
    rest = (await client.get("/v1/customers/me/addresses", headers=people.headers["customer"],
                             params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert len(first["data"]) == 2 and len(rest["data"]) == 1 and rest["next_cursor"] is None
    assert {a["id"] for a in first["data"]}.isdisjoint({a["id"] for a in rest["data"]})


@pytest.mark.parametrize("method,path", json_body_routes())
async def test_a_nul_character_in_any_json_body_is_rejected(client: AsyncClient, people: People, method: str, path: str) -> None:
    body = '{"label": "a\\u0000b", "reason": "x"}'.encode()
    response = await client.request(method, _concrete(path, people), headers={
        **people.headers["admin"], "content-type": "application/json"}, content=body)
    assert_problem(response, 422, "nul-character")


async def test_a_nul_character_is_refused_before_it_reaches_postgresql(client: AsyncClient, people: People) -> None:
    response = await client.post("/v1/customers/me/addresses", headers=people.headers["customer"], json={
        "label": "家\u0000", "line": "x", "location": {"type": "Point", "coordinates": [120.1, 30.2]}})
    assert_problem(response, 422, "nul-character")


async def test_a_nul_escape_split_across_body_chunks_is_still_found(client: AsyncClient, people: People) -> None:
    body = json.dumps({"label": "家\u0000", "line": "x", "location": {"type": "Point", "coordinates": [120.1, 30.2]}}).encode()
    at = body.index(b"\\u0000") + 3

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:at]
        yield body[at:]

    response = await client.post("/v1/customers/me/addresses", content=chunks(),
                                 headers={**people.headers["customer"], "content-type": "application/json"})
    assert_problem(response, 422, "nul-character")


async def test_an_escaped_backslash_before_u0000_is_plain_text(client: AsyncClient, people: People) -> None:
    label = "C:\\u0000"  # a backslash then the letters u0000: no NUL character
    response = await client.post("/v1/customers/me/addresses", headers=people.headers["customer"], json={
        "label": label, "line": "x", "location": {"type": "Point", "coordinates": [120.1, 30.2]}})
    assert response.status_code == 201, response.text
    assert response.json()["label"] == label


@pytest.mark.parametrize("length", [61, 100])
async def test_an_address_label_longer_than_its_column_is_422(client: AsyncClient, people: People, length: int) -> None:
    created = await client.post("/v1/customers/me/addresses", headers=people.headers["customer"], json={
        "label": "楼" * length, "line": "x", "location": {"type": "Point", "coordinates": [120.1, 30.2]}})
    assert_problem(created, 422, "validation-error")
    updated = await client.patch(f"/v1/customers/me/addresses/{people.address_id}", headers=people.headers["customer"],
                                 json={"label": "楼" * length})
    assert_problem(updated, 422, "validation-error")
    assert (await client.patch(f"/v1/customers/me/addresses/{people.address_id}", headers=people.headers["customer"],
                               json={"label": "楼" * 60})).status_code == 200


def patch_fields() -> list[tuple[str, str]]:
    """(path, property) for every property of every PATCH body."""
    spec = _spec()
    out = []
    for path, ops in spec["paths"].items():
        schema = ops.get("patch", {}).get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            continue
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        out += [(path, name) for name in schema.get("properties", {})]
    return sorted(out)


@pytest.mark.parametrize("path,field", patch_fields())
async def test_null_for_any_patch_field_is_never_a_server_error(
    client: AsyncClient, people: People, kind: str, path: str, field: str,
) -> None:
    people.ids["code"] = kind
    for headers in people.headers.values():
        response = await client.patch(_concrete(path, people), headers=headers, json={field: None})
        assert response.status_code < 500, response.text


@pytest.mark.parametrize("field", ["name", "phone"])
async def test_null_name_or_phone_on_the_technician_profile_is_422(client: AsyncClient, people: People, field: str) -> None:
    response = await client.patch("/v1/technicians/me", headers=people.headers["technician"], json={field: None})
    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"][-1] == field


async def test_the_technician_may_still_clear_his_photo(client: AsyncClient, people: People) -> None:
    response = await client.patch("/v1/technicians/me", headers=people.headers["technician"], json={"photo_ref": None})
    assert response.status_code == 200, response.text


@pytest.fixture
async def kind(session: AsyncSession) -> str:
    session.add(ServiceKind(code="boiler_check", name="Boiler check", name_zh="锅炉检查", required_certification="repair",
                            base_price_minor=8000, currency="CNY", typical_duration_min=60))
    await session.flush()
    return "boiler_check"


@pytest.mark.parametrize("change", [
    {"name": None}, {"name_zh": None}, {"base_price": None}, {"typical_duration_min": None}, {"sla_minutes": None},
    {"active": None}, {"base_price": {"amount_minor": -1, "currency": "CNY"}},
    {"base_price": {"amount_minor": 2**31, "currency": "CNY"}}, {"base_price": {"amount_minor": 100, "currency": "cny"}},
    {"sla_minutes": {"urgent": -5}}, {"sla_minutes": {"urgent": 0}},
])
async def test_null_or_negative_catalogue_updates_are_422(client: AsyncClient, people: People, kind: str, change: dict) -> None:
    response = await client.patch(f"/v1/service-kinds/{kind}", headers=people.headers["admin"], json=change)
    assert_problem(response, 422, "validation-error")


async def test_a_negative_sla_on_a_new_service_kind_is_422(client: AsyncClient, people: People) -> None:
    response = await client.post("/v1/service-kinds", headers=people.headers["admin"], json={
        "code": "meter_swap", "name": "Meter swap", "name_zh": "换表", "required_certification": "installation",
        "base_price": {"amount_minor": 5000, "currency": "CNY"}, "typical_duration_min": 30,
        "sla_minutes": {"routine": -1}})
    assert_problem(response, 422, "validation-error")


async def test_a_chunked_body_over_the_limit_is_413(client: AsyncClient, people: People) -> None:
    chunk = b" " * 65_536

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"label": "x", "line": "'
        for _ in range(get_settings().max_body_bytes // len(chunk) + 2):
            yield chunk
        yield b'"}'

    response = await client.post("/v1/customers/me/addresses", content=chunks(),
                                 headers={**people.headers["customer"], "content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")


def string_path_routes() -> list[tuple[str, str]]:
    """(method, path) for every route with a path parameter that is free text rather than a UUID."""
    out = []
    for path, ops in _spec()["paths"].items():
        for method, op in ops.items():
            params = [p for p in op.get("parameters", []) if p["in"] == "path"]
            if any(p["schema"].get("type") == "string" and "format" not in p["schema"] for p in params):
                out.append((method.upper(), path))
    return sorted(out)


@pytest.mark.parametrize("method,path", string_path_routes())
async def test_a_nul_character_in_a_path_parameter_is_never_a_server_error(
    client: AsyncClient, people: People, method: str, path: str,
) -> None:
    url = re.sub(r"\{[a-z_]+\}", "a%00b", path)
    for headers in people.headers.values():
        response = await client.request(method, url, headers=headers, json={})
        assert response.status_code < 500, response.text
