"""An emergency whose one nearby emergency technician ignores the offer, in a real browser in
Chinese: the offer lapses on his 360 px phone and comes back after the cooldown; once the order
waited past the alert threshold the ops console (desktop) shows a banner with a beep, and the
station's duty operator is notified too; the operator opens the order from the banner and
assigns it to him directly — what he types into the form survives the live redraws the still
escalating order causes — and his phone shows the job. The API process runs the ladder in
seconds instead of minutes. Screenshots land in test-artifacts/e2e."""

import json
import uuid

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import select, update

from dispatch.models import OrderEvent, Technician
from dispatch.stations import set_duty_staff
from matching.models import Offer
from tests.e2e.support import CENTER, DESKTOP, demo_station
from tests.e2e.test_opsconsole_flow import phone_online, shot, sign_in
from tests.factories import make_customer, make_staff, make_technician

OFFER_TIMEOUT_S = 5
COOLDOWN_S = 3
ALERT_AFTER_S = 14
LADDERS = {
    "emergency": {"offers_per_round": [3], "cooldown_s": COOLDOWN_S, "alert_after_s": [[ALERT_AFTER_S, "critical"]],
                  "until_deadline": True},
    "urgent": {}, "routine": {},
}
FAST = {"GASDISPATCH_EMBEDDED_WORKER": "true", "GASDISPATCH_BATCH_WINDOW_S": "0.3", "GASDISPATCH_MAX_SPEED_KMH": "2000",
        "GASDISPATCH_EMERGENCY_OFFER_TIMEOUT_S": str(OFFER_TIMEOUT_S), "GASDISPATCH_ESCALATION_LADDERS": json.dumps(LADDERS)}
NAME = "赵师傅"
REASON = ("赵师傅未接单，", "电话确认后直接指派")


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station, kinds=("repair", "emergency"))
        await session.exec(update(Technician).where(Technician.id == technician.technician.id).values(name=NAME))
        admin, admin_headers = await make_staff(session, "admin")
        await set_duty_staff(session, station.id, [admin.id])
        await session.commit()
    return customer, technician, admin, admin_headers


async def test_ignored_emergency_is_offered_again_alerts_ops_and_the_operator_assigns_it(
    api_worker, people, committed_sessions, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    customer, technician, admin, admin_headers = people
    base = api_worker(**FAST)
    phone = await phone_online(new_context, base, technician.account.email, CENTER[0] + 0.004)
    ops = await (await new_context(viewport=DESKTOP)).new_page()
    await sign_in(ops, base, "ops", admin.email)
    await expect(ops.locator("#ops-connection")).to_have_text("实时已连接")

    async with httpx.AsyncClient(base_url=base) as http:
        created = await http.post("/v1/orders", headers=customer.headers, json={
            "kind": "emergency_leak", "address_id": str(customer.address.id), "description": "厨房有很浓的煤气味"})
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
    order_uuid = uuid.UUID(order_id)

    offered = phone.locator("[id^=accept-]")
    await expect(offered).to_have_count(1)
    first_offer = await offered.get_attribute("id")
    await expect(phone.locator(".offer")).to_contain_text("抢险")
    await shot(phone, artifacts, "emergency-01-first-offer")
    # He does nothing: the offer lapses, and after the cooldown he is offered the order again.
    await expect(phone.locator(f"#{first_offer}")).to_have_count(0)
    again = phone.locator(f"[id^=accept-]:not(#{first_offer})")
    await expect(again).to_have_count(1)
    await shot(phone, artifacts, "emergency-02-offered-again")
    async with committed_sessions() as session:
        offers = (await session.exec(select(Offer.technician_id, Offer.status, Offer.decided_at, Offer.created_at)
                                     .where(Offer.order_id == order_uuid).order_by(Offer.created_at))).all()
    assert [(o.technician_id, o.status) for o in offers[:1]] == [(technician.technician.id, "expired")]
    assert offers[1].technician_id == technician.technician.id
    assert (offers[1].created_at - offers[0].decided_at).total_seconds() >= COOLDOWN_S

    banner = ops.locator("#alert-banner")
    unaccepted = banner.locator("li", has_text="抢险工单无人接单")
    await expect(unaccepted).to_be_visible(timeout=30_000)
    assert int(await banner.get_attribute("data-beeps")) >= 1
    await expect(unaccepted.locator(".pill")).to_have_text("紧急")
    await shot(ops, artifacts, "emergency-03-ops-alert")
    async with httpx.AsyncClient(base_url=base) as http:
        told = (await http.get("/v1/notifications", headers=admin_headers)).json()["data"]
    assert any(n["kind"] == "ops_alert" and n["payload"]["order_id"] == order_id
               and n["payload"]["kind"] == "emergency_unaccepted" for n in told), told

    await unaccepted.locator("[id^=alert-order-]").click()
    detail = ops.locator("#order-detail")
    await expect(detail).to_have_attribute("data-order", order_id)
    await expect(detail.locator("#detail-timeline")).to_contain_text("已通知值班调度员跟进")
    await expect(detail.locator("#detail-timeline")).to_contain_text("派单未被接受")
    # The lapse's reason is the system's slug, worded for the operator.
    await expect(detail.locator("#detail-timeline")).to_contain_text("派单超时无人响应")
    picker = detail.locator("#assign-technician")
    await expect(picker.locator(f"option[value='{technician.technician.id}']")).to_be_enabled()
    await picker.select_option(str(technician.technician.id))
    reason = detail.locator("#assign-reason")
    await reason.click()
    await ops.keyboard.type(REASON[0])
    # The order is still escalating: its next status change redraws the detail while he types.
    await reason.evaluate("(el) => { el.dataset.before = 'redraw'; }")
    await expect(detail.locator("#assign-reason[data-before]")).to_have_count(0, timeout=20_000)
    await ops.keyboard.type(REASON[1])
    await expect(reason).to_have_value("".join(REASON))
    await expect(picker).to_have_value(str(technician.technician.id))
    await detail.locator("#assign-submit").click()

    await expect(detail.locator("#detail-technician")).to_contain_text(NAME)
    await expect(detail.locator("#detail-status")).to_have_text("已接单")
    await expect(detail.locator("#detail-timeline")).to_contain_text("调度员指派维修员")
    await expect(phone.locator("#job-depart")).to_be_visible()
    await expect(phone.locator("[id^=accept-]")).to_have_count(0)
    await shot(ops, artifacts, "emergency-04-ops-assigned")
    await shot(phone, artifacts, "emergency-05-technician-job")
    async with committed_sessions() as session:
        actions = (await session.exec(select(OrderEvent.action).where(OrderEvent.order_id == order_uuid)
                                      .order_by(OrderEvent.id))).scalars().all()
    assert actions.index("offer_lapsed") < actions.index("alerted") < actions.index("assign"), actions
    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
