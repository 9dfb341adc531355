"""What reaches the technician's phone (360 px, Chinese) besides offers, in a real browser: a
repositioning hint pushed on his channel, the SLA clock on an offer and on his jobs (urgent when
under 10 minutes), an operator's message in his own words, a job reassigned by operations and a
price change the customer rejected."""

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import update

from dispatch.models import Order
from dispatch.stations import create_station
from kit.fanout import account_channel, push_now
from tests.e2e.support import CENTER, square
from tests.e2e.test_opsconsole_flow import phone_online, shot
from tests.e2e.test_order_flow import FAST
from tests.factories import make_customer, make_staff, make_technician

STATION = "西湖社区服务站"
MESSAGE = "请先联系客户，楼下门禁需要刷卡"


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await create_station(session, name=STATION, city="demo", lon=CENTER[0], lat=CENTER[1],
                                       service_area=square(*CENTER, 0.03), daily_capacity=40)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        other = await make_technician(session, station=station)
        _, admin_headers = await make_staff(session, "admin")
        await session.commit()
    return {"station": station, "customer": customer, "technician": technician, "other": other, "admin": admin_headers}


async def place_order(http: httpx.AsyncClient, customer) -> str:  # noqa: ANN001
    created = await http.post("/v1/orders", headers=customer.headers, json={
        "kind": "repair", "address_id": str(customer.address.id), "description": "灶具打不着火"})
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def test_the_technicians_phone_shows_hints_deadlines_messages_and_notices(
    api_worker, people, committed_sessions, redis, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker(**FAST)
    customer, technician, admin = people["customer"], people["technician"], people["admin"]
    phone = await phone_online(new_context, base, technician.account.email, CENTER[0] + 0.0002)

    # A repositioning hint, published as matching/readiness.py publishes it.
    station = people["station"]
    await push_now(redis, account_channel(technician.account.id), "reposition", reason="emergency_cover",
                   station_id=str(station.id), station_name=STATION,
                   area={"type": "Point", "coordinates": [CENTER[0], CENTER[1]]})
    banner = phone.locator("#reposition")
    await expect(banner).to_be_visible()
    await expect(banner.locator("#reposition-text")).to_have_text(f"{STATION}附近抢险力量不足，空闲期间请向该区域移动。")
    await expect(banner.locator("#reposition-navigate")).to_have_attribute(
        "href", f"geo:{CENTER[1]},{CENTER[0]}?q={CENTER[1]},{CENTER[0]}")
    await shot(phone, artifacts, "technician-01-reposition")
    await banner.locator("#reposition-dismiss").click()
    await expect(banner).to_be_hidden()
    # One towards more work, as matching/service.py pushes it from the look-ahead values.
    await push_now(redis, account_channel(technician.account.id), "reposition", reason="demand", cell="8730e1ca9ffffff",
                   distance_m=2140, area={"type": "Point", "coordinates": [CENTER[0] + 0.02, CENTER[1]]})
    await expect(banner.locator("#reposition-text")).to_have_text(
        "根据往常的订单，接下来约一小时，2.1 公里外的相邻区域订单更多。空闲时可前往等单（自愿）。")
    await expect(banner).to_have_attribute("data-reason", "demand")
    await shot(phone, artifacts, "technician-01b-reposition-demand")
    await banner.locator("#reposition-dismiss").click()
    await expect(banner).to_be_hidden()

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        first = await place_order(http, customer)
        offer = phone.locator(".offer")
        await expect(offer.locator("[data-sla]")).to_contain_text("距服务时限还剩")
        await offer.locator("[id^=accept-]").click()
        job = phone.locator(f"[data-order='{first}']")
        await expect(job.locator(".job-sla [data-sla]")).to_contain_text("距服务时限还剩")

        sent = await http.post(f"/v1/ops/orders/{first}/messages", headers=admin, json={"to": "technician", "text": MESSAGE})
        assert sent.status_code == 201, sent.text
        told = phone.locator("#notice-list li[data-kind=message]")
        await expect(told.locator(".notice-text")).to_have_text(MESSAGE)
        await expect(told).to_contain_text(f"调度中心关于订单 {first[:8]} 的消息")

        # Operations give the job to another technician, online a little farther away.
        other = people["other"].headers
        assert (await http.post("/v1/technicians/me/online", headers=other)).status_code == 200
        fix = {"position": {"type": "Point", "coordinates": [CENTER[0] + 0.004, CENTER[1]]},
               "ts": datetime.now(timezone.utc).isoformat()}
        assert (await http.post("/v1/technicians/me/location", headers=other, json=fix)).status_code == 202
        moved = await http.post(f"/v1/ops/orders/{first}/assign", headers=admin, json={
            "technician_id": str(people["other"].technician.id), "reason": "客户要求女师傅上门"})
        assert moved.status_code == 200, moved.text
        reassigned = phone.locator("#notice-list li[data-kind=job_reassigned]")
        await expect(reassigned).to_contain_text(f"订单 {first[:8]} 已改派给其他技术员")
        await expect(reassigned).to_contain_text("调度改派")
        await expect(reassigned.locator(".notice-reason")).to_have_text("原因：客户要求女师傅上门")
        await expect(job).to_have_count(0)

        second = await place_order(http, customer)
        await phone.locator("[id^=accept-]").click()
        job = phone.locator(f"[data-order='{second}']")
        await expect(job.locator("#job-depart")).to_be_visible()
        # Due in 5 minutes: the card drawn for the next step shows the clock as urgent.
        async with committed_sessions() as session:
            await session.exec(update(Order).where(Order.id == second).values(
                sla_deadline=datetime.now(timezone.utc) + timedelta(minutes=5)))
            await session.commit()
        await job.locator("#job-depart").click()
        await expect(job.locator(".job-sla .pill.bad")).to_contain_text("距服务时限还剩")
        await shot(phone, artifacts, "technician-02-urgent-sla-and-notices")

        assert (await http.post(f"/v1/orders/{second}/waive-verification", headers=customer.headers, json={})).status_code == 200
        await job.locator("#job-arrive").click()
        await job.locator("#job-start").click()
        await expect(job.locator("#report-form")).to_be_visible()
        estimate = (await http.get(f"/v1/orders/{second}", headers=customer.headers)).json()["price_estimate"]
        asked = await http.post(f"/v1/jobs/{second}/complete", headers=technician.headers, json={
            "work_done": "更换灶具点火针", "parts": [], "final_price_minor": estimate["amount_minor"] + 5000,
            "currency": estimate["currency"]})
        assert asked.status_code == 202, asked.text
        rejected = await http.post(f"/v1/orders/{second}/price-change/reject", headers=customer.headers,
                                   json={"price_change_id": asked.json()["price_change"]["id"]})
        assert rejected.status_code == 200, rejected.text
    refused = phone.locator("#notice-list li[data-kind=price_change_rejected]")
    await expect(refused).to_contain_text(f"客户拒绝了订单 {second[:8]} 的新价格")
    await expect(refused.locator(".notice-reason")).to_have_text("原因：客户拒绝了新价格")
    await shot(phone, artifacts, "technician-03-price-rejected")
    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
