"""A technician page that survives the field (issue #16 item 6), in a real browser at 360 px, in
Chinese and in English: with the network gone he reaches the door, starts, writes his report with a
photo and submits it; the page is reloaded twice meanwhile and comes back from the service worker's
cache with his job, the queued steps and his draft. When the network returns the page reconnects by
itself and sends what waited, in order, with the Idempotency-Keys made offline: the arrival, whose
first answer is made to be lost, is answered from the server's record and nothing is done twice.
Also: a session whose access tokens expire every few seconds goes on through a whole job, and
going online without location access is refused in words."""

import hashlib
import json
import re
import shutil
from collections import Counter

import httpx
import pytest
from playwright.async_api import expect
from sqlmodel import col, select

from dispatch.models import OrderEvent
from tests.e2e.support import CENTER, PHONE, ROOT, demo_station, shot, sign_in
from tests.e2e.test_job_photos_flow import png
from tests.e2e.test_offer_alerts_flow import eventually
from tests.e2e.test_order_flow import FAST
from tests.factories import make_customer, make_staff, make_technician

SCREENSHOTS = ROOT / "docs" / "screenshots"
LANGUAGES = [("zh-CN", ""), ("en", "-en")]
TEXTS = {
    "zh-CN": {"refused": "离线时的操作未被接受（到达）", "offline": "离线", "connected": "已连接", "arrived": "已到达", "in_service": "服务中", "queued": "待发送",
              "pending": "待发送 {n} 项", "report_queued": "报告已保存在本机", "no_location": "无法上线：未获得位置权限",
              "online": "在线", "off": "离线"},
    "en": {"refused": "An action taken offline was not accepted (arrival)", "offline": "Offline", "connected": "Connected", "arrived": "Arrived", "in_service": "In service",
           "queued": "Not sent yet", "pending": "{n} waiting to be sent", "report_queued": "Report saved on this phone",
           "no_location": "You cannot go online without location access", "online": "Online", "off": "Offline"},
}
AT = (CENTER[0] + 0.0002, CENTER[1])  # about 20 m from the customer's door
# The outbox as the page keeps it in IndexedDB, oldest first.
QUEUED = """() => new Promise((resolve, reject) => {
  const opening = indexedDB.open("gasdispatch-outbox");
  opening.onerror = () => reject(opening.error);
  opening.onsuccess = () => {
    const read = opening.result.transaction("actions").objectStore("actions").getAll();
    read.onsuccess = () => resolve(read.result.map((e) => ({ path: e.path, key: e.key, step: e.meta.step })));
  };
})"""


async def keep_shot(page, artifacts, name: str) -> None:
    """A screenshot of the run, kept in docs/screenshots for the README too."""
    await shot(page, artifacts, name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts / f"{name}.png", SCREENSHOTS / f"{name}.png")


@pytest.fixture
async def people(committed_sessions):
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        _, admin = await make_staff(session, "admin")
        await session.commit()
    return {"customer": customer, "technician": technician, "admin": admin}


async def phone_of(new_context, base: str, lang: str, *, located: bool = True):
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    # Only in the app's pages: a blank page has no storage to write.
    await context.add_init_script(
        f"if (location.origin === {json.dumps(base)}) localStorage.setItem('gasdispatch.lang', {json.dumps(lang)})")
    if located:
        await context.grant_permissions(["geolocation"], origin=base)
    await context.set_geolocation({"longitude": AT[0], "latitude": AT[1], "accuracy": 8})
    return context, await context.new_page()


async def job_on_the_way(tech, base: str, people: dict, http: httpx.AsyncClient) -> str:
    """Online, offered the customer's repair, accepted, departed, identity waived by the customer: the order id."""
    await tech.click("#toggle-online")
    await expect(tech.locator("#gps")).to_have_attribute("data-sent", f"{AT[1]:.5f},{AT[0]:.5f}")
    customer = people["customer"]
    placed = await http.post("/v1/orders", headers=customer.headers,
                             json={"kind": "repair", "address_id": str(customer.address.id), "description": "灶具漏气"})
    assert placed.status_code == 201, placed.text
    await tech.locator("[id^=accept-]").click()
    await tech.click("#job-depart")
    await expect(tech.locator("#job-arrive")).to_be_visible()
    order_id = placed.json()["id"]
    waived = await http.post(f"/v1/orders/{order_id}/waive-verification", headers=customer.headers, json={})
    assert waived.status_code == 200, waived.text
    return order_id


@pytest.mark.parametrize(("lang", "suffix"), LANGUAGES)
async def test_steps_a_report_and_a_photo_taken_offline_survive_reloads_and_are_replayed_once(
    api_worker, people, new_context, committed_sessions, offline, artifacts, lang, suffix,
) -> None:
    # The emulated phone reports its position once: fresh enough for the arrival sent on reconnection.
    base = api_worker(**FAST, GASDISPATCH_STALE_AFTER_S="900")
    words = TEXTS[lang]
    context, tech = await phone_of(new_context, base, lang)
    await sign_in(tech, base, "technician", people["technician"].account.email)
    # The service worker controls the page (it claims it on activation): a reload offline is served by it.
    await eventually(lambda: tech.evaluate("Boolean(navigator.serviceWorker.controller)"))
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        order_id = await job_on_the_way(tech, base, people, http)
        card = tech.locator(f"article.job[data-order='{order_id}']")

        await context.set_offline(True)
        await expect(tech.locator("#connection")).to_have_text(words["offline"])
        await expect(tech.locator("#offline-text")).to_be_visible()
        await tech.click("#job-arrive")
        await expect(card.locator("#job-status")).to_have_text(words["arrived"])
        await expect(card.locator(".job-queued")).to_have_text(words["queued"])
        await expect(tech.locator("#offline-pending")).to_have_text(words["pending"].format(n=1))

        # Reloaded without a network: the shell from the service worker, the job as last known
        # with the step he took, the time of what is shown.
        await tech.reload()
        await expect(card.locator("#job-status")).to_have_text(words["arrived"])
        await expect(card.locator(".job-queued")).to_be_visible()
        await expect(tech.locator("#offline-saved")).to_be_visible()
        await tech.click("#job-start")
        await expect(card.locator("#job-status")).to_have_text(words["in_service"])
        await tech.fill("#work-done", "更换灶前阀和软管 / replaced the valve and hose")
        await tech.locator("#work-photo").set_input_files(files=png((30, 90, 180)))
        await expect(tech.locator("#work-photo-thumbs img")).to_have_count(1)
        await tech.check("#valve-closed")

        # Again: the draft comes back with the photo's image, kept on the phone.
        await tech.reload()
        await expect(tech.locator("#work-done")).to_have_value("更换灶前阀和软管 / replaced the valve and hose")
        await expect(tech.locator("#valve-closed")).to_be_checked()
        await expect(tech.locator("#work-photo-thumbs img")).to_have_js_property("naturalWidth", 200)
        await tech.click("#job-complete")
        await expect(tech.locator("#report-queued")).to_contain_text(words["report_queued"])
        await expect(tech.locator("#job-complete")).to_be_disabled()
        await expect(tech.locator("#offline-pending")).to_have_text(words["pending"].format(n=4))
        queued = await tech.evaluate(QUEUED)
        assert [e["step"] for e in queued] == ["arrive", "start", "photo", "complete"]
        await keep_shot(tech, artifacts, f"technician-offline{suffix}")

        # The arrival reached the server but its answer was lost (sent here with the page's key):
        # the replay must be answered from the record, not refused as a second arrival.
        token = await tech.evaluate("JSON.parse(localStorage.getItem('gasdispatch.technician.session')).token")
        arrive = queued[0]
        first = await http.post(arrive["path"], headers={"Authorization": f"Bearer {token}", "Idempotency-Key": arrive["key"]})
        assert first.json()["status"] == "arrived", first.text

        replays: list[str | None] = []
        tech.on("response", lambda r: replays.append(r.headers.get("idempotent-replayed")) if r.url.endswith("/arrive") else None)
        await context.set_offline(False)  # nothing tapped: the page reconnects and sends by itself
        await expect(tech.locator("#connection")).to_have_text(words["connected"])
        await expect(tech.locator("#offline")).to_be_hidden()
        await expect(card).to_have_count(0)
        await expect(tech.locator("#offline-failures")).to_have_count(0)
        assert replays == ["true"]
        assert await tech.evaluate(QUEUED) == []
        await keep_shot(tech, artifacts, f"technician-offline-replayed{suffix}")

        visit = (await http.get(f"/v1/orders/{order_id}/visit", headers=people["customer"].headers)).json()
        photo = hashlib.sha256((await http.get(f"/v1/orders/{order_id}/photos/{visit['report']['photo_refs'][0]}",
                                               headers=people["customer"].headers)).content).hexdigest()
        assert visit["report"]["photo_refs"] == [photo]
        assert visit["report"]["work_done"] == "更换灶前阀和软管 / replaced the valve and hose"
        order = (await http.get(f"/v1/orders/{order_id}", headers=people["customer"].headers)).json()
        assert order["status"] == "completed"
        assert order["final_price"] == order["price_estimate"]  # within the hold: no approval to wait for
    async with committed_sessions() as session:
        moves = Counter((await session.exec(select(OrderEvent.to_status).where(
            col(OrderEvent.order_id) == order_id))).all())
    assert moves["arrived"] == moves["in_service"] == moves["completed"] == 1, moves
    # The drafts and the copies of the photos are gone with the job.
    assert await tech.evaluate("JSON.parse(localStorage.getItem('gasdispatch.technician.drafts')).drafts") == {}
    assert offline.blocked == []


@pytest.mark.parametrize(("lang", "suffix"), LANGUAGES)
async def test_a_job_goes_on_while_access_tokens_expire_every_few_seconds(
    api_worker, people, new_context, lang, suffix,
) -> None:
    base = api_worker(**FAST, GASDISPATCH_JWT_TTL_S="6")
    _, tech = await phone_of(new_context, base, lang)
    refreshes: list[int] = []
    tech.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/v1/auth/refresh") else None)
    await sign_in(tech, base, "technician", people["technician"].account.email)
    first_token = await tech.evaluate("JSON.parse(localStorage.getItem('gasdispatch.technician.session')).token")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        order_id = await job_on_the_way(tech, base, people, http)
        await tech.click("#job-arrive")
        await tech.click("#job-start")
        await tech.fill("#work-done", "检查灶具 / checked the cooker")
        # The token he signed in with is dead now; the page never asked him to sign in again.
        await eventually(lambda: _refused(http, first_token))
        await expect(tech.locator("#connection")).to_have_text(TEXTS[lang]["connected"])
        await tech.click("#job-complete")
        await expect(tech.locator(f"article.job[data-order='{order_id}']")).to_have_count(0)
        order = (await http.get(f"/v1/orders/{order_id}", headers=people["customer"].headers)).json()
        assert order["status"] == "completed"
    await expect(tech.locator("#login-email")).to_have_count(0)
    assert refreshes and set(refreshes) == {200}, refreshes
    assert await tech.evaluate("JSON.parse(localStorage.getItem('gasdispatch.technician.session')).token") != first_token


async def _refused(http: httpx.AsyncClient, token: str) -> bool:
    return (await http.get("/v1/technicians/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401


@pytest.mark.parametrize(("lang", "suffix"), LANGUAGES)
async def test_going_online_without_location_access_is_refused_in_words(
    api_worker, people, new_context, artifacts, lang, suffix,
) -> None:
    base = api_worker(**FAST)
    words = TEXTS[lang]
    context, tech = await phone_of(new_context, base, lang, located=False)
    await sign_in(tech, base, "technician", people["technician"].account.email)
    await tech.click("#toggle-online")
    refusal = tech.locator("#availability .error")
    await expect(refusal).to_contain_text(words["no_location"])
    await expect(tech.locator("#tech-status")).to_have_text(words["off"])
    await keep_shot(tech, artifacts, f"technician-offline-location{suffix}")

    # Allowed in the settings: the same tap now takes him online, and his position is sent.
    await context.grant_permissions(["geolocation"], origin=base)
    await tech.click("#toggle-online")
    await expect(tech.locator("#tech-status")).to_have_text(words["online"])
    await expect(refusal).to_have_text(re.compile("^$"))
    await expect(tech.locator("#gps")).to_have_attribute("data-sent", f"{AT[1]:.5f},{AT[0]:.5f}")


@pytest.mark.parametrize(("lang", "suffix"), LANGUAGES)
async def test_a_step_taken_offline_on_a_job_cancelled_meanwhile_is_reported_not_retried(
    api_worker, people, new_context, lang, suffix,
) -> None:
    base = api_worker(**FAST)
    context, tech = await phone_of(new_context, base, lang)
    await sign_in(tech, base, "technician", people["technician"].account.email)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        order_id = await job_on_the_way(tech, base, people, http)
        await context.set_offline(True)
        await tech.click("#job-arrive")
        await expect(tech.locator("#offline-pending")).to_be_visible()
        cancelled = await http.post(f"/v1/ops/orders/{order_id}/cancel", headers=people["admin"],
                                    json={"reason": "customer called the hotline"})
        assert cancelled.status_code == 200, cancelled.text
        await context.set_offline(False)
    failures = tech.locator("#offline-failures li")
    await expect(failures).to_have_count(1)
    await expect(failures).to_contain_text(TEXTS[lang]["refused"])
    await expect(tech.locator(f"article.job[data-order='{order_id}']")).to_have_count(0)
    assert await tech.evaluate(QUEUED) == []  # dropped, not sent again and again
    await tech.click("#offline-dismiss")
    await expect(tech.locator("#offline")).to_be_hidden()
