"""Stripe-compatible test server: localstripe plus the Connect surface gasdispatch uses.

    python tests/support/stripe_server.py --host 127.0.0.1 --port 8420

localstripe is extended in place (its aiohttp app, object store, route helpers and
webhook sender), not forked. Added, with Stripe's documented semantics:

* ``/v1/accounts``: Connect accounts; onboarding happens outside the API, so every
  requested capability is active at once (an account without ``transfers`` cannot receive).
* ``/v1/transfers`` (+ ``/{id}/reversals``): ``source_transaction`` transfers limited to what
  is left of the charge, otherwise to the available balance; reversals limited to what is
  left of the transfer; list filters ``transfer_group``, ``destination``, ``created``.
* Partial capture as Stripe does it: one balance transaction for the captured amount, the
  rest released (``amount_captured``, ``amount_refunded``), refunds limited to the remainder.
* ``transfer_group`` on PaymentIntents, copied to their charge; ``GET /v1/charges`` filters
  ``transfer_group`` and ``payment_intent``; ``GET /v1/balance_transactions`` filters
  ``created``, ``type``, ``source``, ``currency``, and covers transfers and reversals.
* ``Idempotency-Key`` on every POST: same key and parameters replay the first response
  (``Idempotent-Replayed: true``), other parameters get 400 ``idempotency_error``.
* Webhook events ``transfer.created``, ``transfer.reversed``, ``charge.refunded`` and
  ``payment_intent.amount_capturable_updated``, signed and sent like localstripe's own
  (register a receiver with ``POST /_config/webhooks/{id}`` ``url=...&secret=...``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import operator
import time
from dataclasses import dataclass

from aiohttp import web
from localstripe import server as localstripe_server
from localstripe.errors import UserError
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Event,
    List,
    PaymentIntent,
    Refund,
    StripeObject,
    Store,
    random_id,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)
from localstripe.webhooks import schedule_webhook

_COMPARISONS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _bad_param(message: str, param: str, code: str | None = None) -> UserError:
    contents = {"param": param}
    if code is not None:
        contents["code"] = code
    return UserError(400, message, contents)


def _reject_unknown(kwargs: dict) -> None:
    if kwargs:
        name = next(iter(kwargs))
        raise _bad_param(f"Received unknown parameter: {name}", name)


def _objects(kind: str) -> list:
    prefix = kind + ":"
    return [value for key, value in store.items() if key.startswith(prefix)]


def _positive_amount(value, param: str = "amount") -> int:
    amount = try_convert_to_int(value)
    if type(amount) is not int or amount <= 0:
        raise _bad_param("Invalid positive integer", param)
    return amount


def _created_filter(created):
    if created is None:
        return lambda obj: True
    bounds = created if isinstance(created, dict) else {"gte": created, "lte": created}
    checks = []
    for name, value in bounds.items():
        bound = try_convert_to_int(value)
        if name not in _COMPARISONS or type(bound) is not int:
            raise _bad_param(f"Invalid created[{name}]", "created")
        checks.append((_COMPARISONS[name], bound))
    return lambda obj: all(compare(obj.created, bound) for compare, bound in checks)


def _listing(url, limit, starting_after, objects) -> List:
    listing = List(url, limit=limit, starting_after=starting_after)
    listing._list = sorted(objects, key=lambda obj: obj.created, reverse=True)
    return listing


class _LedgerEntry(BalanceTransaction):
    """A balance transaction localstripe's own constructor refuses (it knows only charges
    and refunds); stored under the same key so retrieval and listing include it."""

    def __init__(self, *, amount, currency, source, type, reporting_category):
        StripeObject.__init__(self)
        self.amount = amount
        self.available_on = self.created
        self.currency = currency
        self.description = None
        self.exchange_rate = None
        self.fee = 0
        self.fee_details = []
        self.reporting_category = reporting_category
        self.source = source
        self.status = "available"
        self.type = type


def _available_balance(currency: str) -> int:
    return sum(
        txn.net
        for txn in _objects("balance_transaction")
        if txn.currency == currency and txn.status == "available"
    )


class Account(StripeObject):
    object = "account"
    _id_prefix = "acct_"

    def __init__(self, type=None, email=None, country=None, capabilities=None,
                 business_type=None, metadata=None, **kwargs):
        _reject_unknown(kwargs)
        if type not in ("custom", "express", "standard"):
            raise _bad_param("Invalid type: must be one of custom, express, standard", "type")
        if capabilities is not None and not isinstance(capabilities, dict):
            raise _bad_param("Invalid hash", "capabilities")
        requested = [
            name
            for name, options in (capabilities or {}).items()
            if isinstance(options, dict) and try_convert_to_bool(options.get("requested")) is True
        ]
        super().__init__()
        self.type = type
        self.email = email
        self.country = country or "US"
        self.business_type = business_type
        self.metadata = metadata or {}
        # No hosted onboarding here: behave as an account that has finished it.
        self.capabilities = {name: "active" for name in requested}
        self.charges_enabled = "card_payments" in self.capabilities
        self.payouts_enabled = True
        self.details_submitted = True


class Transfer(StripeObject):
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(self, amount=None, currency=None, destination=None, transfer_group=None,
                 source_transaction=None, description=None, metadata=None, **kwargs):
        _reject_unknown(kwargs)
        amount = _positive_amount(amount)
        if not isinstance(currency, str) or not currency:
            raise _bad_param("Missing required param: currency.", "currency")
        currency = currency.lower()
        account = store.get("account:%s" % destination)
        if account is None:
            raise _bad_param(f"No such destination: '{destination}'", "destination", "resource_missing")
        if account.capabilities.get("transfers") != "active":
            raise _bad_param(
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                "destination",
                "insufficient_capabilities_for_transfer",
            )
        if source_transaction is not None:
            available = self._available_from(source_transaction, currency)
        else:
            available = _available_balance(currency)
        if amount > available:
            raise _bad_param(
                f"Insufficient funds: the transfer amount ({amount}) exceeds what is "
                f"available ({available}).",
                "amount",
                "balance_insufficient",
            )

        super().__init__()
        self.amount = amount
        self.currency = currency
        self.destination = destination
        self.destination_payment = "py_" + random_id(14)
        self.transfer_group = transfer_group
        self.source_transaction = source_transaction
        self.source_type = "card"
        self.description = description
        self.metadata = metadata or {}
        txn = _LedgerEntry(amount=-amount, currency=currency, source=self.id,
                           type="transfer", reporting_category="transfer")
        self.balance_transaction = txn.id
        schedule_webhook(Event("transfer.created", self))

    @staticmethod
    def _available_from(charge_id, currency) -> int:
        charge = store.get("charge:%s" % charge_id)
        if charge is None:
            raise _bad_param(f"No such charge: '{charge_id}'", "source_transaction", "resource_missing")
        if charge.currency != currency:
            raise _bad_param("The currency of source_transaction's balance transaction "
                             "must match the transfer currency.", "currency")
        if charge.status != "succeeded" or not charge.captured:
            raise _bad_param(f"Charge {charge_id} has not been captured.", "source_transaction")
        transferred = sum(
            t.amount - t.amount_reversed
            for t in _objects("transfer")
            if t.source_transaction == charge_id
        )
        return charge.amount - charge.amount_refunded - transferred

    @property
    def reversals(self) -> List:
        reversals = List("/v1/transfers/%s/reversals" % self.id, limit=100)
        reversals._list = [r for r in _objects("transfer_reversal") if r.transfer == self.id]
        return reversals

    @property
    def amount_reversed(self) -> int:
        return sum(r.amount for r in self.reversals._list)

    @property
    def reversed(self) -> bool:
        return self.amount_reversed == self.amount

    @classmethod
    def _api_list_all(cls, url, limit=None, starting_after=None, transfer_group=None,
                      destination=None, created=None, **kwargs):
        _reject_unknown(kwargs)
        matches_created = _created_filter(created)
        return _listing(url, limit, starting_after, [
            t for t in _objects("transfer")
            if (transfer_group is None or t.transfer_group == transfer_group)
            and (destination is None or t.destination == destination)
            and matches_created(t)
        ])


class TransferReversal(StripeObject):
    object = "transfer_reversal"
    _id_prefix = "trr_"

    def __init__(self, transfer=None, amount=None, description=None, metadata=None, **kwargs):
        _reject_unknown(kwargs)
        transfer_obj = Transfer._api_retrieve(transfer)
        remaining = transfer_obj.amount - transfer_obj.amount_reversed
        if remaining == 0:
            raise _bad_param(f"Transfer {transfer} is already fully reversed.", "transfer")
        amount = remaining if amount is None else _positive_amount(amount)
        if amount > remaining:
            raise _bad_param(
                f"Reversal amount ({amount}) is greater than the amount remaining on "
                f"transfer {transfer} ({remaining}).",
                "amount",
            )

        super().__init__()
        self.amount = amount
        self.currency = transfer_obj.currency
        self.transfer = transfer
        self.description = description
        self.metadata = metadata or {}
        self.destination_payment_refund = "pyr_" + random_id(14)
        self.source_refund = None
        txn = _LedgerEntry(amount=amount, currency=self.currency, source=self.id,
                           type="transfer_refund", reporting_category="transfer_reversal")
        self.balance_transaction = txn.id
        schedule_webhook(Event("transfer.reversed", transfer_obj))

    @classmethod
    def _api_create_for(cls, id, **data):
        return cls(transfer=id, **data)

    @classmethod
    def _api_list_for(cls, id, limit=None, starting_after=None, **kwargs):
        _reject_unknown(kwargs)
        transfer = Transfer._api_retrieve(id)
        return _listing(transfer.reversals.url, limit, starting_after, transfer.reversals._list)


# -- localstripe patches: payments --------------------------------------------------


def _capture(self, amount, on_success=None):
    """Stripe's partial capture: the balance moves by the captured amount only and the
    rest of the authorisation is released (localstripe books the full amount and then a
    refund). Card payments only, which is all localstripe captures synchronously."""
    amount = self.amount if amount is None else try_convert_to_int(amount)
    if type(amount) is not int or not 0 < amount <= self.amount:
        raise _bad_param(
            f"The amount to capture must be between 1 and the authorised amount ({self.amount}).",
            "amount_to_capture",
            "amount_too_large",
        )
    intent = self.payment_intent and PaymentIntent._api_retrieve(self.payment_intent)
    if intent and intent.status != "requires_capture":
        raise UserError(400, f"This PaymentIntent could not be captured because it has a "
                             f"status of {intent.status}.", {"code": "payment_intent_unexpected_state"})
    if self.captured or self.status != "succeeded":
        raise UserError(400, f"Charge {self.id} has already been captured or cannot be captured.")
    self.captured = True
    self._amount_captured = amount
    self._amount_released = self.amount - amount
    txn = BalanceTransaction(amount=amount, currency=self.currency, description=self.description,
                             exchange_rate=1.0, reporting_category="charge", source=self.id,
                             type="charge")
    self.balance_transaction = txn.id
    if on_success:
        on_success()


def _amount_captured(self) -> int:
    if not self.captured or self.status != "succeeded":
        return 0
    return getattr(self, "_amount_captured", self.amount)


def _amount_refunded(self) -> int:
    return sum(r.amount for r in self.refunds._list) + getattr(self, "_amount_released", 0)


_original_refund_init = Refund.__init__


def _refund_init(self, charge=None, payment_intent=None, amount=None, **kwargs):
    target = None
    if isinstance(payment_intent, str) and payment_intent.startswith("pi_"):
        target = PaymentIntent._api_retrieve(payment_intent).latest_charge
    elif isinstance(charge, str) and charge.startswith("ch_"):
        target = Charge._api_retrieve(charge)
    requested = try_convert_to_int(amount)
    if target is not None and target.captured and type(requested) is int:
        remaining = target.amount - target.amount_refunded
        if requested > remaining:
            raise _bad_param(
                f"Refund amount ({requested}) is greater than unrefunded amount on charge "
                f"({remaining})",
                "amount",
                "amount_too_large",
            )
    _original_refund_init(self, charge=charge, payment_intent=payment_intent, amount=amount,
                          **kwargs)
    schedule_webhook(Event("charge.refunded", Charge._api_retrieve(self.charge)))


_original_pi_init = PaymentIntent.__init__
_original_create_charge = PaymentIntent._create_charge


def _pi_init(self, transfer_group=None, **kwargs):
    if transfer_group is not None and not isinstance(transfer_group, str):
        raise _bad_param("Invalid string", "transfer_group")
    _original_pi_init(self, **kwargs)
    self.transfer_group = transfer_group


def _create_charge(self, on_failure_now):
    try:
        _original_create_charge(self, on_failure_now)
    finally:
        if self.latest_charge is not None:
            self.latest_charge.transfer_group = getattr(self, "transfer_group", None)
    if self.status == "requires_capture":
        schedule_webhook(Event("payment_intent.amount_capturable_updated", self))


_original_list_charges = Charge._api_list_all.__func__


def _list_charges(cls, url, transfer_group=None, payment_intent=None, **kwargs):
    listing = _original_list_charges(cls, url, **kwargs)
    listing._list = [
        c for c in listing._list
        if (transfer_group is None or c.transfer_group == transfer_group)
        and (payment_intent is None or c.payment_intent == payment_intent)
    ]
    return listing


def _list_balance_transactions(cls, url, limit=None, starting_after=None, created=None,
                               type=None, source=None, currency=None, **kwargs):
    _reject_unknown(kwargs)
    matches_created = _created_filter(created)
    return _listing(url, limit, starting_after, [
        txn for txn in _objects("balance_transaction")
        if matches_created(txn)
        and (type is None or txn.type == type)
        and (source is None or txn.source == source)
        and (currency is None or txn.currency == currency)
    ])


# -- idempotency ---------------------------------------------------------------------


@dataclass
class _Saved:
    saved_at: float
    fingerprint: str
    status: int
    body: bytes


def _idempotency_error(status: int, message: str, code: str | None = None) -> web.Response:
    error = {"type": "idempotency_error", "message": message}
    if code is not None:
        error["code"] = code
    return localstripe_server.json_response({"error": error}, status=status)


def idempotency_middleware(ttl_s: float):
    saved: dict[tuple, _Saved] = {}
    in_flight: set[tuple] = set()

    @web.middleware
    async def middleware(request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)
        # Stripe scopes keys to the caller (API key, connected account).
        scope = (request.headers.get("Authorization"), request.headers.get("Stripe-Account"), key)
        params = await localstripe_server.get_post_data(request) or {}
        fingerprint = hashlib.sha256(
            json.dumps([request.path, params], sort_keys=True, default=str).encode()
        ).hexdigest()

        previous = saved.get(scope)
        if previous is not None and time.time() - previous.saved_at < ttl_s:
            if previous.fingerprint != fingerprint:
                return _idempotency_error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                )
            return web.Response(status=previous.status, body=previous.body,
                                content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
        if scope in in_flight:
            return _idempotency_error(
                409, "There is currently another in-progress request using this idempotency key.",
                "idempotency_key_in_use")

        in_flight.add(scope)
        try:
            try:
                response = await handler(request)
            except UserError as exc:
                response = exc.to_response()
        finally:
            in_flight.discard(scope)
        # Like Stripe, a request rejected before it ran (4xx other than a card error)
        # saves nothing, so the caller may fix it and retry with the same key.
        if not (400 <= response.status < 500 and response.status != 402):
            saved[scope] = _Saved(time.time(), fingerprint, response.status, response.body)
        return response

    return middleware


def install(app: web.Application, *, idempotency_ttl_s: float) -> None:
    """Extend localstripe's app; call once, before it starts."""
    # Every write would pickle the whole store to one fixed /tmp file: slow, and two
    # servers running at once would load each other's state.
    Store.dump_to_disk = lambda self: None

    Charge._capture = _capture
    Charge.amount_captured = property(_amount_captured)
    Charge.amount_refunded = property(_amount_refunded)
    Charge.transfer_group = None
    Charge._api_list_all = classmethod(_list_charges)
    Refund.__init__ = _refund_init
    PaymentIntent.__init__ = _pi_init
    PaymentIntent._create_charge = _create_charge
    BalanceTransaction._api_list_all = classmethod(_list_balance_transactions)

    for cls, url in ((Account, "/v1/accounts"), (Transfer, "/v1/transfers")):
        app.router.add_post(url, localstripe_server.api_create(cls, url))
        app.router.add_get(url + "/{id}", localstripe_server.api_retrieve(cls, url))
        app.router.add_get(url, localstripe_server.api_list_all(cls, url))
    reversals = "/v1/transfers/{id}/reversals"
    app.router.add_post(reversals, localstripe_server.api_extra(TransferReversal._api_create_for, reversals))
    app.router.add_get(reversals, localstripe_server.api_extra(TransferReversal._api_list_for, reversals))

    app.middlewares.append(idempotency_middleware(idempotency_ttl_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--idempotency-ttl-s", type=float, default=24 * 3600,
                        help="how long keys are remembered (Stripe: 24 h)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    install(localstripe_server.app, idempotency_ttl_s=args.idempotency_ttl_s)
    web.run_app(localstripe_server.app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
