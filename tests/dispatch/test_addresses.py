"""Structured Chinese addresses: saved from their parts with the line composed, refused with a 422
naming the part at fault; what a technician sees of a job's address (district and street on an
offer, everything once the job is his, nothing otherwise); the call relay that shows no number;
navigation links and the WGS-84 -> GCJ-02 shift they rely on."""

import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import addresses, contact
from dispatch import service as dispatch
from matching.models import Offer
from tests.factories import make_customer, make_technician

PIN = {"type": "Point", "coordinates": [120.1074, 30.2736]}
PARTS = {"province": "浙江省", "city": "杭州市", "district": "西湖区", "street": "文三路 90 号",
         "community": "翠苑一区", "building": "3", "unit": "2", "room": "501"}
OPS = dispatch.Actor("admin", "test")


def problem(response, slug: str) -> dict:  # noqa: ANN001
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{slug}"
    return body


async def test_a_structured_address_is_saved_with_its_line_composed(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    created = await client.post("/v1/customers/me/addresses", headers=c.headers,
                                json={"label": "家", "structured": PARTS, "location": PIN})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["line"] == "浙江省杭州市西湖区 文三路 90 号 翠苑一区 3幢 2单元 501室"
    assert body["structured"] == PARTS
    assert body["location"] == PIN
    again = (await client.get(f"/v1/customers/me/addresses/{body['id']}", headers=c.headers)).json()
    assert again["structured"] == PARTS


async def test_counters_the_customer_typed_are_not_doubled() -> None:
    parts = {**PARTS, "community": None, "building": "5号楼", "unit": "1单元", "room": "302室"}
    assert addresses.compose_line(parts) == "浙江省杭州市西湖区 文三路 90 号 5号楼 1单元 302室"


async def test_a_house_on_the_street_needs_no_building_unit_or_room(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    parts = {"province": "浙江省", "city": "杭州市", "district": "西湖区", "street": "龙井路 12 号"}
    created = await client.post("/v1/customers/me/addresses", headers=c.headers,
                                json={"label": "老宅", "structured": parts, "location": PIN})
    assert created.status_code == 201, created.text
    assert created.json()["line"] == "浙江省杭州市西湖区 龙井路 12 号"


@pytest.mark.parametrize("part", ["province", "city", "district", "street"])
async def test_a_missing_required_part_is_422_naming_it(client: AsyncClient, session: AsyncSession, part: str) -> None:
    c = await make_customer(session)
    parts = {k: v for k, v in PARTS.items() if k != part}
    body = problem(await client.post("/v1/customers/me/addresses", headers=c.headers,
                                     json={"label": "家", "structured": parts, "location": PIN}), "validation-error")
    assert [e["loc"] for e in body["errors"]] == [["body", "structured", part]]


@pytest.mark.parametrize("part,value", [("room", "<b>501</b>"), ("street", "文三路\n90"), ("building", "1" * 21),
                                        ("community", " ")])
async def test_markup_control_characters_or_oversize_in_a_part_are_422_naming_it(
        client: AsyncClient, session: AsyncSession, part: str, value: str) -> None:
    c = await make_customer(session)
    body = problem(await client.post("/v1/customers/me/addresses", headers=c.headers, json={
        "label": "家", "structured": {**PARTS, part: value}, "location": PIN}), "validation-error")
    assert body["errors"][0]["loc"] == ["body", "structured", part]


async def test_a_unit_without_its_building_is_refused_naming_the_building(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    body = problem(await client.post("/v1/customers/me/addresses", headers=c.headers, json={
        "label": "家", "structured": {**PARTS, "building": None}, "location": PIN}), "address-invalid")
    assert body["field"] == "building"


@pytest.mark.parametrize("payload,field", [
    ({"label": "家", "location": PIN}, "structured"),
    ({"label": "家", "line": "幸福里 1 号", "structured": PARTS, "location": PIN}, "line"),
    ({"label": "家", "structured": {**PARTS, "street": "路" * 100, "community": "区" * 60, "building": "楼" * 20}, "location": PIN}, "street"),
])
async def test_neither_parts_nor_line_both_or_a_line_too_long_is_refused(
        client: AsyncClient, session: AsyncSession, payload: dict, field: str) -> None:
    c = await make_customer(session)
    body = problem(await client.post("/v1/customers/me/addresses", headers=c.headers, json=payload), "address-invalid")
    assert body["field"] == field


async def test_a_pin_off_the_earth_is_422_naming_the_location(client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    body = problem(await client.post("/v1/customers/me/addresses", headers=c.headers, json={
        "label": "家", "structured": PARTS, "location": {"type": "Point", "coordinates": [120.1, 95.0]}}), "validation-error")
    assert body["errors"][0]["loc"][:3] == ["body", "location", "coordinates"]


async def test_editing_the_parts_recomposes_the_line_and_a_line_alone_clears_them(
        client: AsyncClient, session: AsyncSession) -> None:
    c = await make_customer(session)
    path = f"/v1/customers/me/addresses/{c.address.id}"
    moved = await client.patch(path, headers=c.headers, json={"structured": {**PARTS, "room": "502"}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["line"].endswith("2单元 502室") and moved.json()["structured"]["room"] == "502"
    plain = (await client.patch(path, headers=c.headers, json={"line": "幸福里 2 号"})).json()
    assert plain["line"] == "幸福里 2 号" and plain["structured"] is None


# -- the technician's view -------------------------------------------------------------------------

async def _order(session: AsyncSession, *then: str):  # noqa: ANN202
    """A repair at a structured address, moved through `then` by operations: (customer, technician, order)."""
    customer = await make_customer(session, *PIN["coordinates"])
    for name, value in PARTS.items():
        setattr(customer.address, name, value)
    customer.address.line = addresses.compose_line(PARTS)
    session.add(customer.address)
    technician = await make_technician(session)
    order = await dispatch.create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                        kind="repair", actor=dispatch.Actor("customer", str(customer.account.id)))
    for action in then:
        values = {"technician_id": technician.technician.id} if action == "accept" else None
        await dispatch.transition(session, order.id, action, OPS, set_values=values)
    return customer, technician, order


async def test_an_offer_shows_district_and_street_only(client: AsyncClient, session: AsyncSession) -> None:
    _, technician, order = await _order(session, "start_matching", "offer")
    path = f"/v1/jobs/{order.id}/address"
    assert (await client.get(path, headers=technician.headers)).status_code == 404  # nothing offered to him yet
    session.add(Offer(order_id=order.id, technician_id=technician.technician.id, city_id=order.city_id, policy="direct",
                      attempt=1, distance_m=800, eta_s=300, expires_at=datetime.now(timezone.utc) + timedelta(seconds=30)))
    await session.flush()
    response = await client.get(path, headers=technician.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"full": False, "district": "西湖区", "street": "文三路 90 号", "line": None,
                               "structured": None, "customer_name": None, "location": None, "navigation": None}


async def test_his_accepted_job_shows_the_whole_address_name_and_navigation(client: AsyncClient, session: AsyncSession) -> None:
    customer, technician, order = await _order(session, "start_matching", "offer", "accept")
    body = (await client.get(f"/v1/jobs/{order.id}/address", headers=technician.headers)).json()
    assert body["full"] is True
    assert body["line"] == "浙江省杭州市西湖区 文三路 90 号 翠苑一区 3幢 2单元 501室"
    assert body["structured"] == PARTS and body["customer_name"] == "李雷"
    assert body["location"] == PIN
    assert set(body["navigation"]) == {"amap", "baidu", "apple", "google"}
    assert customer.customer.phone.replace(" ", "") not in str(body).replace(" ", "")  # never the number


async def test_the_address_is_withdrawn_when_the_job_ends(client: AsyncClient, session: AsyncSession) -> None:
    _, technician, order = await _order(session, "start_matching", "offer", "accept")
    await dispatch.transition(session, order.id, "cancel", OPS, reason="customer_request")
    assert (await client.get(f"/v1/jobs/{order.id}/address", headers=technician.headers)).status_code == 404


async def test_another_technician_and_other_roles_see_nothing(client: AsyncClient, session: AsyncSession) -> None:
    customer, _, order = await _order(session, "start_matching", "offer", "accept")
    stranger = await make_technician(session)
    path = f"/v1/jobs/{order.id}/address"
    assert (await client.get(path, headers=stranger.headers)).status_code == 404
    assert (await client.get(path, headers=customer.headers)).status_code == 403
    assert (await client.post(f"/v1/jobs/{order.id}/contact", headers=stranger.headers)).status_code == 404
    assert (await client.get(f"/v1/jobs/{uuid.uuid4()}/address", headers=stranger.headers)).status_code == 404


# -- the call relay ------------------------------------------------------------------------------

class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[contact.CallRequest] = []

    async def connect(self, call: contact.CallRequest) -> None:
        self.calls.append(call)


@pytest.fixture
def recorder():  # noqa: ANN201
    before = contact.relay()
    recording = Recorder()
    contact.use_relay(recording)
    yield recording
    contact.use_relay(before)


async def test_contact_goes_through_the_relay_and_reveals_no_number(
        client: AsyncClient, session: AsyncSession, recorder: Recorder) -> None:
    customer, technician, order = await _order(session, "start_matching", "offer", "accept")
    response = await client.post(f"/v1/jobs/{order.id}/contact", headers=technician.headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "requested", "relay": "recorder"}
    [call] = recorder.calls
    assert (call.order_id, call.caller_phone, call.callee_phone) == (
        order.id, technician.technician.phone, customer.customer.phone)


async def test_contact_is_refused_before_acceptance_and_after_the_job(
        client: AsyncClient, session: AsyncSession, recorder: Recorder) -> None:
    _, technician, order = await _order(session, "start_matching", "offer")
    assert (await client.post(f"/v1/jobs/{order.id}/contact", headers=technician.headers)).status_code == 404
    assert recorder.calls == []


async def test_contact_is_rate_limited_per_job(client: AsyncClient, session: AsyncSession, recorder: Recorder) -> None:
    _, technician, order = await _order(session, "start_matching", "offer", "accept")
    answers = [(await client.post(f"/v1/jobs/{order.id}/contact", headers=technician.headers)).status_code
               for _ in range(4)]
    assert answers == [202, 202, 202, 429]
    assert len(recorder.calls) == 3


async def test_a_relay_that_fails_answers_503_to_retry_not_500(client: AsyncClient, session: AsyncSession) -> None:
    class Down:
        name = "down"

        async def connect(self, call: contact.CallRequest) -> None:
            raise ConnectionError("the telephony provider refused the connection")

    before = contact.relay()
    contact.use_relay(Down())
    try:
        _, technician, order = await _order(session, "start_matching", "offer", "accept")
        response = await client.post(f"/v1/jobs/{order.id}/contact", headers=technician.headers)
    finally:
        contact.use_relay(before)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["type"], body["service"]) == ("/problems/service-unavailable", "contact-relay")


async def test_the_default_relay_logs_the_request_with_numbers_masked(caplog: pytest.LogCaptureFixture) -> None:
    call = contact.CallRequest(order_id=uuid.uuid4(), caller_role="technician", caller_phone="+86 13800001234",
                               callee_role="customer", callee_phone="+86 13900005678")
    await contact.LoggingRelay().connect(call)
    out = caplog.text
    assert "contact.call_requested" in out and str(call.order_id) in out
    assert "*********5678" in out and "13900005678" not in out and "13800001234" not in out


# -- navigation ----------------------------------------------------------------------------------

def test_wgs84_to_gcj02_matches_the_published_shift() -> None:
    # Beijing, Tiananmen: the reference pair used by the open implementations (eviltransform).
    lon, lat = addresses.wgs84_to_gcj02(116.391305, 39.907333)
    assert abs(lon - 116.397552) < 2e-5 and abs(lat - 39.908735) < 2e-5
    assert addresses.wgs84_to_gcj02(2.2945, 48.8584) == (2.2945, 48.8584)  # outside China: unchanged


def test_navigation_links_carry_the_point_and_its_datum() -> None:
    links = addresses.navigation_links(120.1074, 30.2736, "文三路 90 号")
    amap = parse_qs(urlsplit(links["amap"]).query)
    assert urlsplit(links["amap"]).netloc == "uri.amap.com"
    assert amap["to"] == ["120.107400,30.273600,文三路 90 号"] and amap["coordinate"] == ["wgs84"]
    baidu = parse_qs(urlsplit(links["baidu"]).query)
    assert baidu["location"] == ["30.273600,120.107400"] and baidu["coord_type"] == ["wgs84"]
    apple = parse_qs(urlsplit(links["apple"]).query)
    assert apple["daddr"] == ["30.273600,120.107400"] and apple["q"] == ["文三路 90 号"]
    g_lon, g_lat = addresses.wgs84_to_gcj02(120.1074, 30.2736)
    google = parse_qs(urlsplit(links["google"]).query)
    assert google["destination"] == [f"{g_lat:.6f},{g_lon:.6f}"] and google["api"] == ["1"]
    assert abs(g_lon - 120.1074) > 0.003  # shifted some 500 m: the raw point would miss the door
