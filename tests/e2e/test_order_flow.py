"""One order through all four web clients in a real browser: the customer orders, the
technician's phone (360 px, emulated GPS) takes the offer and does the job, the customer
follows, verifies, approves a price change and rates; the auditor sees the settlement and
checks the ledger's hash chain; operations see the hazard. Nothing leaves the machine."""

import asyncio
import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest
from playwright.async_api import expect

from dispatch.models import Certification
from tests.e2e.support import CENTER, DESKTOP, PHONE, ROOT, sign_in, shot, demo_station
from tests.factories import make_customer, make_staff, make_technician

SCREENSHOTS = ROOT / "docs" / "screenshots"
FAST = {
    "GASDISPATCH_EMBEDDED_WORKER": "true",
    "GASDISPATCH_BATCH_WINDOW_S": "0.3",
    "GASDISPATCH_REVIEW_EDIT_WINDOW_H": "0.0003",  # about a second, then the review is final
    "GASDISPATCH_FIELD_ARRIVAL_RADIUS_M": "60",
    "GASDISPATCH_MAX_SPEED_KMH": "2000",  # the emulated phone jumps hundreds of metres at once
}


@pytest.fixture
async def people(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, station=station)
        now = datetime.now(timezone.utc)
        session.add(Certification(technician_id=technician.technician.id, kind="installation", number="AZ-2031-0007",
                                  issuer="市燃气集团培训中心", valid_from=now, valid_until=now + timedelta(days=1000),
                                  status="pending"))
        auditor, _ = await make_staff(session, "auditor")
        admin, _ = await make_staff(session, "admin")
        await session.commit()
    return {"customer": customer.account.email, "technician": technician.account.email,
            "auditor": auditor.email, "admin": admin.email}


def fix(lon: float, lat: float) -> dict:
    return {"longitude": lon, "latitude": lat, "accuracy": 8}


async def test_an_order_from_the_customers_phone_to_the_auditors_ledger(
    api_worker, people, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    started = time.monotonic()
    base = api_worker(**FAST)

    phone = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation(fix(CENTER[0] + 0.004, CENTER[1]))  # about 400 m east of the customer
    tech = await phone.new_page()
    await sign_in(tech, base, "technician", people["technician"])
    await expect(tech.locator("#connection")).to_have_text("已连接")
    await tech.click("#toggle-online")
    await expect(tech.locator("#tech-status")).to_have_text("在线")
    await expect(tech.locator("#gps")).to_have_attribute("data-sent", f"{CENTER[1]:.5f},{CENTER[0] + 0.004:.5f}")

    customer_context = await new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    customer = await customer_context.new_page()
    await sign_in(customer, base, "customer", people["customer"])
    await expect(customer.locator("#nearby-list")).to_contain_text("韩梅梅")
    await customer.select_option("#order-kind", "repair")
    await expect(customer.locator("#estimate")).to_contain_text("80.00")
    await customer.fill("#order-description", "灶台点不着火，有轻微燃气味")
    await shot(customer, artifacts, "01-customer-order-form")
    await customer.click("#place-order")
    await expect(customer.locator("#order-status-pill")).to_be_visible()
    await expect(customer.locator("#order-estimate")).to_contain_text("80.00")
    order_id = customer.url.rsplit("/", 1)[1]

    offer = tech.locator("[data-offer]")
    await expect(offer).to_contain_text("剩余")
    await expect(offer).to_contain_text("0.4 km")
    await shot(tech, artifacts, "02-technician-offer")
    await tech.locator("[id^=accept-]").click()
    await expect(customer.locator("#order-status-pill")).to_have_text("已接单")

    await tech.click("#job-depart")
    await expect(customer.locator("#order-status-pill")).to_have_text("上门途中")
    await phone.set_geolocation(fix(CENTER[0] + 0.0015, CENTER[1]))
    await expect(customer.locator("#tech-distance")).to_contain_text("维修员距您约 14")  # ~144 m
    await shot(customer, artifacts, "03-customer-following")

    code = (await customer.inner_text("#door-code")).strip()
    await tech.fill("#door-code-input", code)
    await tech.click("#verify-code")
    await expect(tech.locator("#verify-ok")).to_be_visible()
    await phone.set_geolocation(fix(CENTER[0] + 0.0002, CENTER[1]))
    await expect(tech.locator("#gps")).to_have_attribute("data-sent", f"{CENTER[1]:.5f},{CENTER[0] + 0.0002:.5f}")
    await tech.click("#job-arrive")
    await expect(customer.locator("#order-status-pill")).to_have_text("已到达")
    await expect(customer.locator("#verification")).to_contain_text("身份已核验")
    await expect(customer.locator("#tech-certificate")).to_contain_text("维修")

    await tech.click("#job-start")
    await expect(tech.locator("#job-status")).to_have_text("服务中")
    await tech.fill("#work-done", "更换老化软管，检测无泄漏")
    await tech.fill("#part-name", "燃气软管")
    await tech.fill("#part-price", "15")
    await tech.click("#add-part")
    await tech.select_option("#hazard-category", "no_alarm")
    await tech.select_option("#hazard-severity", "major")
    await tech.fill("#hazard-text", "厨房未安装燃气报警器")
    await tech.click("#add-hazard")
    await tech.fill("#final-price", "95")  # above the 80.00 authorised: the customer must approve
    await tech.click("#job-complete")
    await expect(tech.locator("#report-form .error")).to_contain_text("用户确认")
    await shot(tech, artifacts, "04-technician-report")

    await customer.click("#approve-price", timeout=15000)
    await expect(customer.locator("#price-change")).to_be_hidden()
    await tech.click("#job-complete")
    await expect(customer.locator("#order-status-pill")).to_have_text("已完成")
    await expect(customer.locator("#hazards")).to_contain_text("未装燃气报警器")
    await expect(tech.locator("#done-list")).to_contain_text("燃气维修")
    await customer.check("input[name=tags][value=on_time]")
    await customer.check("input[name=tags][value=showed_credentials]")
    await customer.click("#submit-review")
    await expect(customer.locator("#review-done")).to_contain_text("★★★★★")
    await shot(customer, artifacts, "05-customer-rated")

    # The review becomes final after its (shortened) edit window; the worker's finalization job
    # (every 30 s) then finalizes it and the settlement follows.
    desk = await new_context(viewport=DESKTOP)
    auditor = await desk.new_page()
    await sign_in(auditor, base, "auditor", people["auditor"])
    row = auditor.locator(f"tr[data-order='{order_id}']")
    for _ in range(150):
        if await row.count():
            break
        await asyncio.sleep(0.5)
        await auditor.click("#search")
    await row.click()
    await expect(auditor.locator("#evidence")).to_contain_text(order_id)
    await expect(auditor.locator("#evidence")).to_contain_text('"final_price_minor":9500')
    await expect(auditor.locator("#ledger tbody tr").first).to_be_visible()
    await auditor.click("#verify-chain")
    await expect(auditor.locator("#chain-result")).to_contain_text("哈希链完整")
    await expect(auditor.locator("#totals")).to_be_visible()
    await shot(auditor, artifacts, "06-auditor")

    ops = await (await new_context(viewport=DESKTOP)).new_page()
    await sign_in(ops, base, "ops", people["admin"])
    await expect(ops.locator("#hazard-table")).to_contain_text("未装燃气报警器")
    await expect(ops.locator("#cert-table")).to_contain_text("AZ-2031-0007")
    await expect(ops.locator("#kpis")).to_contain_text("一次修复率")
    await shot(ops, artifacts, "07-ops")
    await ops.locator("#cert-table button.ok").click()
    await expect(ops.locator("#certs")).to_contain_text("没有待审核的资质")

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, source in (("customer", "03-customer-following"), ("technician", "04-technician-report"),
                         ("auditor", "06-auditor"), ("ops", "07-ops")):
        shutil.copyfile(artifacts / f"{source}.png", SCREENSHOTS / f"{name}.png")
    assert time.monotonic() - started < 120
