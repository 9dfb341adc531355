"""Issue #13, settlement: forged but correctly signed webhooks book nothing, money back never
exceeds the capture, failing inbox events end in a dead letter, CSV exports cannot carry
spreadsheet formulas, rules cannot pay out more than the capture, and auditors read only what an
audit needs, every read access-logged."""

import csv
import io
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import structlog
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from structlog.testing import capture_logs

from app.asgi import create_app
from dispatch import service as dispatch
from kit.events import drain
from settlement import ledger, service, webhooks
from settlement.audit import csv_cell
from settlement.errors import PayoutExceedsCapture, RefundExceedsCapture
from settlement.ledger import Posting
from settlement.models import AuditAccess, Payment, Settlement, WebhookInbox
from settlement.rules import Rules, compute
from tests.factories import make_staff
from tests.settlement.support import OPS, accept, complete, entries_of, finalize_review, new_order

DEAD_LETTERED = "gasdispatch_settlement_webhooks_dead_lettered_total"


@pytest.fixture(autouse=True)
def settlement_handlers() -> Iterator[None]:
    """Settlement subscribed to its events for one test, as the app lifespan does."""
    from kit.events import unsubscribe
    from settlement import handlers

    handlers.register()
    yield
    unsubscribe("dispatch.order_status_changed", handlers.on_order_status_changed)
    unsubscribe("field.price_change_approved", handlers.on_price_change_approved)
    unsubscribe("ratings.review_finalized", handlers.on_review_finalized)


def _event(type_: str, obj: dict) -> dict:
    return {"id": f"evt_forged_{uuid.uuid4().hex[:12]}", "object": "event", "type": type_,
            "created": int(time.time()), "data": {"object": obj}}


async def _deliver(client: AsyncClient, event: dict) -> None:
    body, signature = service.get_gateway().signed(event)  # signed with the real secret
    response = await client.post("/v1/webhooks/stripe", content=body,
                                 headers={"Stripe-Signature": signature, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


async def _inbox(session: AsyncSession, event: dict) -> WebhookInbox:
    return (await session.exec(select(WebhookInbox).where(WebhookInbox.event_id == event["id"])
                               .execution_options(populate_existing=True))).one()


def _dead_lettered(type_: str, reason: str) -> float:
    return REGISTRY.get_sample_value(DEAD_LETTERED, {"type": type_, "reason": reason}) or 0.0


async def _captured_order(client: AsyncClient, session: AsyncSession):  # noqa: ANN202
    order, customer, technician = await new_order(client, session)
    await accept(session, order, technician)
    await complete(session, order)
    return order, technician, await session.get(Payment, order.id)


async def _transferred_order(client: AsyncClient, session: AsyncSession):  # noqa: ANN202
    order, technician, payment = await _captured_order(client, session)
    await finalize_review(session, order, stars=4)
    for settlement_id in await service.pending_transfer_ids(session):
        await service.transfer_settlement(session, settlement_id, service.get_gateway())
    return order, technician, payment


# -- 1. forged webhooks ---------------------------------------------------------------------------


async def test_refund_webhook_whose_amount_differs_from_the_providers_refund_is_not_booked(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, payment = await _captured_order(client, session)
    real = service.get_gateway().refund(charge_or_hold_id=payment.charge_id, amount_minor=500,
                                        idempotency_key=f"dashboard:{uuid.uuid4()}")
    before = _dead_lettered("charge.refunded", "mismatch")
    forged = _event("charge.refunded", {"id": payment.charge_id, "object": "charge", "refunds": {"data": [
        {"id": real.id, "amount": 7000, "charge": payment.charge_id, "currency": "cny"}]}})

    await _deliver(client, forged)

    await session.refresh(payment)
    assert payment.refunded_minor == 0 and "refund" not in await entries_of(session, order.id)
    row = await _inbox(session, forged)
    assert row.processed_at is None and row.dead_lettered_at is not None
    assert _dead_lettered("charge.refunded", "mismatch") == before + 1


async def test_refund_webhook_naming_a_refund_the_provider_does_not_have_is_not_booked(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, payment = await _captured_order(client, session)
    forged = _event("charge.refunded", {"id": payment.charge_id, "object": "charge", "refunds": {"data": [
        {"id": "re_forged0000000001", "amount": 3000, "charge": payment.charge_id, "currency": "cny"}]}})

    await _deliver(client, forged)

    await session.refresh(payment)
    assert payment.refunded_minor == 0 and "refund" not in await entries_of(session, order.id)
    assert (await _inbox(session, forged)).dead_lettered_at is not None


async def test_refund_webhook_books_the_providers_amount_for_a_real_refund(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, payment = await _captured_order(client, session)
    gateway = service.get_gateway()
    real = gateway.refund(charge_or_hold_id=payment.charge_id, amount_minor=500,
                          idempotency_key=f"dashboard:{uuid.uuid4()}")
    event = next(e for e in reversed(gateway.events()) if e["type"] == "charge.refunded"
                 and e["data"]["object"]["id"] == payment.charge_id)

    await _deliver(client, event)

    await session.refresh(payment)
    assert payment.refunded_minor == real.amount_minor == 500
    assert (await _inbox(session, event)).processed_at is not None


async def test_dispute_webhook_whose_amount_differs_from_the_providers_dispute_is_not_booked(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, payment = await _captured_order(client, session)
    dispute_id = service.get_gateway().open_dispute(charge_id=payment.charge_id, amount_minor=1000)
    forged = _event("charge.dispute.created", {"id": dispute_id, "object": "dispute", "charge": payment.charge_id,
                                               "amount": 8000, "currency": "cny"})

    await _deliver(client, forged)

    await session.refresh(payment)
    assert payment.refunded_minor == 0 and "dispute" not in await entries_of(session, order.id)
    assert (await _inbox(session, forged)).dead_lettered_at is not None


async def test_reversal_webhook_naming_a_reversal_the_provider_does_not_have_is_not_booked(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, technician, _ = await _transferred_order(client, session)
    transfer_id = (await session.exec(select(Settlement.transfer_id).where(Settlement.order_id == order.id))).one()
    assert transfer_id is not None
    forged = _event("transfer.reversed", {"id": transfer_id, "object": "transfer", "reversals": {"data": [
        {"id": "trr_forged000000001", "amount": 3000, "transfer": transfer_id, "currency": "cny"}]}})

    await _deliver(client, forged)

    assert "reversal" not in await entries_of(session, order.id)
    assert await ledger.balance(session, ledger.technician_payable(technician.technician.id)) == 0
    assert (await _inbox(session, forged)).dead_lettered_at is not None


async def test_money_back_beyond_what_is_left_of_the_capture_is_refused(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, payment = await _captured_order(client, session)
    await service.refund_order(session, order.id, amount_minor=6000, request_key="first",
                               gateway=service.get_gateway())
    left = payment.captured_minor - payment.refunded_minor
    assert left == 2000

    with pytest.raises(RefundExceedsCapture):
        await service.record_money_back(session, payment, provider_object_id="re_beyond000000001",
                                        amount_minor=left + 1, kind="refund", gateway=service.get_gateway())

    assert not await ledger.has_provider_object(session, "re_beyond000000001")
    assert payment.refunded_minor == 6000


# -- 1. inbox retries: backoff, limit, dead letter ------------------------------------------------


async def test_inbox_event_failing_every_time_is_dead_lettered_after_the_last_attempt_with_growing_backoff(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refund for a charge that is never recorded: handling fails on every attempt.
    event = _event("charge.refunded", {"id": f"ch_unknown{uuid.uuid4().hex[:10]}", "object": "charge"})
    before = _dead_lettered("charge.refunded", "attempts_exhausted")
    gateway = service.get_gateway()
    await _deliver(client, event)
    row = await _inbox(session, event)
    assert row.attempts == 1

    await webhooks.process_pending(session, gateway)  # not due yet: the backoff holds it back
    assert (await _inbox(session, event)).attempts == 1

    delays = []
    with capture_logs() as logs:
        monkeypatch.setattr(webhooks, "log", structlog.get_logger(webhooks.__name__))  # bound inside the capture
        while row.dead_lettered_at is None:
            delays.append(row.next_attempt_at - datetime.now(timezone.utc))
            row.next_attempt_at = datetime.now(timezone.utc) - timedelta(seconds=1)  # time passes
            session.add(row)
            await session.flush()
            await webhooks.process_pending(session, gateway)
            row = await _inbox(session, event)
            assert row.attempts <= webhooks.MAX_ATTEMPTS

    assert row.attempts == webhooks.MAX_ATTEMPTS and row.processed_at is None and row.next_attempt_at is None
    assert len(delays) == webhooks.MAX_ATTEMPTS - 1
    assert all(later > earlier for earlier, later in zip(delays, delays[1:])
               if later < webhooks.LONGEST_RETRY - timedelta(seconds=5))
    assert delays[0] > timedelta(seconds=20)
    assert _dead_lettered("charge.refunded", "attempts_exhausted") == before + 1
    assert [(e["log_level"], e["attempts"]) for e in logs
            if e["event"] == "settlement.webhook_dead_lettered" and e["event_id"] == event["id"]] == [
        ("error", webhooks.MAX_ATTEMPTS)]

    await webhooks.process_pending(session, gateway)  # a dead letter is left for operations
    assert (await _inbox(session, event)).attempts == webhooks.MAX_ATTEMPTS


# -- 1. CSV exports -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cell_starting_like_a_formula_is_escaped(text: str) -> None:
    assert csv_cell(text) == "'" + text


def test_csv_numbers_stay_numbers() -> None:
    assert csv_cell(-8000) == -8000 and csv_cell("CNY") == "CNY"


async def test_ledger_export_escapes_a_name_starting_with_a_formula(client: AsyncClient, session: AsyncSession) -> None:
    formula = "=cmd|' /C calc'!A0"
    await ledger.post(session, business_key=formula, kind="adjustment", provider_object_id="@SUM(A1)", postings=[
        Posting(formula, 100, "CNY"), Posting("+evil", -100, "CNY")])
    _, auditor = await make_staff(session, "auditor")
    now = datetime.now(timezone.utc)
    response = await client.get("/v1/audit/ledger.csv", headers=auditor, params={
        "from": (now - timedelta(minutes=5)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()})
    assert response.status_code == 200, response.text

    rows = [r for r in csv.DictReader(io.StringIO(response.text)) if r["kind"] == "adjustment"]
    assert {r["account"] for r in rows} == {"'" + formula, "'+evil"}
    assert {r["business_key"] for r in rows} == {"'" + formula}
    assert {r["provider_object_id"] for r in rows} == {"'@SUM(A1)"}
    assert {r["amount_minor"] for r in rows} == {"100", "-100"}  # numbers are not escaped
    assert not any(cell.startswith(("=", "+", "@")) for line in csv.reader(io.StringIO(response.text))
                   for cell in line)


# -- 9. rules cannot pay out more than the capture ------------------------------------------------


def _rules_body(**overrides: object) -> dict:
    return {"platform_fee_bps": 1500, "platform_fee_fixed_minor": 0, "minimum_payout_minor": 0,
            "adjustment_bps_by_stars": {"5": 500, "4": 0, "3": -1000, "2": None, "1": None},
            "payout_schedule": "immediate", "cancellation_fee_minor": 0, **overrides}


@pytest.mark.parametrize("overrides", [
    {"adjustment_bps_by_stars": {"5": 20_000, "4": 0, "3": 0, "2": None, "1": None}},
    {"adjustment_bps_by_stars": {"5": 1501, "4": 0, "3": 0, "2": None, "1": None}},  # above the fee
    {"adjustment_bps_by_stars": {"5": 10**30, "4": 0, "3": 0, "2": None, "1": None}},
    {"adjustment_bps_by_stars": {"5": 0, "4": 0, "3": -10_001, "2": None, "1": None}},
    {"platform_fee_fixed_minor": 10**20},
    {"cancellation_fee_minor": 10**20},
])
async def test_rules_that_could_pay_out_more_than_the_capture_are_refused_as_a_problem(
    client: AsyncClient, session: AsyncSession, overrides: dict
) -> None:
    _, admin = await make_staff(session, "admin")
    response = await client.post("/v1/settlement-rules", headers=admin, json=_rules_body(**overrides))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_rules_at_the_bounds_are_accepted(client: AsyncClient, session: AsyncSession) -> None:
    _, admin = await make_staff(session, "admin")
    body = _rules_body(adjustment_bps_by_stars={"5": 1500, "4": 0, "3": -10_000, "2": None, "1": None})
    response = await client.post("/v1/settlement-rules", headers=admin, json=body)
    assert response.status_code == 201, response.text


async def test_releasing_a_held_settlement_above_the_capture_is_refused(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, _ = await _captured_order(client, session)
    await finalize_review(session, order, stars=2)
    s = await service.compute_settlement(session, order_id=order.id, review_id="x", stars=2)
    assert s.status == "held"
    _, admin = await make_staff(session, "admin")
    response = await client.post(f"/v1/settlements/{s.id}/release", headers=admin, json={"adjustment_bps": 10_000})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/rules-out-of-bounds"


def test_payout_computation_refuses_a_payout_above_the_base() -> None:
    rules = Rules(version=99, platform_fee_bps=1500, platform_fee_fixed_minor=0,
                  adjustment_bps_by_stars={"5": 20_000}, minimum_payout_minor=0, payout_schedule="immediate",
                  cancellation_fee_minor=0)
    with pytest.raises(PayoutExceedsCapture):
        compute(rules, base_minor=8000, stars=5)


# -- 13. auditors: minimal data, every read logged ------------------------------------------------


async def test_evidence_carries_no_private_data_from_the_order_events(
    client: AsyncClient, session: AsyncSession
) -> None:
    order, _, technician = await new_order(client, session)
    await accept(session, order, technician)
    for action in ("depart", "arrive", "start_service"):
        await dispatch.transition(session, order.id, action, OPS)
    await dispatch.transition(session, order.id, "complete", OPS, payload={
        "report_id": "r-1", "customer_phone": "13800138000", "address_text": "No. 8 Private Lane"})
    await drain(session)
    await finalize_review(session, order, stars=4)
    settlement_id = service.settlement_id_for(order.id)
    _, auditor = await make_staff(session, "auditor")

    response = await client.get(f"/v1/settlements/{settlement_id}/evidence", headers=auditor)

    assert response.status_code == 200, response.text
    assert "13800138000" not in response.text and "Private Lane" not in response.text
    completed = next(e for e in response.json()["timeline"] if e["action"] == "complete")
    assert completed["payload"] == {"report_id": "r-1"}


def _bearer_get_routes() -> list[str]:
    """GET path templates that take a bearer token, from the OpenAPI document."""
    spec = create_app().openapi()
    return sorted(path for path, ops in spec["paths"].items() if ops.get("get", {}).get("security"))


async def test_every_auditor_read_writes_an_access_log_row(client: AsyncClient, session: AsyncSession) -> None:
    order, technician, _ = await _transferred_order(client, session)
    known = {"order_id": order.id, "technician_id": technician.technician.id,
             "settlement_id": service.settlement_id_for(order.id)}
    account, auditor = await make_staff(session, "auditor")
    now = datetime.now(timezone.utc)
    period = {"from": (now - timedelta(minutes=5)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
    read = []
    logged = select(func.count()).select_from(AuditAccess).where(AuditAccess.account_id == account.id)
    for path in _bearer_get_routes():
        concrete = re.sub(r"\{([a-z_]+)\}", lambda m: str(known.get(m.group(1), uuid.uuid4())), path)
        before = (await session.exec(logged)).one()
        response = await client.get(concrete, headers=auditor, params=period if "/audit/" in path else None)
        if response.status_code >= 300:
            continue
        read.append(path)
        assert (await session.exec(logged)).one() == before + 1, path
    # Not vacuous: the auditor read the settlement surface and other packages' routes.
    assert {"/v1/settlements/{settlement_id}/evidence", "/v1/audit/ledger.csv", "/v1/orders/{order_id}",
            "/v1/devices", "/v1/hazards", "/v1/technicians/{technician_id}"} <= set(read), read


async def test_an_auditor_read_with_a_nul_in_its_query_is_logged_not_a_server_error(
    client: AsyncClient, session: AsyncSession,
) -> None:
    _, auditor = await make_staff(session, "auditor")
    for path in ("/v1/appeals", "/v1/notifications", "/v1/telemetry-quarantine"):
        response = await client.get(path, headers=auditor, params={"odd\x00key": "odd\x00value"})
        assert response.status_code < 500, (path, response.text)
