"""The payment provider port: what settlement needs from a PSP, in domain terms.

Money is integer minor units with an upper-case ISO 4217 code. Every call that moves
money takes a caller-chosen idempotency key (e.g. ``settlement:{id}:transfer:v1``) so
a retry after a crash cannot move money twice; providers forget keys after about 24 h,
so a late retry must first look the object up (``find_hold`` / ``find_transfer``).

A webhook only says that something happened: what to book is read back from the provider
(``retrieve_charge`` / ``retrieve_dispute`` / ``retrieve_transfer``), never taken from the event.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class HoldStatus(enum.StrEnum):
    AUTHORISED = "authorised"
    CAPTURED = "captured"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    order_id: str
    amount_minor: int
    currency: str
    status: HoldStatus
    charge_id: str


@dataclass(frozen=True, slots=True)
class Capture:
    hold_id: str
    charge_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    charge_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Charge:
    """A charge as the provider has it now, with every refund made on it."""

    id: str
    captured_minor: int
    currency: str
    refunds: tuple[Refund, ...]


@dataclass(frozen=True, slots=True)
class Dispute:
    id: str
    charge_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class ConnectedAccount:
    id: str
    technician_id: str
    transfers_enabled: bool
    payouts_enabled: bool


@dataclass(frozen=True, slots=True)
class Reversal:
    id: str
    transfer_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    account_id: str
    amount_minor: int
    amount_reversed_minor: int
    currency: str
    transfer_group: str
    source_charge_id: str | None
    # Filled by ``retrieve_transfer``; other calls leave it empty.
    reversals: tuple[Reversal, ...] = ()


@dataclass(frozen=True, slots=True)
class BalanceTransaction:
    id: str
    type: str
    amount_minor: int
    fee_minor: int
    net_minor: int
    currency: str
    source_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: str
    type: str
    created_at: datetime
    account_id: str | None
    object: Mapping[str, Any]


class GatewayError(Exception):
    """The provider refused or failed; ``code`` is the provider's machine code."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class CardDeclined(GatewayError):
    pass


class PaymentRequestRejected(GatewayError):
    """The request is invalid for the object's state, e.g. refunding more than captured."""


class PaymentObjectNotFound(GatewayError):
    pass


class IdempotencyConflict(GatewayError):
    """The key was already used with different parameters: a caller bug, never retry."""


class GatewayUnavailable(GatewayError):
    """Network failure, rate limit or provider 5xx: safe to retry with the same key."""


class InvalidWebhook(GatewayError):
    pass


class PaymentGateway(Protocol):
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
        """Place a manual-capture hold on the customer's payment method."""
        ...

    def find_hold(self, *, order_id: str, idempotency_key: str) -> Hold | None:
        """The hold an earlier ``authorise`` with this key created, if any."""
        ...

    def capture(self, *, hold_id: str, amount_minor: int, idempotency_key: str) -> Capture:
        """Capture at most the held amount; the rest of the hold is released."""
        ...

    def cancel_hold(self, *, hold_id: str, idempotency_key: str) -> Hold: ...

    def refund(self, *, charge_or_hold_id: str, amount_minor: int, idempotency_key: str) -> Refund: ...

    def retrieve_charge(self, charge_id: str) -> Charge:
        """The charge and its refunds as the provider has them; PaymentObjectNotFound if unknown."""
        ...

    def retrieve_dispute(self, dispute_id: str) -> Dispute: ...

    def create_connected_account(
        self, *, technician_id: str, email: str, idempotency_key: str
    ) -> ConnectedAccount: ...

    def account_can_receive_transfers(self, account_id: str) -> bool: ...

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
        """Pay a technician out of a captured charge (separate charges and transfers)."""
        ...

    def find_transfer(self, *, transfer_group: str, idempotency_key: str) -> Transfer | None:
        """The transfer an earlier ``transfer`` with this key created, if any."""
        ...

    def retrieve_transfer(self, transfer_id: str) -> Transfer:
        """The transfer with every reversal made on it."""
        ...

    def available_balance(self, *, account_id: str, currency: str) -> int:
        """What a connected account has available: the most a reversal can take back."""
        ...

    def reverse_transfer(self, *, transfer_id: str, amount_minor: int, idempotency_key: str) -> Reversal: ...

    def list_balance_transactions(
        self, created_from: datetime, created_to: datetime
    ) -> Sequence[BalanceTransaction]:
        """Balance movements with ``created_from <= created < created_to``."""
        ...

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent:
        """Verify the signature and timestamp of a raw webhook body; raise InvalidWebhook."""
        ...
