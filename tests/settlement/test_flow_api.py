"""The money flow of an order end to end through the HTTP API and the event bus."""

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from kit.config import get_settings
from kit.events import drain
from dispatch.models import Order
from settlement import handlers, ledger, service
from settlement.gateway import PaymentRequestRejected
from settlement.models import AuditAccess, LedgerEntry, Payment
from settlement.reconcile import reconcile
from settlement.stripe_gateway import StripeGateway
from tests.factories import make_customer, make_staff, make_technician
from tests.settlement.support import (
    OPS, accept, assert_ledger_balances, complete, entries_of, finalize_review, new_order,
)


pytestmark = pytest.mark.usefixtures("settlement_handlers")


async def _pay_pending(session: AsyncSession) -> None:
    for settlement_id in await service.pending_transfer_ids(session):
        assert await service.transfer_settlement(session, settlement_id, service.get_gateway())


async def test_order_is_held_captured_settled_and_transferred_and_the_ledger_reconciles(
    client: AsyncClient, session: AsyncSession
) -> None:
    # The provider stamps charges in whole seconds: start on a fresh one, so the window holds
    # this order's charge and not the one a previous test made in the same second.
    await asyncio.sleep(1.05 - time.time() % 1)
    started = datetime.now(timezone.utc).replace(microsecond=0)
    # Other suites commit orders to the same database; only this order's movement counts.
    holds_before = await ledger.balance(session, ledger.CUSTOMER_HOLDS)
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    payment = await session.get(Payment, order.id)
    assert (payment.status, payment.held_minor) == ("authorised", 8000)

    await complete(session, order, final_price_minor=7000)
    await session.refresh(payment)
    assert (payment.status, payment.captured_minor) == ("captured", 7000)
    assert await ledger.balance(session, ledger.CUSTOMER_HOLDS) == holds_before

    await finalize_review(session, order, stars=5)
    await _pay_pending(session)
    await drain(session)

    _, auditor = await make_staff(session, "auditor")
    listed = (await client.get("/v1/settlements", headers=auditor, params={"technician_id": str(technician.technician.id)})).json()
    assert len(listed["data"]) == 1
    settled = listed["data"][0]
    # 7000 base, +5 % = 350, fee 15 % of base = 1050 -> 6300
    assert (settled["base_minor"], settled["adjustment_minor"], settled["fee_minor"], settled["payout_minor"]) == (
        7000, 350, 1050, 6300)
    assert settled["status"] == "transferred" and settled["transfer_id"]
    order_state = (await client.get(f"/v1/orders/{order.id}", headers=customer.headers)).json()
    assert order_state["status"] == "settled"

    await assert_ledger_balances(session)
    assert await entries_of(session, order.id) == ["hold", "capture", "settlement", "transfer"]
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == 0
    assert await ledger.balance(session, ledger.PLATFORM_REVENUE) <= -1050
    assert await reconcile(session, service.get_gateway(), started, datetime.now(timezone.utc) + timedelta(seconds=1)) == []

    verify = (await client.get("/v1/audit/ledger/verify", headers=auditor)).json()
    assert verify["ok"] and verify["checked"] >= 4


async def test_redelivered_events_do_not_move_money_twice(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    payload = {"order_id": str(order.id), "action": "complete", "from": "in_service", "to": "completed",
               "technician_id": str(technician.technician.id), "reason": None, "payload": {}}
    await handlers.on_order_status_changed(session, payload)
    await finalize_review(session, order, stars=4)
    await finalize_review(session, order, stars=1)
    s = await service.compute_settlement(session, order_id=order.id, review_id="again", stars=3)
    assert (s.stars, s.payout_minor) == (4, 6800)  # the first finalized review wins; 8000 - 15 %
    assert await entries_of(session, order.id) == ["hold", "capture", "settlement"]


async def test_cancelling_before_work_releases_the_hold(client: AsyncClient, session: AsyncSession) -> None:
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    response = await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers, json={"reason": "changed my mind"})
    assert response.status_code == 200
    await drain(session)
    payment = await session.get(Payment, order.id)
    assert payment.status == "cancelled"
    assert await entries_of(session, order.id) == ["hold", "hold_released"]
    await assert_ledger_balances(session)


async def test_cancelling_after_departure_keeps_the_cancellation_fee_the_rules_set(
    client: AsyncClient, session: AsyncSession
) -> None:
    _, admin = await make_staff(session, "admin")
    rules = {"platform_fee_bps": 1500, "platform_fee_fixed_minor": 0, "minimum_payout_minor": 0,
             "adjustment_bps_by_stars": {"5": 500, "4": 0, "3": -1000, "2": None, "1": None},
             "payout_schedule": "immediate", "cancellation_fee_minor": 2000}
    assert (await client.post("/v1/settlement-rules", headers=admin, json=rules)).status_code == 201
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    await dispatch.transition(session, order.id, "depart", OPS)
    await client.post(f"/v1/orders/{order.id}/cancel", headers=customer.headers, json={"reason": "not home", "accepted_fee_minor": 2000})
    await drain(session)
    payment = await session.get(Payment, order.id)
    assert (payment.status, payment.captured_minor) == ("captured", 2000)
    assert await entries_of(session, order.id) == ["hold", "capture", "cancellation_fee"]
    await assert_ledger_balances(session)


async def test_low_rating_holds_the_settlement_until_operations_decide(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await finalize_review(session, order, stars=2)
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=2)
    assert s.status == "held" and await service.pending_transfer_ids(session) == []
    _, admin = await make_staff(session, "admin")
    released = await client.post(f"/v1/settlements/{s.id}/release", headers=admin, json={"adjustment_bps": -2000})
    assert released.status_code == 200, released.text
    assert released.json()["payout_minor"] == 8000 - 1600 - 1200
    await _pay_pending(session)
    assert (await session.get(Order, order.id, populate_existing=True)).status == "settled"


async def test_refund_after_settlement_reverses_the_transfer_and_records_the_rest_as_receivable(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await finalize_review(session, order, stars=4)
    await _pay_pending(session)
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=4)
    gateway = service.get_gateway()
    gateway.withdraw(account_id=s.connected_account_id, amount_minor=6000)  # he kept 800 on his balance
    _, admin = await make_staff(session, "admin")
    response = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": "r1"},
                                 json={"amount_minor": 3000})
    assert response.status_code == 201, response.text
    replay = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": "r1"},
                               json={"amount_minor": 3000})
    assert replay.json() == response.json()
    receivable = ledger.technician_receivable(technician.technician.id)
    # 3000 clawed back: his 800 balance reversed, the other 2200 owed by him
    assert await ledger.balance(session, receivable) == 2200
    assert await entries_of(session, order.id) == [
        "hold", "capture", "settlement", "transfer", "refund", "clawback", "reversal"]
    assert gateway.available_balance(account_id=s.connected_account_id, currency="CNY") == 0
    await assert_ledger_balances(session)


async def test_receivable_is_collected_from_the_technicians_next_payout(client: AsyncClient, session: AsyncSession) -> None:
    started = datetime.now(timezone.utc)  # the provider keeps earlier tests' rows
    first, _, technician = await new_order(client, session)
    await accept(session, first, technician)
    await complete(session, first)
    await finalize_review(session, first, stars=4)
    await _pay_pending(session)
    s1 = await service.compute_settlement(session, order_id=first.id, review_id="x", stars=4)
    gateway = service.get_gateway()
    gateway.withdraw(account_id=s1.connected_account_id, amount_minor=6800)  # nothing left to reverse
    await service.refund_order(session, first.id, amount_minor=3000, request_key="r", gateway=gateway)
    receivable = ledger.technician_receivable(technician.technician.id)
    assert await ledger.balance(session, receivable) == 3000

    second, _, _ = await new_order(client, session, technician=technician)
    await accept(session, second, technician)
    await complete(session, second)
    await finalize_review(session, second, stars=4)
    await _pay_pending(session)
    s2 = await service.compute_settlement(session, order_id=second.id, review_id="y", stars=4)
    assert (s2.status, s2.payout_minor, s2.receivable_offset_minor) == ("transferred", 6800, 3000)
    assert await entries_of(session, second.id) == ["hold", "capture", "settlement", "receivable_offset", "transfer"]
    transfer = (await session.exec(select(LedgerEntry).where(LedgerEntry.settlement_id == s2.id,
                                                             LedgerEntry.kind == "transfer"))).one()
    assert ledger.Posting(ledger.PROVIDER_BALANCE, -3800, "CNY") in await ledger.postings_of(session, transfer.id)
    assert gateway.available_balance(account_id=s2.connected_account_id, currency="CNY") == 3800
    assert await ledger.balance(session, receivable) == 0
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == 0
    await assert_ledger_balances(session)
    assert await reconcile(session, gateway, started, datetime.now(timezone.utc) + timedelta(seconds=1)) == []

    mine = await client.get("/v1/technicians/me/settlements", headers=technician.headers, params={"limit": 1})
    assert mine.status_code == 200, mine.text
    assert [(x["order_id"], x["receivable_offset_minor"]) for x in mine.json()["data"]] == [(str(second.id), 3000)]
    rest = await client.get("/v1/technicians/me/settlements", headers=technician.headers,
                            params={"limit": 1, "cursor": mine.json()["next_cursor"]})
    older = rest.json()["data"][0]
    assert (older["order_id"], older["clawback_minor"], older["status"]) == (str(first.id), 3000, "transferred")
    assert older["arithmetic"]["payout_minor"] == 6800 and rest.json()["next_cursor"] is None


async def test_payout_smaller_than_the_receivable_is_kept_whole_and_nothing_is_transferred(
    client: AsyncClient, session: AsyncSession
) -> None:
    first, _, technician = await new_order(client, session)
    await accept(session, first, technician)
    await complete(session, first)
    await finalize_review(session, first, stars=4)
    await _pay_pending(session)
    s1 = await service.compute_settlement(session, order_id=first.id, review_id="x", stars=4)
    gateway = service.get_gateway()
    gateway.withdraw(account_id=s1.connected_account_id, amount_minor=6800)
    await service.refund_order(session, first.id, amount_minor=8000, request_key="all", gateway=gateway)
    receivable = ledger.technician_receivable(technician.technician.id)
    assert await ledger.balance(session, receivable) == 6800  # he bears at most his payout

    second, _, _ = await new_order(client, session, technician=technician)
    await accept(session, second, technician)
    await complete(session, second, final_price_minor=5000)
    await finalize_review(session, second, stars=4)
    await _pay_pending(session)
    s2 = await service.compute_settlement(session, order_id=second.id, review_id="y", stars=4)
    assert (s2.status, s2.payout_minor, s2.receivable_offset_minor, s2.transfer_id) == ("transferred", 4250, 4250, None)
    assert await entries_of(session, second.id) == ["hold", "capture", "settlement", "receivable_offset"]
    assert await ledger.balance(session, receivable) == 6800 - 4250
    assert (await session.get(Order, second.id, populate_existing=True)).status == "settled"
    await assert_ledger_balances(session)


async def test_approved_price_above_the_hold_is_charged_in_full_and_settled_on(
    client: AsyncClient, session: AsyncSession
) -> None:
    started = datetime.now(timezone.utc)  # the provider keeps earlier tests' rows
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    for action in ("depart", "arrive", "start_service"):
        await dispatch.transition(session, order.id, action, OPS)
    report = {"work_done": "replaced the regulator", "final_price_minor": 9500, "currency": "CNY"}
    url = f"/v1/jobs/{order.id}/complete"
    asked = await client.post(url, headers=technician.headers, json=report)
    assert asked.status_code == 202, asked.text
    approved = await client.post(f"/v1/orders/{order.id}/price-change/approve", headers=customer.headers,
                                 json={"price_change_id": asked.json()["price_change"]["id"]})
    assert approved.status_code == 200, approved.text
    await drain(session)
    payment = await session.get(Payment, order.id, populate_existing=True)
    assert (payment.status, payment.held_minor) == ("authorised", 9500)

    done = await client.post(url, headers=technician.headers, json=report)
    assert done.status_code == 200, done.text
    await drain(session)
    await session.refresh(payment)
    assert (payment.status, payment.captured_minor) == ("captured", 9500)
    await finalize_review(session, order, stars=5)
    await _pay_pending(session)
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=5)
    # 9500 base, +5 % = 475, fee 15 % = 1425 -> 8550, paid out of the one 9500 charge
    assert (s.base_minor, s.payout_minor, s.status) == (9500, 8550, "transferred")
    assert await entries_of(session, order.id) == [
        "hold", "hold", "hold_released", "capture", "settlement", "transfer"]
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == 0
    await assert_ledger_balances(session)

    account, auditor = await make_staff(session, "auditor")
    period = {"from": started.isoformat(), "to": (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()}
    checked = await client.get("/v1/audit/reconcile", headers=auditor, params=period)
    assert checked.status_code == 200, checked.text
    assert checked.json()["ok"] and checked.json()["mismatches"] == []
    logged = (await session.exec(select(AuditAccess.action).where(AuditAccess.account_id == account.id))).all()
    assert logged == ["reconcile"]


async def test_declined_card_for_the_approved_price_keeps_the_hold_and_captures_it(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    monkeypatch.setattr(get_settings(), "settlement_payment_method_ref", "pm_card_chargeDeclined")
    await complete(session, order, final_price_minor=9500)
    payment = await session.get(Payment, order.id, populate_existing=True)
    assert (payment.status, payment.held_minor, payment.captured_minor) == ("captured", 8000, 8000)
    assert await entries_of(session, order.id) == ["hold", "capture"]
    await assert_ledger_balances(session)


async def test_reconcile_route_reports_a_provider_movement_missing_from_the_ledger(
    client: AsyncClient, session: AsyncSession
) -> None:
    started = datetime.now(timezone.utc)  # the provider keeps earlier tests' rows
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    payment = await session.get(Payment, order.id)
    dispute_id = service.get_gateway().open_dispute(charge_id=payment.charge_id, amount_minor=1000)  # webhook not in
    _, admin = await make_staff(session, "admin")
    period = {"from": started.isoformat(), "to": (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()}
    found = (await client.get("/v1/audit/reconcile", headers=admin, params=period)).json()
    assert not found["ok"]
    assert found["mismatches"] == [{"provider_object_id": dispute_id, "problem": "missing_in_ledger",
                                    "ledger_minor": None, "provider_minor": -1000, "currency": "CNY"}]
    reversed_period = await client.get("/v1/audit/reconcile", headers=admin,
                                       params={"from": period["to"], "to": period["from"]})
    assert reversed_period.status_code == 422


async def test_raised_hold_through_stripe_captures_the_approved_price_from_one_charge(
    session: AsyncSession, gateway: StripeGateway
) -> None:
    customer = await make_customer(session)
    technician = await make_technician(session)
    order = await dispatch.create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                        kind="repair", actor=OPS)
    for action in ("start_matching", "offer"):
        await dispatch.transition(session, order.id, action, OPS)
    await dispatch.transition(session, order.id, "accept", OPS, set_values={"technician_id": technician.technician.id})
    first = await service.place_hold(session, order.id, gateway)
    first_hold = first.hold_id
    await service.raise_hold(session, order.id, 9500, gateway)
    await service.raise_hold(session, order.id, 9500, gateway)  # a redelivered approval
    payment = await service.capture_order(session, order.id, 9500, gateway)
    assert (payment.captured_minor, payment.status) == (9500, "captured") and payment.hold_id != first_hold
    with pytest.raises(PaymentRequestRejected):  # the replaced hold was released
        gateway.capture(hold_id=first_hold, amount_minor=100, idempotency_key=f"test:{first_hold}")
    assert await entries_of(session, order.id) == ["hold", "hold", "hold_released", "capture"]
    await assert_ledger_balances(session)


async def test_refund_beyond_the_captured_amount_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    _, admin = await make_staff(session, "admin")
    response = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": "too-much"},
                                 json={"amount_minor": 9000})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_order_refunded_in_full_before_its_review_settles_at_zero_without_a_ledger_entry(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    await service.refund_order(session, order.id, amount_minor=8000, request_key="all", gateway=service.get_gateway())
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=4)
    assert (s.base_minor, s.payout_minor, s.status) == (0, 0, "transferred")
    assert "settlement" not in await entries_of(session, order.id)
    await assert_ledger_balances(session)
