"""An offer wakes the technician (issue #16 item 1), in a real browser at 360 px in Chinese: the
offer rings (oscillator beeps) and vibrates, and while notifications are not granted an "alerts
off" banner says so and asks for them. The browser's sound, vibration and notification
permission are recorded by an init script, since a headless browser has no speaker, motor or
permission prompt. A push delivered to the service worker (through Chromium's DevTools) shows
the offer as a notification worded on the phone."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.support import CENTER, PHONE, shot, sign_in, demo_station
from tests.e2e.test_order_flow import FAST
from tests.factories import make_customer, make_technician

# Records what the page asks of the device; Notification.requestPermission is refused, as a
# technician tapping "block" would.
DEVICE = """
(() => {
  const log = { vibrate: [], tones: 0, asked: 0 };
  window.__device = log;
  navigator.vibrate = (pattern) => { log.vibrate.push(pattern); return true; };
  const param = () => ({ value: 0, setValueAtTime() {} });
  const node = (extra) => ({ connect: (next) => next, ...extra });
  window.AudioContext = class {
    constructor() { this.currentTime = 0; this.destination = node(); }
    resume() { return Promise.resolve(); }
    createOscillator() { return node({ frequency: param(), start: () => { log.tones += 1; }, stop() {} }); }
    createGain() { return node({ gain: param() }); }
  };
  let permission = "default";
  window.Notification = class {
    static get permission() { return permission; }
    static async requestPermission() { log.asked += 1; permission = "denied"; return permission; }
  };
})();
"""


async def eventually(probe: Callable[[], Awaitable[Any]], timeout_s: float = 15) -> Any:
    """The probe's first truthy answer, polled (Playwright for Python has no expect.poll)."""
    deadline = time.monotonic() + timeout_s
    while not (answer := await probe()) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert answer, "still nothing"
    return answer


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        await session.commit()
    return {"customer": customer, "technician": technician}


async def test_an_offer_rings_and_vibrates_and_the_page_warns_while_alerts_are_off(
    api_worker, people, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker(**FAST)
    lon = CENTER[0] + 0.0002
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await context.add_init_script(DEVICE)
    await context.grant_permissions(["geolocation"], origin=base)
    await context.set_geolocation({"longitude": lon, "latitude": CENTER[1], "accuracy": 8})
    phone = await context.new_page()
    await sign_in(phone, base, "technician", people["technician"].account.email)

    banner = phone.locator("#alerts")
    await expect(banner).to_be_visible()
    await expect(banner.locator("#alerts-text")).to_contain_text("锁屏或关闭本页时，您将收不到新派单")
    await expect(phone.locator("#connection")).to_have_text("已连接")
    await phone.click("#toggle-online")
    await expect(phone.locator("#tech-status")).to_have_text("在线")
    await expect(phone.locator("#gps")).to_have_attribute("data-sent", f"{CENTER[1]:.5f},{lon:.5f}")

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        placed = await http.post("/v1/orders", headers=people["customer"].headers, json={
            "kind": "repair", "address_id": str(people["customer"].address.id), "description": "灶具打不着火"})
        assert placed.status_code == 201, placed.text
    await expect(phone.locator(".offer")).to_be_visible()
    device = await phone.evaluate("window.__device")
    assert device["vibrate"] == [[300, 100, 300]]
    assert device["tones"] == 2  # two beeps for a routine offer
    await shot(phone, artifacts, "technician-offer-alerts-off")

    # He is asked for notifications and blocks them: the banner says how to allow them instead.
    await banner.locator("#alerts-enable").click()
    await expect(banner.locator("#alerts-text")).to_contain_text("通知已被拒绝")
    await expect(banner.locator("#alerts-enable")).to_have_count(0)
    assert (await phone.evaluate("window.__device.asked")) == 1
    assert offline.blocked == []


async def test_the_service_worker_shows_a_pushed_emergency_offer_in_his_language(
    api_worker, people, new_context,  # noqa: ANN001
) -> None:
    base = api_worker()
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await context.grant_permissions(["notifications"], origin=base)
    phone = await context.new_page()
    await sign_in(phone, base, "technician", people["technician"].account.email)
    await expect(phone.locator("#alerts")).to_be_hidden()  # granted: no warning
    assert await phone.evaluate("navigator.serviceWorker.ready.then((r) => Boolean(r.active))")

    # A push as the push service delivers it (already decrypted), through Chromium's DevTools.
    devtools = await context.new_cdp_session(phone)
    registrations: list[dict] = []
    devtools.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"]))
    await devtools.send("ServiceWorker.enable")
    await eventually(lambda: asyncio.sleep(0, registrations))
    offer = {"type": "offer", "order_id": "0b8e5a52-8f7e-4a55-9d7c-1c1e6a3f2d10",
             "offer_id": "5f0c7a9e-2a51-4a3f-8a0e-3c1d2b4e6f70", "kind": "emergency_leak",
             "priority": "emergency", "expires_at": "2026-12-01T06:00:15+00:00"}
    await devtools.send("ServiceWorker.deliverPushMessage", {
        "origin": base, "registrationId": registrations[0]["registrationId"], "data": json.dumps(offer)})
    shown = """navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((all) => all.map((n) => ({
        title: n.title, body: n.body, tag: n.tag, requireInteraction: n.requireInteraction, data: n.data})))"""
    [notification] = await eventually(lambda: phone.evaluate(shown))
    assert notification["title"] == "紧急抢险派单"
    assert notification["body"].startswith("燃气泄漏抢险，请在 ") and notification["body"].endswith(" 前接单")
    assert notification["tag"] == f"offer:{offer['order_id']}"
    assert notification["requireInteraction"] is True
    assert notification["data"] == {"order_id": offer["order_id"], "offer_id": offer["offer_id"]}

    # He reads English: the next push is worded in English (the page tells the worker his choice).
    await phone.select_option("#lang-select", "en")
    await eventually(lambda: phone.evaluate(
        "caches.open('gasdispatch-prefs').then((c) => c.match('lang')).then((r) => r?.text()).then((l) => l === 'en')"))
    routine = {**offer, "order_id": "7d3b1f0e-6c2a-4e8b-9f1d-2a4c6e8b0d12", "kind": "repair", "priority": "routine"}
    await devtools.send("ServiceWorker.deliverPushMessage", {
        "origin": base, "registrationId": registrations[0]["registrationId"], "data": json.dumps(routine)})
    both = await eventually(lambda: phone.evaluate(f"({shown}).then((all) => all.length === 2 && all)"))
    [english] = [n for n in both if n["tag"] == f"offer:{routine['order_id']}"]
    assert english["title"] == "New job offer" and english["requireInteraction"] is False
    assert english["body"].startswith("Gas repair: accept before ")
