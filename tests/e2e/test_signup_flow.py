"""Sign-up to first order on 360 px phones, in zh-CN and in English: a household registers, adds
its address and places its first order; a technician registers and works through his onboarding
checklist (his photo, the training and exam the utility records, his certificate and its photo)
to "pending verification". Then the inbox of every app (unread count, read state, a link to the
order; the auditor reads without marking), the history of past orders with "order again", and the
technician's photo, rating and certifications on the customer's order page. Screenshots land in docs/screenshots/ (signup-*, inbox*, history*)."""

import asyncio
import io
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from PIL import Image
from playwright.async_api import expect
from sqlmodel import select

from dispatch import technicians as techs
from dispatch.alerts import OPS_ALERT
from dispatch.models import Account, Notification, Order, Technician
from dispatch.notifications import notify
from tests.e2e.support import CENTER, PHONE, ROOT, assert_accessible, demo_station, shot, sign_in
from tests.e2e.test_order_flow import FAST
from tests.factories import PASSWORD, make_customer, make_staff, make_technician
from tests.ratings.factories import completed_order, finalized_review

SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE_CONTEXT = {"viewport": PHONE, "is_mobile": True, "has_touch": True}
WORDS = {
    "zh-CN": {"pending": "等待燃气公司审核", "reorder": "再来一单", "inbox": "消息", "completed": "服务已完成，请评价",
              "read": "已读", "examPassed": "维修考核通过"},
    "en": {"pending": "Pending verification by the gas utility", "reorder": "Order again", "inbox": "Inbox",
           "completed": "Service completed: please rate it", "read": "Read", "examPassed": "Repair exam passed"},
}


def suffix(lang: str) -> str:
    return "" if lang == "zh-CN" else "-en"


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (900, 1200)) -> list[dict]:
    """A photo as the phone's file chooser hands it over."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return [{"name": "IMG_0001.png", "mimeType": "image/png", "buffer": out.getvalue()}]


async def open_app(new_context, base: str, app: str, lang: str):  # noqa: ANN001, ANN201
    page = await (await new_context(**PHONE_CONTEXT)).new_page()
    await page.goto(f"{base}/app/{app}/")
    if lang != "zh-CN":
        await page.select_option("#lang-select", lang)
    return page


async def sign_up(page, name: str, email: str) -> None:  # noqa: ANN001
    await page.click("#signup-open")
    await page.fill("#signup-name", name)
    await page.fill("#signup-phone", "+86 139 0000 1234")
    await page.fill("#signup-email", email)
    await page.fill("#signup-password", PASSWORD)


@pytest.fixture
async def station(committed_sessions):  # noqa: ANN001, ANN201
    async with committed_sessions() as session:
        await demo_station(session)
        await session.commit()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_sign_up_to_first_order(api_worker, station, committed_sessions, new_context, offline, lang) -> None:  # noqa: ANN001
    base = api_worker(**FAST)
    words = WORDS[lang]

    # The household: a new account, its address, its first order.
    customer = await open_app(new_context, base, "customer", lang)
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(customer, "王小明" if lang == "zh-CN" else "Wang Xiaoming", email)
    await shot(customer, SCREENSHOTS, f"signup-customer{suffix(lang)}")
    await customer.click("#signup-submit")
    await expect(customer.locator("#sign-out")).to_be_visible()
    await expect(customer.locator("#address-form")).to_be_visible()
    assert await customer.locator("#address-select").count() == 0  # no address yet: the form is the first step
    for part, value in {"label": "家", "province": "浙江省", "city": "杭州市", "district": "西湖区",
                        "street": "北山街 12 号", "community": "宝石山小区", "building": "3", "room": "502"}.items():
        await customer.fill(f"#addr-{part}", value)
    await customer.click("#addr-save")
    await expect(customer.locator("#address-select")).to_have_count(1)
    await customer.select_option("#order-kind", "repair")
    await customer.fill("#order-description", "灶台打不着火")
    await customer.click("#place-order")
    await expect(customer.locator("#order-status-pill")).to_be_visible()
    order_id = customer.url.split("#order/")[1]
    await expect(customer.locator(".toast")).to_have_count(0)  # "address saved" said, gone
    await shot(customer, SCREENSHOTS, f"signup-first-order{suffix(lang)}")
    async with committed_sessions() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        account = (await session.exec(select(Account).where(Account.email == email))).one()
        assert order.kind == "repair" and account.role == "customer"

    # The technician: a new account lands on his onboarding checklist, not on going online.
    tech = await open_app(new_context, base, "technician", lang)
    tech_email = f"tech-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(tech, "赵师傅" if lang == "zh-CN" else "Zhao Wei", tech_email)
    await tech.click("#signup-submit")
    await expect(tech.locator("#onboarding")).to_be_visible()
    await expect(tech.locator("#onboarding-status")).to_have_attribute("data-status", "none")
    await expect(tech.locator("#toggle-online")).to_be_hidden()
    steps = tech.locator("#onboarding-steps > li")
    await expect(steps).to_have_count(6)
    for name, done in [("account", "true"), ("photo", "false"), ("training", "false"), ("exam", "false"),
                       ("certificate", "false"), ("verification", "false")]:
        await expect(tech.locator(f"li[data-step={name}]")).to_have_attribute("data-done", done)
    await shot(tech, SCREENSHOTS, f"signup-technician-checklist{suffix(lang)}")

    await tech.locator("#onboarding-photo").set_input_files(files=picture((60, 120, 200)))
    await expect(tech.locator("li[data-step=photo]")).to_have_attribute("data-done", "true")

    if lang == "zh-CN":  # a certificate he already holds, entered by himself
        await tech.select_option("#onboarding-cert-kind", "repair")
        await tech.fill("#onboarding-cert-number", "ZJ-WX-2026-0815")
        await tech.fill("#onboarding-cert-issuer", "浙江省燃气协会")
        await tech.fill("#onboarding-cert-from", "2026-01-01")
        await tech.fill("#onboarding-cert-until", "2029-01-01")
        await tech.click("#onboarding-cert-submit")
    else:  # the station records his training and the utility his exam, whose pass issues the certification
        async with committed_sessions() as session:
            technician = (await session.exec(select(Technician).join(Account, Account.id == Technician.account_id)
                                             .where(Account.email == tech_email))).one()
            admin, _ = await make_staff(session, "admin")
            held = datetime.now(timezone.utc) - timedelta(days=3)
            for record_type, score, passed in (("training", None, None), ("exam", 88, True)):
                await techs.record_training(session, technician_id=technician.id, record_type=record_type, kind="repair",
                                            held_at=held, score=score, passed=passed, certificate_number="HZ-EX-0042",
                                            valid_years=3, issuer="gas utility", recorded_by=admin.id)
                held += timedelta(days=1)
            await session.commit()
        await tech.reload()
        await expect(tech.locator("li[data-step=training]")).to_have_attribute("data-done", "true")
        await expect(tech.locator("li[data-step=exam]")).to_have_attribute("data-done", "true")
        await expect(tech.locator("#onboarding-exams li")).to_contain_text(words["examPassed"])
        await expect(tech.locator("#onboarding-exams li")).to_contain_text("88")

    cert = tech.locator("#onboarding-certs li[data-certification]")
    await expect(cert).to_have_count(1)
    await expect(cert).to_have_attribute("data-photo", "false")
    await expect(tech.locator("li[data-step=certificate]")).to_have_attribute("data-done", "false")
    await tech.locator("[id^=onboarding-cert-photo-]").set_input_files(files=picture((230, 230, 210), (1600, 1100)))
    await expect(cert).to_have_attribute("data-photo", "true")
    await expect(tech.locator("li[data-step=certificate]")).to_have_attribute("data-done", "true")
    await expect(tech.locator("#onboarding-status")).to_have_attribute("data-status", "pending")
    await expect(tech.locator("#onboarding-status")).to_have_text(words["pending"])
    await expect(tech.locator("li[data-step=verification]")).to_have_attribute("data-done", "false")
    await expect(tech.locator(".toast")).to_have_count(0)  # "uploaded" said, gone
    await shot(tech, SCREENSHOTS, f"signup-technician-pending{suffix(lang)}")
    async with committed_sessions() as session:
        technician = (await session.exec(select(Technician).join(Account, Account.id == Technician.account_id)
                                         .where(Account.email == tech_email))).one()
        assert technician.onboarding == "applicant" and technician.photo_ref.startswith("portrait:")
        certs = await techs.certifications_of(session, technician.id)
        assert [c.status for c in certs] == ["pending"]
    assert not offline.blocked


@pytest.fixture
async def past_order(committed_sessions):  # noqa: ANN001, ANN201
    """A customer whose repair was done and reviewed, by a technician with verified certifications, and
    an operator's message about it (the worker adds the order's own notices once it runs)."""
    async with committed_sessions() as session:
        station = await demo_station(session)
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session, kinds=("repair", "inspection"), station=station)
        order = await completed_order(session, customer, technician)
        await finalized_review(session, customer, technician, stars=5, at=datetime.now(timezone.utc) - timedelta(minutes=30))
        await notify(session, customer.account.id, "message", "运营消息 / Message from operations",
                     "明天上午会有回访电话。", {"order_id": str(order.id)}, dedupe_key=f"message:{order.id}")
        admin, _ = await make_staff(session, "admin")
        auditor, _ = await make_staff(session, "auditor")
        await notify(session, admin.id, OPS_ALERT, "值班告警 / Operations alert", "", {"order_id": str(order.id)},
                     dedupe_key=f"alert:{order.id}")
        await notify(session, auditor.id, "message", "运营消息 / Message from operations", "抽查本月结算。", {},
                     dedupe_key="message:auditor")
        await session.commit()
    return {"customer": customer.account.email, "account_id": customer.account.id, "admin": admin.email,
            "auditor": auditor.email, "technician": technician.account.email, "order_id": str(order.id),
            "address_id": customer.address.id}


async def test_inbox_history_reorder_and_the_technicians_profile(
    api_worker, past_order, committed_sessions, new_context, offline,  # noqa: ANN001
) -> None:
    base = api_worker(**FAST)
    async with httpx.AsyncClient(base_url=base) as client:  # the technician's portrait, as his phone uploads it
        token = (await client.post("/v1/auth/login", json={"email": past_order["technician"], "password": PASSWORD})).json()
        portrait = picture((200, 150, 120), (300, 400))[0]["buffer"]
        uploaded = await client.put("/v1/technicians/me/photo", content=portrait, headers={
            "Authorization": f"Bearer {token['access_token']}", "Content-Type": "image/png"})
        assert uploaded.status_code == 200, uploaded.text

    # The order's notices (accepted … completed) are written by the worker's deliveries, in order.
    async with committed_sessions() as session:
        deadline = datetime.now(timezone.utc) + timedelta(seconds=60)
        while "order_completed" not in (kinds := (await session.exec(select(Notification.kind).where(
                Notification.account_id == past_order["account_id"]))).all()):
            assert datetime.now(timezone.utc) < deadline, "the worker did not notify the completion"
            await session.rollback()
            await asyncio.sleep(0.3)
    assert {"order_accepted", "message"} <= set(kinds)
    notices = len(kinds)

    # Operations and the auditor have the inbox too; the auditor reads without marking anything.
    ops = await (await new_context(**PHONE_CONTEXT)).new_page()
    await sign_in(ops, base, "ops", past_order["admin"])
    await expect(ops.locator("#inbox-count")).to_be_visible()
    await ops.click("#inbox-open")
    alert = ops.locator("#inbox-list > li[data-kind=ops_alert]")
    await expect(alert).to_contain_text("值班告警")
    await alert.locator(".inbox-read").click()
    await expect(alert).to_have_attribute("data-read", "true")
    auditor = await (await new_context(**PHONE_CONTEXT)).new_page()
    await sign_in(auditor, base, "auditor", past_order["auditor"])
    await expect(auditor.locator("#inbox-count")).to_have_text("1")
    await auditor.click("#inbox-open")
    await expect(auditor.locator("#inbox-list > li[data-kind=message] .inbox-body")).to_have_text("抽查本月结算。")
    await expect(auditor.locator("#inbox-list .inbox-read")).to_have_count(0)

    page = await (await new_context(**PHONE_CONTEXT)).new_page()
    await sign_in(page, base, "customer", past_order["customer"])
    order_id = past_order["order_id"]
    for lang in ("zh-CN", "en"):
        words = WORDS[lang]
        if lang != "zh-CN":
            await page.select_option("#lang-select", lang)
        # The inbox: every notice unread in zh-CN; the completion is read there, so one fewer in English.
        unread = notices if lang == "zh-CN" else notices - 1
        await expect(page.locator("#inbox-count")).to_have_text(str(unread))
        await page.click("#inbox-open")
        await expect(page.locator("#inbox-list > li")).to_have_count(notices)
        await expect(page.locator("#inbox-list > li[data-read=false]")).to_have_count(unread)
        completed = page.locator("#inbox-list > li[data-kind=order_completed]")
        await expect(completed).to_contain_text(words["completed"])
        await expect(page.locator("#inbox-list > li[data-kind=message] .inbox-body")).to_have_text("明天上午会有回访电话。")
        await assert_accessible(page, "inbox")  # the open dialog, not the page behind it
        await page.locator("#inbox").screenshot(path=str(SCREENSHOTS / f"inbox{suffix(lang)}.png"))
        if lang == "zh-CN":
            await completed.locator(".inbox-read").click()
            await expect(completed).to_have_attribute("data-read", "true")
            await expect(completed).to_contain_text(words["read"])
            await expect(page.locator("#inbox-count")).to_have_text(str(notices - 1))
        else:
            await expect(completed).to_have_attribute("data-read", "true")  # kept on the server
            await expect(completed.locator(".inbox-read")).to_have_count(0)
        # Its link opens the order, where the technician who came shows with photo, rating and certifications.
        await completed.locator("a.inbox-order").click()
        await expect(page.locator("#inbox")).to_have_count(0)
        await expect(page).to_have_url(f"{base}/app/customer/#order/{order_id}")
        profile = page.locator("#tech-profile")
        await expect(profile).to_be_visible()
        await expect(page.locator("#tech-profile-name")).to_have_text("韩梅梅")
        await expect(page.locator("#tech-photo")).to_have_js_property("naturalWidth", 300)
        await expect(page.locator("#tech-rating")).to_contain_text("★")
        await expect(page.locator("#tech-certs > li")).to_have_count(2)
        await profile.scroll_into_view_if_needed()
        await shot(page, SCREENSHOTS, f"history-order-technician{suffix(lang)}")

        # History: the finished order with "order again".
        await page.goto(f"{base}/app/customer/#")
        await page.click("#open-history")
        past = page.locator(f"#history-list > li[data-order='{order_id}']")
        await expect(past).to_be_visible()
        await expect(past.locator("button.reorder")).to_have_text(words["reorder"])
        await shot(page, SCREENSHOTS, f"history{suffix(lang)}")
        await page.goto(f"{base}/app/customer/#")

    # "Order again" places the same work at the same address, as a new order matched afresh.
    await page.click("#open-history")
    await page.locator(f"#history-list > li[data-order='{order_id}'] button.reorder").click()
    await expect(page.locator("#order-status-pill")).to_be_visible()
    new_id = page.url.split("#order/")[1]
    assert new_id != order_id
    async with committed_sessions() as session:
        placed = await session.get(Order, uuid.UUID(new_id))
        assert (placed.kind, placed.address_id) == ("repair", past_order["address_id"])
        assert placed.status not in ("completed", "cancelled", "unfulfilled")
    assert not offline.blocked
