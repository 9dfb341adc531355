"""The customer's emergency order page on a 360 px phone, in Chinese then English: the matching
steps in plain words (three technicians asked at once; the duty dispatcher alerted, arriving
live), the countdown to the promised arrival, and a message from operations appearing live in
the words the operator wrote; the countdown goes once the order is over. The API process runs
the ladder in seconds instead of minutes. Screenshots land in test-artifacts/e2e."""

import json
import re
from datetime import datetime, timezone

import httpx
import pytest
from playwright.async_api import expect

from dispatch.models import Technician
from matching import service as engine
from tests.e2e.support import CENTER, PHONE, demo_station
from tests.e2e.test_opsconsole_flow import shot, sign_in
from tests.factories import make_customer, make_staff, make_technician

ALERT_AFTER_S = 6
LADDERS = {"emergency": {"offers_per_round": [3], "alert_after_s": [[ALERT_AFTER_S, "critical"]], "until_deadline": True},
           "urgent": {}, "routine": {}}
FAST = {"GASDISPATCH_EMBEDDED_WORKER": "true", "GASDISPATCH_BATCH_WINDOW_S": "0.3",
        "GASDISPATCH_ESCALATION_LADDERS": json.dumps(LADDERS)}
KM_LON = 1 / (111.32 * 0.8645)  # degrees of longitude per km at this latitude
MESSAGE = "抢险车已从西湖站出发，请保持电话畅通 <b>勿开灯</b>"


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    """A household and three emergency technicians of the demo city's station."""
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technicians = [(await make_technician(session, station=station, kinds=("repair", "emergency"))).technician
                       for _ in range(3)]
        _, admin = await make_staff(session, "admin")
        await session.commit()
    return customer, technicians, admin


async def online_nearby(committed_sessions, redis, technicians: list[Technician]) -> None:  # noqa: ANN001
    """Online within 2 km, with fixes fresh enough to be matched (so: just before the order)."""
    index = engine.geo_index(redis)
    async with committed_sessions() as session:
        for km, technician in zip((0.5, 1.0, 1.5), technicians):
            technician = await session.get(Technician, technician.id)
            await engine.go_online(session, index, technician)
            await engine.record_position(session, index, technician, lon=CENTER[0] + km * KM_LON, lat=CENTER[1],
                                         at=datetime.now(timezone.utc))
        await session.commit()


async def test_emergency_order_page_shows_steps_sla_and_operations_messages_live(
    api_worker, people, committed_sessions, redis, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    customer, technicians, admin = people
    base = api_worker(**FAST)
    page = await (await new_context(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    await sign_in(page, base, "customer", customer.account.email)
    await online_nearby(committed_sessions, redis, technicians)

    async with httpx.AsyncClient(base_url=base) as http:
        created = await http.post("/v1/orders", headers=customer.headers, json={
            "kind": "emergency_leak", "address_id": str(customer.address.id)})
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
    await page.goto(f"{base}/app/customer/#order/{order_id}")

    steps = page.locator("#order-steps")
    await expect(steps.locator("li[data-action=offer_round]").first).to_contain_text("我们正在同时联系 3 位附近的抢险师傅")
    await expect(page.locator("#sla-clock")).to_be_visible()
    await expect(page.locator("#sla-clock")).to_contain_text(re.compile(r"承诺 \d+ 分钟内抢险人员到场（最晚 .+）"))
    # Nobody accepts: past the threshold the duty dispatcher is alerted, and the page shows it
    # without a reload.
    await expect(steps.locator("li[data-action=alerted]")).to_have_text(re.compile("^已通知值班调度员跟进"),
                                                                        timeout=60_000)
    await expect(page.locator("#order-messages")).to_be_hidden()

    async with httpx.AsyncClient(base_url=base) as http:
        sent = await http.post(f"/v1/ops/orders/{order_id}/messages", headers=admin,
                               json={"to": "customer", "text": MESSAGE})
        assert sent.status_code == 201, sent.text
    messages = page.locator("#order-message-list li")
    await expect(messages).to_have_count(1)
    await expect(messages.locator(".order-message")).to_have_text(MESSAGE)  # as written, markup and all
    await expect(page.locator("#order-messages h2")).to_have_text("运营中心消息")
    await shot(page, artifacts, "customer-order-01-steps-sla-message")

    await page.select_option("#lang-select", "en")
    await expect(steps.locator("li[data-action=offer_round]").first).to_contain_text(
        "Asking 3 nearby emergency technicians at once")
    await expect(steps.locator("li[data-action=alerted]")).to_contain_text("The duty dispatcher has been alerted to follow up")
    await expect(page.locator("#sla-clock")).to_contain_text(re.compile(r"Emergency crew promised within \d+ min \(by .+\)"))
    await expect(messages.locator(".order-message")).to_have_text(MESSAGE)
    await shot(page, artifacts, "customer-order-02-english")

    async with httpx.AsyncClient(base_url=base) as http:
        cancelled = await http.post(f"/v1/orders/{order_id}/cancel", headers=customer.headers,
                                    json={"reason": "gas company already here", "accepted_fee_minor": 0})
        assert cancelled.status_code == 200, cancelled.text
    await expect(page.locator("#order-status-pill")).to_have_text("Cancelled")
    await expect(page.locator("#sla-clock")).to_be_hidden()
    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
