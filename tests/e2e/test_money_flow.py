"""Money shown, on 360 px phones in zh-CN and English: the technician asks 135.00 for an 80.00
repair (55.00 of it a part), the customer approves it in the app, sees the final price and what
was held and charged, and opens the printable receipt, whose figures are the ledger's; after
the review the technician opens his earnings, with the quality adjustment explained. The
screenshots land in test-artifacts/e2e/ and docs/screenshots/."""

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import pytest
from playwright.async_api import expect
from sqlmodel import select

from dispatch.field import reports
from ratings import service as ratings
from ratings.models import Review
from settlement import ledger
from settlement.models import Payment, Settlement
from tests.e2e.support import CENTER, PHONE, ROOT, sign_in, shot, accepted_repair

SCREENSHOTS = ROOT / "docs" / "screenshots"
PART = {"name": "燃气减压阀", "quantity": 1, "unit_price_minor": 5500}
REPORT = reports.WorkReportIn(work_done="更换减压阀，检测无泄漏", parts=[PART], final_price_minor=13500, currency="CNY")
PHONE_OPTIONS = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "timezone_id": "Asia/Shanghai"}


@pytest.fixture
async def asking_135(committed_sessions):  # noqa: ANN001, ANN201
    """An 80.00 repair in service whose technician has asked 135.00 with a 55.00 part."""
    async with committed_sessions() as session:
        customer, technician, order = await accepted_repair(session, "depart", "arrive", "start_service")
        asked = await reports.complete(session, order.id, technician.technician.id, REPORT, datetime.now(timezone.utc))
        assert asked.price_change is not None
        await session.commit()
    return {"order_id": order.id, "customer": customer.account.email, "technician": technician.account.email,
            "technician_id": technician.technician.id}


async def until(committed_sessions, found: Callable[..., Awaitable[object]], what: str):  # noqa: ANN001, ANN201
    """Polls the database until the embedded worker has done its part (events run after commits)."""
    deadline = datetime.now(timezone.utc) + timedelta(seconds=90)
    async with committed_sessions() as session:
        while True:
            value = await found(session)
            if value:
                return value
            assert datetime.now(timezone.utc) < deadline, f"the worker did not {what}"
            await session.rollback()
            await asyncio.sleep(0.3)


async def test_customer_sees_the_final_price_and_receipt_and_technician_his_earnings(
    api_worker, asking_135, committed_sessions, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.3")
    order_id = asking_135["order_id"]

    customer = await (await new_context(**PHONE_OPTIONS)).new_page()
    await sign_in(customer, base, "customer", asking_135["customer"])
    # Through the app's own list: a bare hash change can race the first render after signing in.
    await customer.click(f"a[href='#order/{order_id}']")
    await expect(customer.locator("#price-change")).to_contain_text("135.00")
    await customer.click("#approve-price")
    await expect(customer.locator("#price-change")).to_be_hidden()

    async with committed_sessions() as session:  # the technician submits his report again
        done = await reports.complete(session, order_id, asking_135["technician_id"], REPORT, datetime.now(timezone.utc))
        assert done.report is not None
        await session.commit()

    async def captured(session):  # noqa: ANN001, ANN202
        payment = (await session.exec(select(Payment).where(Payment.order_id == order_id)
                                      .execution_options(populate_existing=True))).first()
        return payment if payment and payment.status == "captured" else None

    payment = await until(committed_sessions, captured, "capture the approved price")
    async with committed_sessions() as session:
        entries = await ledger.entries_for_order(session, order_id)
    on = lambda kind, account: [sum(p.amount_minor for p in ps if p.account == account)  # noqa: E731
                                for e, ps in entries if e.kind == kind]
    assert on("hold", ledger.CUSTOMER_HOLDS) == [8000, 13500]
    assert on("capture", ledger.PROVIDER_BALANCE) == [payment.captured_minor] == [13500]

    await customer.reload()
    await expect(customer.locator("#order-final-price")).to_contain_text("135.00")
    await expect(customer.locator("#money-hold")).to_contain_text("135.00")
    await expect(customer.locator("#money-hold")).to_contain_text("80.00")  # raised from the first hold
    await expect(customer.locator("#money-captured")).to_contain_text("135.00")
    await expect(customer.locator("#money-released")).to_contain_text("0.00")
    await expect(customer.locator("#submit-review")).to_be_visible()
    await shot(customer, artifacts, "money-01-customer-order")

    await customer.click("#open-receipt")
    receipt = customer.locator("#receipt")
    await expect(receipt.locator("h2")).to_have_text("收据")
    await expect(receipt.locator("#receipt-tax-id")).to_have_text("DEMO-TAX-ID-0000")
    await expect(receipt.locator("#receipt-lines tbody tr")).to_have_count(2)
    await expect(receipt.locator("#receipt-lines tr[data-kind=labour]")).to_contain_text("80.00")
    await expect(receipt.locator("#receipt-lines tr[data-kind=part]")).to_contain_text("燃气减压阀")
    await expect(receipt.locator("#receipt-lines tr[data-kind=part]")).to_contain_text("55.00")
    # The receipt's figures are the ledger's: 135.00 captured, nothing released or refunded.
    await expect(receipt.locator("#receipt-total")).to_contain_text("135.00")
    await expect(receipt.locator("#receipt-captured")).to_contain_text(f"{on('capture', ledger.PROVIDER_BALANCE)[0] / 100:.2f}")
    await expect(receipt.locator("#receipt-released")).to_contain_text("0.00")
    await expect(receipt.locator("#receipt-paid")).to_contain_text("135.00")
    await expect(customer.locator("#print-receipt")).to_be_visible()
    await shot(customer, artifacts, "money-02-customer-receipt")

    await customer.click(f"a[href='#order/{order_id}']")
    await customer.click("#submit-review")  # five stars by default
    await expect(customer.locator("#review-done")).to_contain_text("★★★★★")

    async def review(session):  # noqa: ANN001, ANN202
        return (await session.exec(select(Review.id).where(Review.order_id == order_id))).first()

    review_id = await until(committed_sessions, review, "record the review")
    async with committed_sessions() as session:  # the edit window's end, without waiting for the job
        assert await ratings.finalize_review(session, review_id)
        await session.commit()

    async def paid(session):  # noqa: ANN001, ANN202
        s = (await session.exec(select(Settlement).where(Settlement.order_id == order_id)
                                .execution_options(populate_existing=True))).first()
        return s if s and s.status == "transferred" else None

    settlement = await until(committed_sessions, paid, "settle and pay out")
    # 13,500 base, 5 stars +5 % = 675, fee 15 % = 2,025 -> 12,150
    assert (settlement.base_minor, settlement.adjustment_minor, settlement.payout_minor) == (13500, 675, 12150)

    phone = await new_context(**PHONE_OPTIONS)
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation({"longitude": CENTER[0] + 0.004, "latitude": CENTER[1], "accuracy": 8})
    tech = await phone.new_page()
    await sign_in(tech, base, "technician", asking_135["technician"])
    await expect(tech.locator("#done-list")).to_contain_text("135.00")
    await expect(tech.locator("#done-list")).not_to_contain_text("80.00")
    await tech.click("#earnings-open")
    row = tech.locator(f"#earnings-orders li[data-order='{order_id}']")
    await expect(row).to_contain_text("已打款")
    await expect(row).to_contain_text("+5%")
    await expect(row).to_contain_text("6.75")
    await expect(row).to_contain_text("121.50")
    await expect(tech.locator("#earnings-days")).to_contain_text("121.50")
    await expect(tech.locator("#earnings-rules")).to_contain_text("1/2★ 由运营审核")
    await expect(tech.locator("#earnings-rules")).to_contain_text("平台服务费 15%。")
    await tech.locator("#earnings").scroll_into_view_if_needed()
    await shot(tech, artifacts, "money-03-technician-earnings")

    await customer.click("#open-receipt")
    await customer.select_option("#lang-select", "en")
    await expect(customer.locator("#receipt h2")).to_have_text("Receipt")
    await expect(customer.locator("#receipt-lines tr[data-kind=labour]")).to_contain_text("Labour")
    await expect(customer.locator("#receipt-total")).to_contain_text("135.00")
    await shot(customer, artifacts, "money-04-customer-receipt-en")
    await customer.click(f"a[href='#order/{order_id}']")
    await expect(customer.locator("#order-final-price")).to_contain_text("135.00")
    await expect(customer.locator("#order-money")).to_contain_text("Authorised hold")
    await expect(customer.locator("#review-done")).to_be_visible()
    await shot(customer, artifacts, "money-05-customer-order-en")

    await tech.select_option("#lang-select", "en")
    await expect(row).to_contain_text("Paid out")
    await expect(row).to_contain_text("Rated 5★: +5% of the")
    await expect(tech.locator("#earnings-h")).to_have_text("My earnings")
    await shot(tech, artifacts, "money-06-technician-earnings-en")

    assert offline.blocked == [], f"pages reached outside the machine: {offline.blocked}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, source in (("customer-order-money", "money-01-customer-order"), ("customer-receipt", "money-02-customer-receipt"),
                         ("technician-earnings", "money-03-technician-earnings"),
                         ("customer-receipt-en", "money-04-customer-receipt-en"),
                         ("technician-earnings-en", "money-06-technician-earnings-en")):
        shutil.copyfile(artifacts / f"{source}.png", SCREENSHOTS / f"{name}.png")
