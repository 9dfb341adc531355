"""An in-process payment provider with its own tables, for the demo and for evaluating without
a Stripe account. It keeps Stripe's rules: holds expire, capture <= hold, refunds <= captured,
transfers <= what is left of the source charge, reversals <= what is left of the transfer and
of the technician's balance, and an idempotency key replays its first result (other
parameters: IdempotencyConflict).

The provider is another system: every call commits on its own connection, whatever happens
to the caller's transaction. The port is synchronous, so each call runs its own event loop
(callers use ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from settlement.gateway import (
    BalanceTransaction,
    Capture,
    CardDeclined,
    Charge,
    ConnectedAccount,
    Dispute,
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

HOLD_LIFETIME = timedelta(days=7)
DECLINED_METHODS = frozenset({"pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"})
_LOCK_KEY = 0x5A4D_B0C5  # serialises the sandbox like one provider account


def _new_id(prefix: str) -> str:
    return f"{prefix}_sbx_{secrets.token_hex(10)}"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for ``payload`` (what the provider sends with a webhook)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class SandboxGateway:
    def __init__(
        self, database_url: str, webhook_secret: str, *, webhook_tolerance_s: int = 300,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._webhook_secret = webhook_secret
        self._tolerance_s = webhook_tolerance_s
        self.clock = clock

    # -- plumbing ------------------------------------------------------------------------

    def _run(self, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        async def call() -> Any:
            conn = await asyncpg.connect(self._dsn)
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                    return await work(conn)
            finally:
                await conn.close()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(call())
        with ThreadPoolExecutor(1) as pool:  # called from inside a loop: run beside it
            return pool.submit(asyncio.run, call()).result()

    def _idempotent(
        self, operation: str, key: str, params: dict[str, Any],
        work: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

        async def run(conn: asyncpg.Connection) -> dict[str, Any]:
            row = await conn.fetchrow(
                "SELECT operation, params_hash, result FROM settlement_sandbox_request WHERE idempotency_key=$1", key)
            if row is not None:
                if row["operation"] != operation or row["params_hash"] != params_hash:
                    raise IdempotencyConflict(f"idempotency key {key} was used with other parameters")
                return json.loads(row["result"])
            result = await work(conn)
            await conn.execute(
                "INSERT INTO settlement_sandbox_request (idempotency_key, operation, params_hash, result, created_at)"
                " VALUES ($1,$2,$3,$4,$5)", key, operation, params_hash, json.dumps(result), self.clock())
            return result

        return self._run(run)

    async def _get(self, conn: asyncpg.Connection, kind: str, object_id: str) -> dict[str, Any]:
        row = await conn.fetchrow("SELECT data FROM settlement_sandbox_object WHERE id=$1 AND kind=$2", object_id, kind)
        if row is None:
            raise PaymentObjectNotFound(f"no such {kind}: {object_id}")
        return json.loads(row["data"])

    async def _put(self, conn: asyncpg.Connection, kind: str, data: dict[str, Any]) -> None:
        await conn.execute(
            "INSERT INTO settlement_sandbox_object (id, kind, data, created_at) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data", data["id"], kind, json.dumps(data), self.clock())

    async def _balance(self, conn: asyncpg.Connection, type_: str, amount: int, currency: str, source: str) -> None:
        await conn.execute(
            "INSERT INTO settlement_sandbox_balance_transaction (id, type, amount_minor, currency, source_id, created_at)"
            " VALUES ($1,$2,$3,$4,$5,$6)", _new_id("txn"), type_, amount, currency, source, self.clock())

    async def _event(self, conn: asyncpg.Connection, type_: str, obj: dict[str, Any]) -> None:
        event_id = _new_id("evt")
        body = {"id": event_id, "object": "event", "type": type_, "created": int(self.clock().timestamp()),
                "data": {"object": obj}}
        await conn.execute("INSERT INTO settlement_sandbox_event (id, type, body, created_at) VALUES ($1,$2,$3,$4)",
                           event_id, type_, json.dumps(body), self.clock())

    async def _live_hold(self, conn: asyncpg.Connection, hold_id: str) -> dict[str, Any]:
        hold = await self._get(conn, "hold", hold_id)
        if hold["status"] == "authorised" and datetime.fromisoformat(hold["expires_at"]) <= self.clock():
            hold["status"] = "cancelled"
            hold["cancellation_reason"] = "expired"
            await self._put(conn, "hold", hold)
        return hold

    # -- customer side -------------------------------------------------------------------

    def authorise(self, *, order_id: str, amount_minor: int, currency: str, customer_ref: str | None,
                  payment_method_ref: str, idempotency_key: str) -> Hold:
        params = {"order_id": order_id, "amount": amount_minor, "currency": currency, "pm": payment_method_ref}
        if amount_minor <= 0:
            raise PaymentRequestRejected("amount must be positive")

        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            if payment_method_ref in DECLINED_METHODS:
                raise CardDeclined("your card was declined", code="card_declined")
            hold = {"id": _new_id("pi"), "order_id": order_id, "amount": amount_minor, "currency": currency.upper(),
                    "status": "authorised", "charge_id": _new_id("ch"), "captured": 0, "refunded": 0,
                    "transferred": 0, "idempotency_key": idempotency_key,
                    "expires_at": (self.clock() + HOLD_LIFETIME).isoformat()}
            await self._put(conn, "hold", hold)
            return hold

        return self._hold(self._idempotent("authorise", idempotency_key, params, work))

    def find_hold(self, *, order_id: str, idempotency_key: str) -> Hold | None:
        async def work(conn: asyncpg.Connection) -> dict[str, Any] | None:
            row = await conn.fetchrow(
                "SELECT data FROM settlement_sandbox_object WHERE kind='hold' AND data->>'order_id'=$1"
                " AND data->>'idempotency_key'=$2", order_id, idempotency_key)
            return None if row is None else json.loads(row["data"])

        found = self._run(work)
        return None if found is None else self._hold(found)

    def capture(self, *, hold_id: str, amount_minor: int, idempotency_key: str) -> Capture:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            hold = await self._live_hold(conn, hold_id)
            if hold["status"] != "authorised":
                raise PaymentRequestRejected(f"hold {hold_id} is {hold['status']}", code="payment_intent_unexpected_state")
            if not 0 < amount_minor <= hold["amount"]:
                raise PaymentRequestRejected("capture must be positive and at most the hold", code="amount_too_large")
            hold.update(status="captured", captured=amount_minor)
            await self._put(conn, "hold", hold)
            await self._balance(conn, "charge", amount_minor, hold["currency"], hold["charge_id"])
            return hold

        hold = self._idempotent("capture", idempotency_key, {"hold": hold_id, "amount": amount_minor}, work)
        return Capture(hold_id=hold["id"], charge_id=hold["charge_id"], amount_minor=hold["captured"],
                       currency=hold["currency"])

    def cancel_hold(self, *, hold_id: str, idempotency_key: str) -> Hold:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            hold = await self._live_hold(conn, hold_id)
            if hold["status"] == "captured":
                raise PaymentRequestRejected(f"hold {hold_id} is captured", code="payment_intent_unexpected_state")
            hold["status"] = "cancelled"
            await self._put(conn, "hold", hold)
            return hold

        return self._hold(self._idempotent("cancel_hold", idempotency_key, {"hold": hold_id}, work))

    def refund(self, *, charge_or_hold_id: str, amount_minor: int, idempotency_key: str) -> Refund:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            hold = await self._hold_by_charge(conn, charge_or_hold_id)
            if hold["status"] != "captured":
                raise PaymentRequestRejected("only a captured charge can be refunded", code="charge_not_captured")
            if not 0 < amount_minor <= hold["captured"] - hold["refunded"]:
                raise PaymentRequestRejected("refund exceeds what is left of the charge", code="amount_too_large")
            refund = {"id": _new_id("re"), "charge_id": hold["charge_id"], "amount": amount_minor,
                      "currency": hold["currency"]}
            hold["refunded"] += amount_minor
            hold.setdefault("refunds", []).append(refund)
            await self._put(conn, "hold", hold)
            await self._put(conn, "refund", refund)
            await self._balance(conn, "refund", -amount_minor, hold["currency"], refund["id"])
            await self._event(conn, "charge.refunded", self._charge_object(hold))
            return refund

        refund = self._idempotent("refund", idempotency_key, {"target": charge_or_hold_id, "amount": amount_minor}, work)
        return Refund(id=refund["id"], charge_id=refund["charge_id"], amount_minor=refund["amount"],
                      currency=refund["currency"])

    def retrieve_charge(self, charge_id: str) -> Charge:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            return await self._hold_by_charge(conn, charge_id)

        hold = self._run(work)
        if hold["charge_id"] != charge_id:  # a hold id is not a charge id
            raise PaymentObjectNotFound(f"no such charge: {charge_id}")
        return Charge(id=charge_id, captured_minor=hold["captured"], currency=hold["currency"],
                      refunds=tuple(Refund(id=r["id"], charge_id=charge_id, amount_minor=r["amount"],
                                           currency=r["currency"]) for r in hold.get("refunds", [])))

    def retrieve_dispute(self, dispute_id: str) -> Dispute:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            return await self._get(conn, "dispute", dispute_id)

        dispute = self._run(work)
        return Dispute(id=dispute["id"], charge_id=dispute["charge"], amount_minor=dispute["amount"],
                       currency=dispute["currency"].upper())

    async def _hold_by_charge(self, conn: asyncpg.Connection, charge_or_hold_id: str) -> dict[str, Any]:
        if charge_or_hold_id.startswith("pi_"):
            return await self._live_hold(conn, charge_or_hold_id)
        row = await conn.fetchrow(
            "SELECT data FROM settlement_sandbox_object WHERE kind='hold' AND data->>'charge_id'=$1", charge_or_hold_id)
        if row is None:
            raise PaymentObjectNotFound(f"no such charge: {charge_or_hold_id}")
        return json.loads(row["data"])

    # -- technician side -----------------------------------------------------------------

    def create_connected_account(self, *, technician_id: str, email: str, idempotency_key: str) -> ConnectedAccount:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            account = {"id": _new_id("acct"), "technician_id": technician_id, "email": email,
                       "transfers_enabled": True, "balance": 0}
            await self._put(conn, "account", account)
            return account

        account = self._idempotent("create_account", idempotency_key, {"technician": technician_id, "email": email}, work)
        return ConnectedAccount(id=account["id"], technician_id=technician_id, transfers_enabled=True,
                                payouts_enabled=True)

    def account_can_receive_transfers(self, account_id: str) -> bool:
        async def work(conn: asyncpg.Connection) -> bool:
            return bool((await self._get(conn, "account", account_id))["transfers_enabled"])

        return self._run(work)

    def transfer(self, *, account_id: str, amount_minor: int, currency: str, transfer_group: str,
                 source_charge_id: str, idempotency_key: str) -> Transfer:
        params = {"account": account_id, "amount": amount_minor, "currency": currency, "group": transfer_group,
                  "source": source_charge_id}

        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            account = await self._get(conn, "account", account_id)
            hold = await self._hold_by_charge(conn, source_charge_id)
            left = hold["captured"] - hold["refunded"] - hold["transferred"]
            if not 0 < amount_minor <= left:
                raise PaymentRequestRejected("transfer exceeds what is left of the source charge",
                                             code="insufficient_funds")
            transfer = {"id": _new_id("tr"), "account_id": account_id, "amount": amount_minor, "reversed": 0,
                        "currency": currency.upper(), "transfer_group": transfer_group,
                        "source_charge_id": source_charge_id, "idempotency_key": idempotency_key}
            hold["transferred"] += amount_minor
            account["balance"] += amount_minor
            for kind, data in (("hold", hold), ("account", account), ("transfer", transfer)):
                await self._put(conn, kind, data)
            await self._balance(conn, "transfer", -amount_minor, transfer["currency"], transfer["id"])
            await self._event(conn, "transfer.created", self._transfer_object(transfer))
            return transfer

        return self._transfer(self._idempotent("transfer", idempotency_key, params, work))

    def find_transfer(self, *, transfer_group: str, idempotency_key: str) -> Transfer | None:
        async def work(conn: asyncpg.Connection) -> dict[str, Any] | None:
            row = await conn.fetchrow(
                "SELECT data FROM settlement_sandbox_object WHERE kind='transfer' AND data->>'transfer_group'=$1"
                " AND data->>'idempotency_key'=$2", transfer_group, idempotency_key)
            return None if row is None else json.loads(row["data"])

        found = self._run(work)
        return None if found is None else self._transfer(found)

    def retrieve_transfer(self, transfer_id: str) -> Transfer:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            return await self._get(conn, "transfer", transfer_id)

        transfer = self._run(work)
        reversals = tuple(Reversal(id=r["id"], transfer_id=transfer_id, amount_minor=r["amount"], currency=r["currency"])
                          for r in transfer.get("reversals", []))
        return replace(self._transfer(transfer), reversals=reversals)

    def available_balance(self, *, account_id: str, currency: str) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            return int((await self._get(conn, "account", account_id))["balance"])

        return self._run(work)  # one currency per sandbox account

    def reverse_transfer(self, *, transfer_id: str, amount_minor: int, idempotency_key: str) -> Reversal:
        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            transfer = await self._get(conn, "transfer", transfer_id)
            account = await self._get(conn, "account", transfer["account_id"])
            if not 0 < amount_minor <= transfer["amount"] - transfer["reversed"]:
                raise PaymentRequestRejected("reversal exceeds what is left of the transfer", code="amount_too_large")
            if amount_minor > account["balance"]:
                raise PaymentRequestRejected("the connected account's balance is too low", code="insufficient_funds")
            reversal = {"id": _new_id("trr"), "transfer_id": transfer_id, "amount": amount_minor,
                        "currency": transfer["currency"]}
            transfer["reversed"] += amount_minor
            transfer.setdefault("reversals", []).append(reversal)
            account["balance"] -= amount_minor
            for kind, data in (("transfer", transfer), ("account", account), ("reversal", reversal)):
                await self._put(conn, kind, data)
            await self._balance(conn, "transfer_refund", amount_minor, transfer["currency"], reversal["id"])
            await self._event(conn, "transfer.reversed", self._transfer_object(transfer))
            return reversal

        reversal = self._idempotent("reverse", idempotency_key, {"transfer": transfer_id, "amount": amount_minor}, work)
        return Reversal(id=reversal["id"], transfer_id=transfer_id, amount_minor=reversal["amount"],
                        currency=reversal["currency"])

    # -- what a real provider does on its own (demo and tests drive these) -----------------

    def open_dispute(self, *, charge_id: str, amount_minor: int) -> str:
        """The customer's bank claws money back: a balance debit and a ``charge.dispute.created``."""

        async def work(conn: asyncpg.Connection) -> str:
            hold = await self._hold_by_charge(conn, charge_id)
            if not 0 < amount_minor <= hold["captured"] - hold["refunded"]:
                raise PaymentRequestRejected("dispute exceeds what is left of the charge")
            dispute = {"id": _new_id("dp"), "object": "dispute", "charge": hold["charge_id"],
                       "payment_intent": hold["id"], "amount": amount_minor, "currency": hold["currency"].lower()}
            hold["refunded"] += amount_minor
            await self._put(conn, "hold", hold)
            await self._put(conn, "dispute", dispute)
            await self._balance(conn, "adjustment", -amount_minor, hold["currency"], dispute["id"])
            await self._event(conn, "charge.dispute.created", dispute)
            return dispute["id"]

        return self._run(work)

    def withdraw(self, *, account_id: str, amount_minor: int) -> None:
        """The technician pays his balance out to his bank (what later limits reversals)."""

        async def work(conn: asyncpg.Connection) -> None:
            account = await self._get(conn, "account", account_id)
            account["balance"] -= min(amount_minor, account["balance"])
            await self._put(conn, "account", account)

        self._run(work)

    def events(self, since: datetime | None = None) -> list[dict[str, Any]]:
        async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            rows = await conn.fetch(
                "SELECT body FROM settlement_sandbox_event WHERE created_at >= $1 ORDER BY created_at, id",
                since or datetime.min.replace(tzinfo=UTC))
            return [json.loads(r["body"]) for r in rows]

        return self._run(work)

    def signed(self, event: dict[str, Any]) -> tuple[bytes, str]:
        body = json.dumps(event).encode()
        return body, sign(body, self._webhook_secret)

    # -- reconciliation and webhooks -----------------------------------------------------

    def list_balance_transactions(self, created_from: datetime, created_to: datetime) -> list[BalanceTransaction]:
        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT * FROM settlement_sandbox_balance_transaction WHERE created_at >= $1 AND created_at < $2"
                " ORDER BY created_at, id", created_from, created_to)

        return [
            BalanceTransaction(id=r["id"], type=r["type"], amount_minor=r["amount_minor"], fee_minor=0,
                               net_minor=r["amount_minor"], currency=r["currency"], source_id=r["source_id"],
                               created_at=r["created_at"])
            for r in self._run(work)
        ]

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent:
        parts = dict(p.split("=", 1) for p in signature_header.split(",") if "=" in p)
        try:
            timestamp = int(parts["t"])
        except (KeyError, ValueError) as exc:
            raise InvalidWebhook("no timestamp in the signature header") from exc
        expected = sign(payload, self._webhook_secret, timestamp).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise InvalidWebhook("signature does not match")
        if abs(time.time() - timestamp) > self._tolerance_s:
            raise InvalidWebhook("timestamp outside the tolerance")
        try:
            event = json.loads(payload)
            return WebhookEvent(id=event["id"], type=event["type"], created_at=datetime.fromtimestamp(event["created"], UTC),
                                account_id=event.get("account"), object=event["data"]["object"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidWebhook(f"malformed webhook body: {exc}") from exc

    # -- mapping -------------------------------------------------------------------------

    @staticmethod
    def _hold(data: dict[str, Any]) -> Hold:
        return Hold(id=data["id"], order_id=data["order_id"], amount_minor=data["amount"], currency=data["currency"],
                    status=HoldStatus(data["status"]), charge_id=data["charge_id"])

    @staticmethod
    def _transfer(data: dict[str, Any]) -> Transfer:
        return Transfer(id=data["id"], account_id=data["account_id"], amount_minor=data["amount"],
                        amount_reversed_minor=data["reversed"], currency=data["currency"],
                        transfer_group=data["transfer_group"], source_charge_id=data["source_charge_id"])

    @staticmethod
    def _charge_object(hold: dict[str, Any]) -> dict[str, Any]:
        return {"id": hold["charge_id"], "object": "charge", "payment_intent": hold["id"],
                "transfer_group": hold["order_id"], "amount_captured": hold["captured"],
                "amount_refunded": hold["refunded"], "currency": hold["currency"].lower(),
                "refunds": {"data": [{"id": r["id"], "amount": r["amount"], "charge": hold["charge_id"],
                                      "currency": r["currency"].lower()} for r in hold.get("refunds", [])]}}

    @staticmethod
    def _transfer_object(transfer: dict[str, Any]) -> dict[str, Any]:
        return {"id": transfer["id"], "object": "transfer", "amount": transfer["amount"],
                "amount_reversed": transfer["reversed"], "currency": transfer["currency"].lower(),
                "destination": transfer["account_id"], "transfer_group": transfer["transfer_group"],
                "reversals": {"data": [{"id": r["id"], "amount": r["amount"], "transfer": transfer["id"],
                                        "currency": r["currency"].lower()} for r in transfer.get("reversals", [])]}}
