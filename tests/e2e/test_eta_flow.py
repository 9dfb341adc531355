"""Arrival times on two 360 px phones, in zh-CN then English: the customer sees the range the
moment the technician accepts (before he sets out), and so does the technician on his job card;
as his phone reports positions closer to the door, the server recomputes the range and pushes it
on the order's socket and to his phone, and both pages show the pushed range without a reload;
at check-in it goes, and the trip (departure position -> check-in) is recorded for the learned
model. The screenshots land in test-artifacts/e2e/ and docs/screenshots/."""

import asyncio
import json
import re
import shutil
import uuid

import pytest
from playwright.async_api import expect

from matching import eta
from matching.models import TripTime
from tests.e2e.support import CENTER, PHONE, ROOT, demo_station, shot, sign_in
from tests.factories import make_customer, make_technician

SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE_OPTIONS = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "timezone_id": "Asia/Shanghai"}
FAST = {
    "GASDISPATCH_EMBEDDED_WORKER": "true",
    "GASDISPATCH_BATCH_WINDOW_S": "0.3",
    "GASDISPATCH_FIELD_ARRIVAL_RADIUS_M": "60",
    "GASDISPATCH_MAX_SPEED_KMH": "100000",  # the emulated phone jumps kilometres at once
}
KM_LON = 1 / (111.32 * 0.8645)  # degrees of longitude per km at this latitude
ZH_RANGE = re.compile(r"^预计 \d{1,2}:\d{2}–\d{1,2}:\d{2} 到达$")
EN_RANGE = re.compile(r"^Arrives between \d{1,2}:\d{2}\s[AP]M and \d{1,2}:\d{2}\s[AP]M$")
# The page's own clock format (the document's language, its time zone) for a pushed range.
FORMAT = """(eta) => { const f = new Intl.DateTimeFormat(document.documentElement.lang, { timeStyle: "short" });
  return [f.format(new Date(eta.earliest)), f.format(new Date(eta.latest))]; }"""


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        await session.commit()
    return {"customer": customer.account.email, "technician": technician.account.email}


def east(km: float) -> dict:
    return {"longitude": CENTER[0] + km * KM_LON, "latitude": CENTER[1], "accuracy": 8}


def listen_for_eta(page, pushed: list[dict]) -> None:  # noqa: ANN001
    """Records the `eta` messages the page's sockets receive."""
    def on_socket(socket) -> None:  # noqa: ANN001
        def on_frame(payload: str | bytes) -> None:
            message = json.loads(payload)
            if message.get("type") == "eta":
                pushed.append(message)
        socket.on("framereceived", on_frame)
    page.on("websocket", on_socket)


async def shows(page, line, pushed: dict) -> None:  # noqa: ANN001
    """The line reads the pushed range, in the page's language and time zone."""
    earliest, latest = await page.evaluate(FORMAT, pushed["eta"])
    await expect(line).to_contain_text(earliest)
    await expect(line).to_contain_text(latest)


async def screenshot(page, artifacts, name: str) -> None:  # noqa: ANN001
    """After the passing notices (toasts) are gone, so they hide nothing."""
    await expect(page.locator(".toast")).to_have_count(0)
    await shot(page, artifacts, name)


async def next_push(pushed: list[dict], after: int) -> dict:
    for _ in range(100):
        if len(pushed) > after:
            return pushed[-1]
        await asyncio.sleep(0.1)
    raise AssertionError("no eta pushed after the fix")


async def unthrottled(redis, order_id: str) -> None:  # noqa: ANN001
    """Waits out the server's REFRESH_EVERY_S: a fix within it does not recompute the range."""
    for _ in range(int(eta.REFRESH_EVERY_S * 10) + 20):
        if not await redis.exists(eta.refresh_key(order_id)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the ETA refresh throttle did not lapse")


async def test_arrival_range_shown_from_acceptance_and_updated_from_live_positions(
    api_worker, people, committed_sessions, redis, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker(**FAST)
    phone = await new_context(**PHONE_OPTIONS)
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation(east(4))
    tech = await phone.new_page()
    tech_pushed: list[dict] = []
    listen_for_eta(tech, tech_pushed)
    await sign_in(tech, base, "technician", people["technician"])
    await tech.click("#toggle-online")
    await expect(tech.locator("#tech-status")).to_have_text("在线")

    customer = await (await new_context(**PHONE_OPTIONS)).new_page()
    customer_pushed: list[dict] = []
    listen_for_eta(customer, customer_pushed)
    await sign_in(customer, base, "customer", people["customer"])
    await customer.select_option("#order-kind", "repair")
    await customer.click("#place-order")
    await expect(customer.locator("#order-status-pill")).to_be_visible()
    order_id = customer.url.rsplit("/", 1)[1]
    arrival = customer.locator("#order-eta")
    await expect(arrival).to_have_text("")  # nobody has accepted: no arrival time to give

    # Accepted, still 4 km away and not yet set out: both see a range of some 10-19 minutes.
    await tech.locator("[id^=accept-]").click()
    await expect(customer.locator("#order-status-pill")).to_have_text("已接单")
    await expect(arrival).to_have_text(ZH_RANGE)
    job_eta = tech.locator(f"[data-order='{order_id}'] .job-eta")
    await expect(job_eta).to_have_text(ZH_RANGE)
    at_acceptance = await arrival.inner_text()
    await screenshot(customer, artifacts, "eta-01-customer-accepted")

    # On his way, 2 km from the door: the server pushes the new range to both phones.
    await tech.click("#job-depart")
    await expect(customer.locator("#order-status-pill")).to_have_text("上门途中")
    await unthrottled(redis, order_id)  # a fix resent on a socket reconnect may have just refreshed it
    pushes = len(customer_pushed)
    await phone.set_geolocation(east(2))
    nearer = await next_push(customer_pushed, pushes)
    assert nearer["order_id"] == order_id and nearer["eta"]["model"] == "distance"
    await shows(customer, arrival, nearer)
    await expect(arrival).not_to_have_text(at_acceptance)
    mine = await next_push(tech_pushed, 0)
    assert mine["eta"] == nearer["eta"]
    await shows(tech, job_eta, mine)
    await screenshot(customer, artifacts, "eta-02-customer-en-route")
    await screenshot(tech, artifacts, "eta-03-technician-en-route")

    # In English, both pages keep the latest range (the technician's was pushed, not loaded).
    await customer.select_option("#lang-select", "en")
    await tech.select_option("#lang-select", "en")
    await expect(arrival).to_have_text(EN_RANGE)
    await expect(job_eta).to_have_text(EN_RANGE)
    await shows(tech, job_eta, mine)

    # 400 m away: pushed again, shown in English on both.
    await unthrottled(redis, order_id)
    pushes, tech_pushes = len(customer_pushed), len(tech_pushed)
    await phone.set_geolocation(east(0.4))
    close = await next_push(customer_pushed, pushes)
    assert close["eta"]["latest"] < nearer["eta"]["latest"]
    await shows(customer, arrival, close)
    await shows(tech, job_eta, await next_push(tech_pushed, tech_pushes))
    await screenshot(customer, artifacts, "eta-04-customer-english")
    await screenshot(tech, artifacts, "eta-05-technician-english")

    # At the door and checked in: no arrival time any more, and the trip is on record.
    await phone.set_geolocation(east(0.02))
    await tech.fill("#door-code-input", (await customer.inner_text("#door-code")).strip())
    await tech.click("#verify-code")
    await expect(tech.locator("#verify-ok")).to_be_visible()
    await tech.click("#job-arrive")
    await expect(customer.locator("#order-status-pill")).to_have_text("Arrived")
    await expect(arrival).to_have_text("")
    await expect(tech.locator(f"[data-order='{order_id}'] .job-eta")).to_have_text("")
    async with committed_sessions() as session:
        for _ in range(100):  # recorded by the embedded worker once the events are delivered
            trip = await session.get(TripTime, uuid.UUID(order_id), populate_existing=True)
            if trip is not None and trip.duration_s is not None:
                break
            await session.rollback()
            await asyncio.sleep(0.2)
    assert trip is not None and trip.duration_s is not None, "the trip was not recorded"
    assert abs(trip.distance_m - 4000) < 100  # from where he was when he set out
    assert trip.kind == "repair"

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, source in (("customer-eta", "eta-02-customer-en-route"), ("technician-eta", "eta-03-technician-en-route"),
                         ("customer-eta-en", "eta-04-customer-english"),
                         ("technician-eta-en", "eta-05-technician-english")):
        shutil.copyfile(artifacts / f"{source}.png", SCREENSHOTS / f"{name}.png")
