"""The customer's receipt and the technician's earnings, read through the API, against the ledger."""

import uuid

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from dispatch.models import Order
from kit.config import get_settings
from kit.events import drain
from settlement import ledger, service
from settlement.models import Payment
from tests.factories import CustomerCtx, TechnicianCtx, make_customer, make_staff, make_technician
from tests.settlement.support import OPS, accept, assert_ledger_balances, finalize_review, new_order

pytestmark = pytest.mark.usefixtures("settlement_handlers")

PART = {"name": "减压阀", "quantity": 1, "unit_price_minor": 5500}


async def _raised_with_a_part(client: AsyncClient, session: AsyncSession) -> tuple[Order, CustomerCtx, TechnicianCtx]:
    """An 80.00 repair whose technician asks 135.00 with a 55.00 part; the customer approves."""
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    for action in ("depart", "arrive", "start_service"):
        await dispatch.transition(session, order.id, action, OPS)
    report = {"work_done": "换减压阀", "parts": [PART], "final_price_minor": 13500, "currency": "CNY"}
    asked = await client.post(f"/v1/jobs/{order.id}/complete", headers=technician.headers, json=report)
    assert asked.status_code == 202, asked.text
    approved = await client.post(f"/v1/orders/{order.id}/price-change/approve", headers=customer.headers,
                                 json={"price_change_id": asked.json()["price_change"]["id"]})
    assert approved.status_code == 200, approved.text
    await drain(session)
    done = await client.post(f"/v1/jobs/{order.id}/complete", headers=technician.headers, json=report)
    assert done.status_code == 200, done.text
    await drain(session)
    return order, customer, technician


async def _refund(client: AsyncClient, session: AsyncSession, order: Order, amount_minor: int) -> None:
    _, admin = await make_staff(session, "admin")
    response = await client.post(f"/v1/orders/{order.id}/refunds", headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
                                 json={"amount_minor": amount_minor})
    assert response.status_code == 201, response.text


async def _settle(session: AsyncSession, order: Order, stars: int) -> None:
    await finalize_review(session, order, stars=stars)
    for settlement_id in await service.pending_transfer_ids(session):
        await service.transfer_settlement(session, settlement_id, service.get_gateway())
    await drain(session)


def _minor(money: dict) -> int:
    assert money["currency"] == "CNY"
    return money["amount_minor"]


async def test_receipt_figures_equal_the_ledger_for_a_price_raised_with_a_part(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, customer, technician = await _raised_with_a_part(client, session)
    await _refund(client, session, order, 1000)

    receipt = (await client.get(f"/v1/orders/{order.id}/receipt", headers=customer.headers)).json()

    entries = await ledger.entries_for_order(session, order.id)
    on = lambda postings, account: sum(p.amount_minor for p in postings if p.account == account)  # noqa: E731
    ledger_holds = [on(p, ledger.CUSTOMER_HOLDS) for e, p in entries if e.kind == "hold"]
    ledger_captured = sum(on(p, ledger.PROVIDER_BALANCE) for e, p in entries if e.kind == "capture")
    ledger_refunded = -sum(on(p, ledger.PROVIDER_BALANCE) for e, p in entries if e.kind == "refund")
    assert [_minor(h["amount"]) for h in receipt["holds"]] == ledger_holds == [8000, 13500]
    assert _minor(receipt["captured"]) == ledger_captured == 13500
    assert _minor(receipt["refunded"]) == ledger_refunded == 1000
    assert _minor(receipt["paid"]) == ledger_captured - ledger_refunded
    assert (_minor(receipt["held"]), _minor(receipt["released"])) == (0, 0)
    assert receipt["issued_at"] is not None
    payment = await session.get(Payment, order.id, populate_existing=True)
    assert (payment.held_minor, payment.captured_minor, payment.refunded_minor) == (13500, 13500, 1000)

    assert _minor(receipt["final_price"]) == 13500
    assert [(line["kind"], line["name"], line["quantity"], _minor(line["amount"])) for line in receipt["lines"]] == [
        ("labour", "", 1, 8000), ("part", "减压阀", 1, 5500)]
    assert sum(_minor(line["amount"]) for line in receipt["lines"]) == _minor(receipt["final_price"])
    settings = get_settings()
    assert receipt["issuer"] == {"name": settings.invoice_issuer_name, "tax_id": settings.invoice_issuer_tax_id,
                                 "address": settings.invoice_issuer_address}
    assert receipt["billed_to"] == {"name": customer.customer.name, "address": customer.address.line}

    # The order itself says the final price, to him and to the technician, beside the estimate.
    for headers in (customer.headers, technician.headers):
        shown = (await client.get(f"/v1/orders/{order.id}", headers=headers)).json()
        assert (_minor(shown["price_estimate"]), _minor(shown["final_price"])) == (8000, 13500)
        listed = (await client.get("/v1/orders", headers=headers)).json()["data"]
        assert [_minor(o["final_price"]) for o in listed if o["id"] == str(order.id)] == [13500]
    await assert_ledger_balances(session)


async def test_receipt_of_an_authorised_order_shows_the_hold_and_nothing_charged(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    receipt = (await client.get(f"/v1/orders/{order.id}/receipt", headers=customer.headers)).json()
    assert [_minor(h["amount"]) for h in receipt["holds"]] == [8000]
    assert (_minor(receipt["held"]), _minor(receipt["captured"])) == (8000, 0)
    assert receipt["issued_at"] is None and receipt["final_price"] is None and receipt["lines"] == []


async def test_receipt_is_for_the_orders_customer_operations_and_auditors_only(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, customer, technician = await _raised_with_a_part(client, session)
    stranger = await make_customer(session)
    url = f"/v1/orders/{order.id}/receipt"
    assert (await client.get(url, headers=stranger.headers)).status_code == 404
    refused = await client.get(url, headers=technician.headers)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    as_admin = (await client.get(url, headers=admin)).json()
    as_auditor = (await client.get(url, headers=auditor)).json()
    assert as_admin["billed_to"]["name"] == customer.customer.name
    assert as_auditor["billed_to"] is None  # an audit follows the money, not the household
    assert as_auditor["captured"] == as_admin["captured"] == {"amount_minor": 13500, "currency": "CNY"}
    assert (await client.post(url, headers=auditor)).status_code == 405


async def test_earnings_per_day_and_order_equal_the_ledger_and_explain_the_adjustment(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await _raised_with_a_part(client, session)
    await _refund(client, session, order, 1000)  # before the review: the base is 12,500
    await _settle(session, order, stars=5)
    await _refund(client, session, order, 2000)  # after the payout: clawed back from his transfer

    url = "/v1/technicians/me/earnings"
    response = await client.get(url, headers=technician.headers, params={"tz": "Asia/Shanghai"})
    assert response.status_code == 200, response.text
    earnings = response.json()
    [row] = earnings["orders"]
    # 12,500 base, 5 stars +5 % = 625, fee 15 % = 1,875 -> 11,250
    assert (row["order_id"], row["status"], row["stars"], row["adjustment_bps"]) == (str(order.id), "transferred", 5, 500)
    assert [_minor(row[k]) for k in ("price", "adjustment", "fee", "payout")] == [12500, 625, 1875, 11250]

    payable = ledger.technician_payable(technician.technician.id)
    receivable = ledger.technician_receivable(technician.technician.id)
    moved = {(e.kind, p.account): p.amount_minor for e, ps in await ledger.entries_for_order(session, order.id)
             for p in ps if p.account in (payable, receivable)}
    assert _minor(row["earned"]) == -moved[("settlement", payable)] == 11250
    assert _minor(row["paid_out"]) == moved[("transfer", payable)] == 11250
    assert _minor(row["owed"]) == moved[("clawback", receivable)] == 2000
    assert _minor(row["recovered"]) == -moved[("reversal", receivable)] == 2000
    [day] = earnings["days"]
    assert day["orders"] == 1
    assert [_minor(day[k]) for k in ("earned", "paid_out", "owed", "recovered")] == [11250, 11250, 2000, 2000]
    assert earnings["payable"] == [{"amount_minor": 0, "currency": "CNY"}]
    assert earnings["receivable"] == [{"amount_minor": 0, "currency": "CNY"}]
    assert earnings["rules"]["adjustment_bps_by_stars"]["5"] == 500

    other = await make_technician(session)
    mine_only = (await client.get(url, headers=other.headers)).json()
    assert (mine_only["orders"], mine_only["days"], mine_only["payable"]) == ([], [], [])


async def test_a_settlement_held_for_operations_shows_as_in_review(client: AsyncClient, session: AsyncSession) -> None:
    order, _, technician = await _raised_with_a_part(client, session)
    await _settle(session, order, stars=1)
    earnings = (await client.get("/v1/technicians/me/earnings", headers=technician.headers)).json()
    [row] = earnings["orders"]
    assert (row["status"], row["adjustment_bps"], _minor(row["payout"]), _minor(row["earned"])) == ("held", None, 0, 0)
    assert [_minor(d["in_review"]) for d in earnings["days"]] == [13500]
    assert earnings["rules"]["adjustment_bps_by_stars"]["1"] is None


@pytest.mark.parametrize("params", [{"tz": "Mars/Olympus"}, {"tz": "../etc/passwd"},
                                    {"from": "2026-12-10", "to": "2026-12-01"},
                                    {"from": "2026-01-01", "to": "2026-12-31"}, {"from": "yesterday"},
                                    {"from": "9999-12-30", "to": "9999-12-31"}, {"to": "0001-01-05"}])
async def test_earnings_refuse_an_unknown_zone_or_a_bad_period(
    client: AsyncClient, session: AsyncSession, params: dict
) -> None:
    technician = await make_technician(session)
    response = await client.get("/v1/technicians/me/earnings", headers=technician.headers, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
