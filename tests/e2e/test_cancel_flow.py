"""A customer cancels after the technician set out, in a real browser: the order page's dialog
shows the fee the rules set, the customer confirms it, the hold pays exactly that, and the
technician's phone shows the cancellation with the reason in his language and his
compensation. The screenshots land in test-artifacts/e2e/."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from playwright.async_api import expect
from sqlmodel import select

from settlement import audit, ledger, service as settlement
from settlement.models import Payment
from tests.e2e.support import CENTER, DESKTOP, PHONE, sign_in, shot, accepted_repair

FEE, SHARE = 3000, 2400  # the rules below: 30 yuan once he set out, 80 % of it his


@pytest.fixture
async def en_route_order(committed_sessions):  # noqa: ANN001, ANN201
    """A repair order whose technician is on his way, under rules with a cancellation fee; the
    rules in force before are published again afterwards (rule versions are never deleted)."""
    async with committed_sessions() as session:
        before = await settlement.current_rules(session)
        await settlement.publish_rules(
            session, created_by="e2e", platform_fee_bps=before.platform_fee_bps,
            platform_fee_fixed_minor=before.platform_fee_fixed_minor,
            adjustment_bps_by_stars=before.adjustment_bps_by_stars, minimum_payout_minor=0,
            payout_schedule="immediate", cancellation_fee_minor=FEE, cancellation_fee_accepted_minor=1000,
            cancellation_free_minutes=2, cancellation_technician_bps=8000)
        customer, technician, order = await accepted_repair(session, "depart")
        await session.commit()
    yield {"order_id": order.id, "customer": customer.account.email, "technician": technician.account.email,
           "technician_id": technician.technician.id}
    async with committed_sessions() as session:
        await settlement.publish_rules(
            session, created_by="e2e-restore", **{k: getattr(before, k) for k in (
                "platform_fee_bps", "platform_fee_fixed_minor", "adjustment_bps_by_stars", "minimum_payout_minor",
                "payout_schedule", "cancellation_fee_minor", "cancellation_fee_accepted_minor",
                "cancellation_free_minutes", "cancellation_technician_bps")})
        await session.commit()


async def test_customer_cancels_after_departure_sees_the_fee_and_the_technician_sees_why(
    api_worker, en_route_order, committed_sessions, new_context, offline, artifacts,  # noqa: ANN001
) -> None:
    base = api_worker(GASDISPATCH_EMBEDDED_WORKER="true", GASDISPATCH_BATCH_WINDOW_S="0.3")
    order_id = en_route_order["order_id"]

    phone = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    await phone.grant_permissions(["geolocation"], origin=base)
    await phone.set_geolocation({"longitude": CENTER[0] + 0.004, "latitude": CENTER[1], "accuracy": 8})
    tech = await phone.new_page()
    await sign_in(tech, base, "technician", en_route_order["technician"])

    desktop = await new_context(viewport=DESKTOP)
    customer = await desktop.new_page()
    await sign_in(customer, base, "customer", en_route_order["customer"])
    # Through the app's own list: a bare hash change can race the first render after signing in.
    await customer.click(f"a[href='#order/{order_id}']")
    await expect(customer.locator("#order-manage")).to_be_visible()
    await expect(customer.locator("#cancel-fee-now")).to_contain_text("30.00")
    await expect(customer.locator("#reschedule-order")).to_have_count(0)  # it would dodge the fee

    await customer.click("#cancel-order")
    dialog = customer.locator("#cancel-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#cancel-dialog-fee")).to_contain_text("取消费")
    await expect(dialog.locator("#cancel-dialog-fee")).to_contain_text("30.00")
    await expect(dialog.locator("#cancel-confirm")).to_contain_text("30.00")
    await customer.select_option("#cancel-reason", "not_home")
    await shot(customer, artifacts, "cancel-01-customer-dialog")
    await customer.click("#cancel-confirm")
    await expect(dialog).to_have_count(0)
    await expect(customer.locator("#order-status-pill")).to_have_text("已取消")
    await expect(customer.locator("#order-manage")).to_be_hidden()
    await shot(customer, artifacts, "cancel-02-customer-cancelled")

    notice = tech.locator("#notices li[data-kind=job_cancelled]")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text(f"订单 {str(order_id)[:8]} 已取消")
    await expect(notice).to_contain_text("原因：家中无人")
    await expect(notice).to_contain_text("24.00")
    await shot(tech, artifacts, "cancel-03-technician-notice")

    async with committed_sessions() as session:
        deadline = datetime.now(timezone.utc) + timedelta(seconds=20)
        while True:  # the embedded worker settles the cancellation after the request's commit
            payment = (await session.exec(select(Payment).where(Payment.order_id == order_id)
                                          .execution_options(populate_existing=True))).first()
            if (payment and payment.status == "captured") or datetime.now(timezone.utc) > deadline:
                break
            await session.rollback()
            await asyncio.sleep(0.3)
        assert (payment.status, payment.captured_minor) == ("captured", FEE)
        assert await ledger.balance(session, ledger.technician_payable(en_route_order["technician_id"])) in (-SHARE, 0)
        assert (await audit.verify_chain(session)).ok
    assert offline.blocked == []
