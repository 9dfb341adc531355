"""Stripe adapter for the PaymentGateway port; the only module that imports ``stripe``.

Separate charges and transfers: the customer's PaymentIntent is a manual-capture hold
tagged with ``transfer_group`` = order id, and the technician is paid by a transfer whose
``source_transaction`` is the captured charge, so the transfer never waits for the
platform balance. Responses are turned into plain dicts at once so no SDK type escapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import stripe

from settlement.gateway import (
    BalanceTransaction,
    Capture,
    CardDeclined,
    Charge,
    ConnectedAccount,
    Dispute,
    GatewayError,
    GatewayUnavailable,
    Hold,
    HoldStatus,
    IdempotencyConflict,
    InvalidWebhook,
    PaymentObjectNotFound,
    PaymentRequestRejected,
    Refund,
    Reversal,
    Transfer,
    WebhookEvent,
)

_HOLD_STATUSES = {
    "requires_capture": HoldStatus.AUTHORISED,
    "succeeded": HoldStatus.CAPTURED,
    "canceled": HoldStatus.CANCELLED,
}
_PAGE = 100


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except stripe.CardError as exc:
        raise CardDeclined(exc.user_message or str(exc), code=exc.code) from exc
    except stripe.IdempotencyError as exc:
        raise IdempotencyConflict(exc.user_message or str(exc)) from exc
    except stripe.InvalidRequestError as exc:
        error = PaymentObjectNotFound if exc.http_status == 404 else PaymentRequestRejected
        raise error(exc.user_message or str(exc), code=exc.code) from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise GatewayUnavailable(str(exc)) from exc
    except stripe.StripeError as exc:
        if exc.http_status is not None and exc.http_status >= 500:
            raise GatewayUnavailable(str(exc), code=exc.code) from exc
        raise GatewayError(str(exc), code=exc.code) from exc


def _id(value: str | dict[str, Any]) -> str:
    # Expandable fields are an id, or the object when expanded (localstripe always expands).
    return value if isinstance(value, str) else value["id"]


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("timezone-aware datetime required")
    return int(moment.timestamp())


class StripeGateway:
    def __init__(
        self, api_key: str, api_base: str, webhook_secret: str, webhook_tolerance_s: int = 300
    ) -> None:
        # The SDK treats a zero tolerance as "do not check the timestamp" (replays pass).
        if webhook_tolerance_s <= 0:
            raise ValueError("webhook_tolerance_s must be positive")
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            # Safe because every POST carries the caller's idempotency key.
            max_network_retries=2,
        )
        self._webhook_secret = webhook_secret
        self._webhook_tolerance_s = webhook_tolerance_s

    # -- customer side ---------------------------------------------------------

    def authorise(
        self,
        *,
        order_id: str,
        amount_minor: int,
        currency: str,
        customer_ref: str | None,
        payment_method_ref: str,
        idempotency_key: str,
    ) -> Hold:
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method": payment_method_ref,
            # Card only, so confirming server-side never needs a return_url for redirects.
            "payment_method_types": ["card"],
            "capture_method": "manual",
            "confirm": True,
            "transfer_group": order_id,
            "metadata": {"order_id": order_id, "idempotency_key": idempotency_key},
        }
        if customer_ref is not None:
            params["customer"] = customer_ref
        with _translated_errors():
            intent = self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            ).to_dict()
        return self._hold(intent)

    def find_hold(self, *, order_id: str, idempotency_key: str) -> Hold | None:
        with _translated_errors():
            charges = self._client.v1.charges.list(
                params={"transfer_group": order_id, "limit": _PAGE}
            ).auto_paging_iter()
            for item in charges:
                charge = item.to_dict()
                if not charge.get("payment_intent"):
                    continue
                intent = self._client.v1.payment_intents.retrieve(
                    _id(charge["payment_intent"])
                ).to_dict()
                if intent["metadata"].get("idempotency_key") == idempotency_key:
                    return self._hold(intent)
        return None

    def capture(self, *, hold_id: str, amount_minor: int, idempotency_key: str) -> Capture:
        with _translated_errors():
            intent = self._client.v1.payment_intents.capture(
                hold_id,
                params={"amount_to_capture": amount_minor, "expand": ["latest_charge"]},
                options={"idempotency_key": idempotency_key},
            ).to_dict()
        charge = intent["latest_charge"]
        return Capture(
            hold_id=intent["id"],
            charge_id=charge["id"],
            amount_minor=charge["amount_captured"],
            currency=charge["currency"].upper(),
        )

    def cancel_hold(self, *, hold_id: str, idempotency_key: str) -> Hold:
        with _translated_errors():
            intent = self._client.v1.payment_intents.cancel(
                hold_id, options={"idempotency_key": idempotency_key}
            ).to_dict()
        return self._hold(intent)

    def refund(self, *, charge_or_hold_id: str, amount_minor: int, idempotency_key: str) -> Refund:
        target = "payment_intent" if charge_or_hold_id.startswith("pi_") else "charge"
        with _translated_errors():
            refund = self._client.v1.refunds.create(
                params={target: charge_or_hold_id, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            ).to_dict()
        return self._refund(refund)

    def retrieve_charge(self, charge_id: str) -> Charge:
        with _translated_errors():
            charge = self._client.v1.charges.retrieve(charge_id).to_dict()
            refunds = [
                item.to_dict()
                for item in self._client.v1.refunds.list(
                    params={"charge": charge_id, "limit": _PAGE}
                ).auto_paging_iter()
            ]
        return Charge(
            id=charge["id"],
            captured_minor=charge["amount_captured"] if charge.get("captured") else 0,
            currency=charge["currency"].upper(),
            # Failed and cancelled refunds gave nothing back.
            refunds=tuple(
                self._refund(r)
                for r in sorted(refunds, key=lambda r: r["created"])
                if r.get("status") in ("succeeded", "pending")
            ),
        )

    def retrieve_dispute(self, dispute_id: str) -> Dispute:
        with _translated_errors():
            dispute = self._client.v1.disputes.retrieve(dispute_id).to_dict()
        return Dispute(
            id=dispute["id"],
            charge_id=_id(dispute["charge"]),
            amount_minor=dispute["amount"],
            currency=dispute["currency"].upper(),
        )

    # -- technician side -------------------------------------------------------

    def create_connected_account(
        self, *, technician_id: str, email: str, idempotency_key: str
    ) -> ConnectedAccount:
        with _translated_errors():
            account = self._client.v1.accounts.create(
                params={
                    "type": "express",
                    "email": email,
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"technician_id": technician_id},
                },
                options={"idempotency_key": idempotency_key},
            ).to_dict()
        return self._account(account)

    def account_can_receive_transfers(self, account_id: str) -> bool:
        with _translated_errors():
            account = self._client.v1.accounts.retrieve(account_id).to_dict()
        return self._account(account).transfers_enabled

    def transfer(
        self,
        *,
        account_id: str,
        amount_minor: int,
        currency: str,
        transfer_group: str,
        source_charge_id: str,
        idempotency_key: str,
    ) -> Transfer:
        with _translated_errors():
            transfer = self._client.v1.transfers.create(
                params={
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "destination": account_id,
                    "transfer_group": transfer_group,
                    "source_transaction": source_charge_id,
                    "metadata": {"idempotency_key": idempotency_key},
                },
                options={"idempotency_key": idempotency_key},
            ).to_dict()
        return self._transfer(transfer)

    def find_transfer(self, *, transfer_group: str, idempotency_key: str) -> Transfer | None:
        with _translated_errors():
            transfers = self._client.v1.transfers.list(
                params={"transfer_group": transfer_group, "limit": _PAGE}
            ).auto_paging_iter()
            for transfer in transfers:
                found = transfer.to_dict()
                if found["metadata"].get("idempotency_key") == idempotency_key:
                    return self._transfer(found)
        return None

    def retrieve_transfer(self, transfer_id: str) -> Transfer:
        with _translated_errors():
            transfer = self._client.v1.transfers.retrieve(transfer_id).to_dict()
            reversals = [
                item.to_dict()
                for item in self._client.v1.transfers.reversals.list(
                    transfer_id, params={"limit": _PAGE}
                ).auto_paging_iter()
            ]
        return replace(
            self._transfer(transfer),
            reversals=tuple(
                self._reversal(r) for r in sorted(reversals, key=lambda r: r["created"])
            ),
        )

    def available_balance(self, *, account_id: str, currency: str) -> int:
        with _translated_errors():
            balance = self._client.v1.balance.retrieve(options={"stripe_account": account_id}).to_dict()
        return sum(b["amount"] for b in balance.get("available", []) if b["currency"] == currency.lower())

    def reverse_transfer(self, *, transfer_id: str, amount_minor: int, idempotency_key: str) -> Reversal:
        with _translated_errors():
            reversal = self._client.v1.transfers.reversals.create(
                transfer_id,
                params={"amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            ).to_dict()
        return self._reversal(reversal)

    # -- reconciliation and webhooks ------------------------------------------

    def list_balance_transactions(
        self, created_from: datetime, created_to: datetime
    ) -> list[BalanceTransaction]:
        params = {"created": {"gte": _epoch(created_from), "lt": _epoch(created_to)}, "limit": _PAGE}
        with _translated_errors():
            return [
                BalanceTransaction(
                    id=txn["id"],
                    type=txn["type"],
                    amount_minor=txn["amount"],
                    fee_minor=txn["fee"],
                    net_minor=txn["net"],
                    currency=txn["currency"].upper(),
                    source_id=_id(txn["source"]) if txn.get("source") else None,
                    created_at=datetime.fromtimestamp(txn["created"], UTC),
                )
                for txn in (
                    item.to_dict()
                    for item in self._client.v1.balance_transactions.list(
                        params=params
                    ).auto_paging_iter()
                )
            ]

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent:
        try:
            event = self._client.construct_event(
                payload, signature_header, self._webhook_secret, self._webhook_tolerance_s
            ).to_dict()
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(str(exc)) from exc
        except ValueError as exc:  # signed but not a JSON event (also UnicodeDecodeError)
            raise InvalidWebhook(f"malformed webhook body: {exc}") from exc
        return WebhookEvent(
            id=event["id"],
            type=event["type"],
            created_at=datetime.fromtimestamp(event["created"], UTC),
            account_id=event.get("account"),
            object=event["data"]["object"],
        )

    # -- mapping ---------------------------------------------------------------

    @staticmethod
    def _hold(intent: dict[str, Any]) -> Hold:
        status = _HOLD_STATUSES.get(intent["status"])
        if status is None:
            raise GatewayError(
                f"payment intent {intent['id']} is {intent['status']}", code=intent["status"]
            )
        return Hold(
            id=intent["id"],
            order_id=intent["metadata"]["order_id"],
            amount_minor=intent["amount"],
            currency=intent["currency"].upper(),
            status=status,
            charge_id=_id(intent["latest_charge"]),
        )

    @staticmethod
    def _refund(refund: dict[str, Any]) -> Refund:
        return Refund(
            id=refund["id"],
            charge_id=_id(refund["charge"]),
            amount_minor=refund["amount"],
            currency=refund["currency"].upper(),
        )

    @staticmethod
    def _reversal(reversal: dict[str, Any]) -> Reversal:
        return Reversal(
            id=reversal["id"],
            transfer_id=_id(reversal["transfer"]),
            amount_minor=reversal["amount"],
            currency=reversal["currency"].upper(),
        )

    @staticmethod
    def _account(account: dict[str, Any]) -> ConnectedAccount:
        return ConnectedAccount(
            id=account["id"],
            technician_id=account["metadata"]["technician_id"],
            transfers_enabled=account.get("capabilities", {}).get("transfers") == "active",
            payouts_enabled=bool(account.get("payouts_enabled")),
        )

    @staticmethod
    def _transfer(transfer: dict[str, Any]) -> Transfer:
        source = transfer.get("source_transaction")
        return Transfer(
            id=transfer["id"],
            account_id=_id(transfer["destination"]),
            amount_minor=transfer["amount"],
            amount_reversed_minor=transfer["amount_reversed"],
            currency=transfer["currency"].upper(),
            transfer_group=transfer["transfer_group"],
            source_charge_id=_id(source) if source else None,
        )
