"""Contract tests for StripeGateway, run against the local test server and, when
STRIPE_TEST_SECRET_KEY is set, against Stripe test mode."""

import hashlib
import hmac
import json
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from settlement.gateway import (
    CardDeclined,
    HoldStatus,
    IdempotencyConflict,
    InvalidWebhook,
    PaymentObjectNotFound,
    PaymentRequestRejected,
)
from settlement.stripe_gateway import StripeGateway

CURRENCY = "USD"
VISA = "pm_card_visa"
# Attaches fine but every charge is declined, in Stripe test mode and in localstripe.
DECLINING_CARD = "pm_card_chargeCustomerFail"


def _key(purpose: str) -> str:
    return f"test:{uuid.uuid4().hex}:{purpose}:v1"


def _hold(gateway, amount_minor=1000, order_id=None, key=None):
    return gateway.authorise(
        order_id=order_id or uuid.uuid4().hex,
        amount_minor=amount_minor,
        currency=CURRENCY,
        customer_ref=None,
        payment_method_ref=VISA,
        idempotency_key=key or _key("hold"),
    )


def _captured(gateway, held=1000, captured=600):
    hold = _hold(gateway, held)
    return hold, gateway.capture(hold_id=hold.id, amount_minor=captured, idempotency_key=_key("capture"))


@pytest.fixture
def account_id(gateway, backend) -> str:
    if backend == "localstripe":
        return gateway.create_connected_account(
            technician_id=uuid.uuid4().hex, email="tech@example.com", idempotency_key=_key("account")
        ).id
    # A new Express account cannot receive transfers until it finishes hosted onboarding.
    onboarded = os.environ.get("STRIPE_TEST_CONNECTED_ACCOUNT")
    if not onboarded:
        pytest.skip("STRIPE_TEST_CONNECTED_ACCOUNT (an onboarded test account) not set")
    return onboarded


def _transfer(gateway, account_id, charge_id, amount_minor, group, key=None):
    return gateway.transfer(
        account_id=account_id,
        amount_minor=amount_minor,
        currency=CURRENCY,
        transfer_group=group,
        source_charge_id=charge_id,
        idempotency_key=key or _key("transfer"),
    )


# -- holds, captures, refunds ------------------------------------------------------------


def test_authorise_places_a_manual_capture_hold(gateway):
    order_id = uuid.uuid4().hex

    hold = _hold(gateway, 1250, order_id=order_id)

    assert (hold.order_id, hold.amount_minor, hold.currency) == (order_id, 1250, CURRENCY)
    assert hold.status is HoldStatus.AUTHORISED
    assert hold.charge_id.startswith("ch_")


def test_declined_card_raises_card_declined(gateway):
    with pytest.raises(CardDeclined) as declined:
        gateway.authorise(
            order_id=uuid.uuid4().hex,
            amount_minor=1000,
            currency=CURRENCY,
            customer_ref=None,
            payment_method_ref=DECLINING_CARD,
            idempotency_key=_key("hold"),
        )
    assert declined.value.code == "card_declined"


def test_capturing_less_than_the_hold_captures_only_that_amount(gateway):
    hold, capture = _captured(gateway, held=1000, captured=600)

    assert (capture.hold_id, capture.charge_id) == (hold.id, hold.charge_id)
    assert (capture.amount_minor, capture.currency) == (600, CURRENCY)


def test_capturing_more_than_the_hold_is_rejected(gateway):
    hold = _hold(gateway, 1000)

    with pytest.raises(PaymentRequestRejected):
        gateway.capture(hold_id=hold.id, amount_minor=1001, idempotency_key=_key("capture"))


def test_cancelled_hold_cannot_be_captured(gateway):
    hold = _hold(gateway)

    cancelled = gateway.cancel_hold(hold_id=hold.id, idempotency_key=_key("cancel"))

    assert cancelled.status is HoldStatus.CANCELLED
    with pytest.raises(PaymentRequestRejected):
        gateway.capture(hold_id=hold.id, amount_minor=500, idempotency_key=_key("capture"))


def test_partial_refunds_stop_at_the_captured_amount(gateway):
    hold, capture = _captured(gateway, held=1000, captured=600)

    first = gateway.refund(charge_or_hold_id=hold.id, amount_minor=200, idempotency_key=_key("refund"))
    with pytest.raises(PaymentRequestRejected):
        gateway.refund(charge_or_hold_id=capture.charge_id, amount_minor=401, idempotency_key=_key("refund"))
    rest = gateway.refund(charge_or_hold_id=capture.charge_id, amount_minor=400, idempotency_key=_key("refund"))

    assert (first.charge_id, first.amount_minor, first.currency) == (capture.charge_id, 200, CURRENCY)
    assert (rest.charge_id, rest.amount_minor) == (capture.charge_id, 400)


def test_retrieved_charge_has_the_captured_amount_and_every_refund(gateway):
    hold, capture = _captured(gateway, held=1000, captured=600)
    first = gateway.refund(charge_or_hold_id=capture.charge_id, amount_minor=150, idempotency_key=_key("refund"))
    second = gateway.refund(charge_or_hold_id=capture.charge_id, amount_minor=50, idempotency_key=_key("refund"))

    charge = gateway.retrieve_charge(capture.charge_id)

    assert (charge.id, charge.captured_minor, charge.currency) == (capture.charge_id, 600, CURRENCY)
    assert {(r.id, r.amount_minor) for r in charge.refunds} == {(first.id, 150), (second.id, 50)}


def test_retrieving_an_unknown_charge_is_not_found(gateway):
    with pytest.raises(PaymentObjectNotFound):
        gateway.retrieve_charge("ch_doesnotexist0000")


# -- connected accounts, transfers, reversals ---------------------------------------------


def test_created_account_belongs_to_the_technician(gateway):
    technician_id = uuid.uuid4().hex

    account = gateway.create_connected_account(
        technician_id=technician_id, email="tech@example.com", idempotency_key=_key("account")
    )

    assert account.id.startswith("acct_")
    assert account.technician_id == technician_id


def test_onboarded_account_can_receive_transfers(gateway, account_id):
    assert gateway.account_can_receive_transfers(account_id) is True


def test_account_without_transfers_capability_cannot_receive_transfers(gateway, local_api):
    created = local_api.post("/v1/accounts", data={"type": "express", "metadata[technician_id]": "t"})
    created.raise_for_status()

    assert gateway.account_can_receive_transfers(created.json()["id"]) is False


def test_transfer_pays_the_technician_out_of_the_captured_charge(gateway, account_id):
    hold, capture = _captured(gateway, held=1000, captured=600)

    transfer = _transfer(gateway, account_id, capture.charge_id, 500, hold.order_id)

    assert transfer.id.startswith("tr_")
    assert (transfer.account_id, transfer.amount_minor, transfer.currency) == (account_id, 500, CURRENCY)
    assert (transfer.transfer_group, transfer.source_charge_id) == (hold.order_id, capture.charge_id)
    assert transfer.amount_reversed_minor == 0


def test_transfers_cannot_exceed_what_is_left_of_the_charge(gateway, account_id):
    hold, capture = _captured(gateway, held=1000, captured=600)
    _transfer(gateway, account_id, capture.charge_id, 500, hold.order_id)

    with pytest.raises(PaymentRequestRejected):
        _transfer(gateway, account_id, capture.charge_id, 101, hold.order_id)


def test_partial_reversals_stop_at_the_transferred_amount(gateway, account_id):
    hold, capture = _captured(gateway)
    key = _key("transfer")
    transfer = _transfer(gateway, account_id, capture.charge_id, 500, hold.order_id, key=key)

    first = gateway.reverse_transfer(transfer_id=transfer.id, amount_minor=200, idempotency_key=_key("rev"))
    with pytest.raises(PaymentRequestRejected):
        gateway.reverse_transfer(transfer_id=transfer.id, amount_minor=301, idempotency_key=_key("rev"))
    gateway.reverse_transfer(transfer_id=transfer.id, amount_minor=300, idempotency_key=_key("rev"))

    assert (first.transfer_id, first.amount_minor, first.currency) == (transfer.id, 200, CURRENCY)
    found = gateway.find_transfer(transfer_group=hold.order_id, idempotency_key=key)
    assert found is not None and found.amount_reversed_minor == 500


def test_retrieved_transfer_lists_every_reversal(gateway, account_id):
    hold, capture = _captured(gateway)
    transfer = _transfer(gateway, account_id, capture.charge_id, 500, hold.order_id)
    first = gateway.reverse_transfer(transfer_id=transfer.id, amount_minor=120, idempotency_key=_key("rev"))
    second = gateway.reverse_transfer(transfer_id=transfer.id, amount_minor=80, idempotency_key=_key("rev"))

    retrieved = gateway.retrieve_transfer(transfer.id)

    assert (retrieved.id, retrieved.amount_minor, retrieved.amount_reversed_minor) == (transfer.id, 500, 200)
    assert {(r.id, r.amount_minor) for r in retrieved.reversals} == {(first.id, 120), (second.id, 80)}


# -- idempotency and late retries -------------------------------------------------------


def test_same_key_twice_creates_one_hold(gateway):
    order_id, key = uuid.uuid4().hex, _key("hold")

    first = _hold(gateway, order_id=order_id, key=key)
    second = _hold(gateway, order_id=order_id, key=key)

    assert second == first


def test_same_key_twice_creates_one_transfer(gateway, account_id):
    hold, capture = _captured(gateway)
    key = _key("transfer")

    first = _transfer(gateway, account_id, capture.charge_id, 300, hold.order_id, key=key)
    second = _transfer(gateway, account_id, capture.charge_id, 300, hold.order_id, key=key)

    assert second.id == first.id
    # A second real transfer of 300 would have gone through: 600 were captured.
    assert gateway.find_transfer(transfer_group=hold.order_id, idempotency_key=key) == second


def test_same_key_with_other_parameters_is_a_conflict(gateway):
    order_id, key = uuid.uuid4().hex, _key("hold")
    _hold(gateway, 1000, order_id=order_id, key=key)

    with pytest.raises(IdempotencyConflict):
        _hold(gateway, 1001, order_id=order_id, key=key)


def test_late_retry_finds_the_transfer_made_under_its_key(gateway, account_id):
    hold, capture = _captured(gateway)
    key = _key("transfer")
    _transfer(gateway, account_id, capture.charge_id, 100, hold.order_id)
    made = _transfer(gateway, account_id, capture.charge_id, 200, hold.order_id, key=key)

    assert gateway.find_transfer(transfer_group=hold.order_id, idempotency_key=key) == made
    assert gateway.find_transfer(transfer_group=hold.order_id, idempotency_key=_key("other")) is None


def test_late_retry_finds_the_hold_made_under_its_key(gateway):
    order_id, key = uuid.uuid4().hex, _key("hold")
    made = _hold(gateway, order_id=order_id, key=key)

    assert gateway.find_hold(order_id=order_id, idempotency_key=key) == made
    assert gateway.find_hold(order_id=order_id, idempotency_key=_key("other")) is None


# -- reconciliation -----------------------------------------------------------------------


def test_balance_transactions_cover_every_money_movement(gateway, account_id):
    started = datetime.now(UTC).replace(microsecond=0)
    hold, capture = _captured(gateway, held=1000, captured=600)
    refund = gateway.refund(charge_or_hold_id=hold.id, amount_minor=100, idempotency_key=_key("refund"))
    transfer = _transfer(gateway, account_id, capture.charge_id, 400, hold.order_id)
    reversal = gateway.reverse_transfer(transfer_id=transfer.id, amount_minor=150, idempotency_key=_key("rev"))
    window_end = datetime.now(UTC) + timedelta(seconds=2)

    by_source = {
        txn.source_id: txn for txn in gateway.list_balance_transactions(started, window_end)
    }

    assert by_source[capture.charge_id].type == "charge"
    assert by_source[capture.charge_id].amount_minor == 600
    assert (by_source[refund.id].type, by_source[refund.id].amount_minor) == ("refund", -100)
    assert (by_source[transfer.id].type, by_source[transfer.id].amount_minor) == ("transfer", -400)
    assert by_source[reversal.id].amount_minor == 150
    earlier = gateway.list_balance_transactions(started - timedelta(hours=1), started - timedelta(minutes=59))
    assert capture.charge_id not in {txn.source_id for txn in earlier}


# -- webhooks -----------------------------------------------------------------------------


@pytest.fixture
def webhook_gateway(webhook_secret, webhook_tolerance_s) -> StripeGateway:
    # Verification is local: the API address is never called.
    return StripeGateway("sk_test_unused", "http://127.0.0.1:9", webhook_secret, webhook_tolerance_s)


def _event_body(event_type="charge.refunded") -> bytes:
    return json.dumps({
        "id": "evt_" + uuid.uuid4().hex,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "api_version": "2024-06-20",
        "livemode": False,
        "data": {"object": {"id": "ch_123", "object": "charge", "amount_refunded": 200}},
    }).encode()


def _sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def test_signed_webhook_is_parsed(webhook_gateway, webhook_secret):
    payload = _event_body("charge.refunded")

    event = webhook_gateway.parse_webhook(payload, _sign(payload, webhook_secret))

    assert event.id == json.loads(payload)["id"]
    assert event.type == "charge.refunded"
    assert event.object == {"id": "ch_123", "object": "charge", "amount_refunded": 200}
    assert event.account_id is None


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda body, secret, tolerance: _sign(body, "whsec_other"), id="wrong-secret"),
        pytest.param(lambda body, secret, tolerance: _sign(body + b" ", secret), id="other-body"),
        pytest.param(
            lambda body, secret, tolerance: _sign(body, secret, int(time.time()) - tolerance - 10),
            id="stale-timestamp",
        ),
        pytest.param(lambda body, secret, tolerance: "", id="missing-header"),
        pytest.param(lambda body, secret, tolerance: "v1=deadbeef", id="no-timestamp"),
    ],
)
def test_unverifiable_webhook_is_rejected(webhook_gateway, webhook_secret, webhook_tolerance_s, header):
    payload = _event_body()

    with pytest.raises(InvalidWebhook):
        webhook_gateway.parse_webhook(payload, header(payload, webhook_secret, webhook_tolerance_s))


def test_signed_body_that_is_not_an_event_is_rejected(webhook_gateway, webhook_secret):
    payload = b"not json"

    with pytest.raises(InvalidWebhook):
        webhook_gateway.parse_webhook(payload, _sign(payload, webhook_secret))


def test_webhook_tolerance_must_be_positive(webhook_secret):
    # Zero would turn off the SDK's timestamp check and accept replays forever.
    with pytest.raises(ValueError):
        StripeGateway("sk_test_unused", "http://127.0.0.1:9", webhook_secret, 0)


class _Receiver(BaseHTTPRequestHandler):
    deliveries: "queue.Queue[tuple[bytes, str]]"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.deliveries.put((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_test_server_delivers_webhooks_the_gateway_verifies(gateway, local_api, account_id, webhook_secret):
    deliveries: queue.Queue = queue.Queue()
    receiver = HTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"deliveries": deliveries}))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        local_api.post(
            f"/_config/webhooks/{uuid.uuid4().hex}",
            json={
                "url": f"http://127.0.0.1:{receiver.server_port}/webhooks/stripe",
                "secret": webhook_secret,
                "events": ["transfer.created"],
            },
        ).raise_for_status()
        hold, capture = _captured(gateway)
        transfer = _transfer(gateway, account_id, capture.charge_id, 300, hold.order_id)

        deadline = time.monotonic() + 10
        while True:
            payload, signature = deliveries.get(timeout=max(deadline - time.monotonic(), 0.01))
            event = gateway.parse_webhook(payload, signature)
            if event.object["id"] == transfer.id:
                break
    finally:
        receiver.shutdown()
        receiver.server_close()

    assert event.type == "transfer.created"
    assert event.object["transfer_group"] == hold.order_id
