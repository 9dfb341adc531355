"""Settlement tables: payments per order and their attempts, rules, settlements, the ledger with
its chains and daily anchors, claw-back reversals, the webhook inbox, the audit-access log and
the sandbox provider's own tables."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Identity,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from kit.models import timestamp_column, utcnow

SETTLEMENT_STATUSES = ("held", "accrued", "transfer_pending", "transferred")
# A settlement pays a job done ("service", after its review) or a cancellation fee's share.
SETTLEMENT_KINDS = ("service", "cancellation")
PAYMENT_STATUSES = ("authorised", "captured", "cancelled")
PAYMENT_ATTEMPT_OUTCOMES = ("declined", "authorised")
CLAWBACK_STATUSES = ("pending", "reversed", "kept")


class Payment(SQLModel, table=True):
    """The customer's side of one order at the provider: hold, capture, refunds."""

    __tablename__ = "settlement_payment"
    __table_args__ = (
        CheckConstraint(f"status IN {PAYMENT_STATUSES}", name="status"),
        CheckConstraint("captured_minor <= held_minor AND refunded_minor <= captured_minor", name="amounts"),
    )

    order_id: uuid.UUID = Field(primary_key=True)
    customer_id: uuid.UUID
    currency: str = Field(max_length=3)
    hold_id: str = Field(max_length=100, unique=True)
    charge_id: str = Field(max_length=100)
    held_minor: int = Field(sa_type=BigInteger)
    captured_minor: int = Field(default=0, sa_type=BigInteger)
    refunded_minor: int = Field(default=0, sa_type=BigInteger)
    status: str = Field(default="authorised", max_length=16)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    updated_at: datetime = timestamp_column(default_factory=utcnow)


class PaymentAttempt(SQLModel, table=True):
    """One authorisation tried for an order: the card the customer gave and what the provider said."""

    __tablename__ = "settlement_payment_attempt"
    __table_args__ = (
        CheckConstraint(f"outcome IN {PAYMENT_ATTEMPT_OUTCOMES}", name="outcome"),
        CheckConstraint("attempt >= 1", name="attempt"),
    )

    order_id: uuid.UUID = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    payment_method_ref: str = Field(max_length=100)
    outcome: str = Field(max_length=16)
    decline_code: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class RuleSet(SQLModel, table=True):
    """One version of the settlement rules; a new version is a new row, never an edit."""

    __tablename__ = "settlement_rule_set"
    __table_args__ = (
        CheckConstraint("payout_schedule IN ('immediate','daily')", name="schedule"),
        CheckConstraint("platform_fee_bps BETWEEN 0 AND 10000 AND platform_fee_fixed_minor >= 0"
                        " AND minimum_payout_minor >= 0 AND cancellation_fee_minor >= 0", name="ranges"),
        CheckConstraint("cancellation_fee_accepted_minor >= 0 AND cancellation_free_minutes >= 0"
                        " AND cancellation_technician_bps BETWEEN 0 AND 10000", name="cancellation_ranges"),
    )

    version: int = Field(primary_key=True)
    platform_fee_bps: int
    platform_fee_fixed_minor: int = Field(sa_type=BigInteger)
    # Quality adjustment in basis points of the base, by finalized stars; None means "hold for ops".
    adjustment_bps_by_stars: dict[str, int | None] = Field(sa_type=JSONB)
    minimum_payout_minor: int = Field(sa_type=BigInteger)
    payout_schedule: str = Field(max_length=16)
    # The cancellation policy (settlement/rules.py): the fee once the technician set out, the fee
    # after the grace minutes following his acceptance, and his share of either.
    cancellation_fee_minor: int = Field(sa_type=BigInteger)
    cancellation_fee_accepted_minor: int = Field(default=0, sa_type=BigInteger)
    cancellation_free_minutes: int = 0
    cancellation_technician_bps: int = 10_000
    created_by: str = Field(max_length=64)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Settlement(SQLModel, table=True):
    __tablename__ = "settlement_settlement"
    __table_args__ = (
        CheckConstraint(f"status IN {SETTLEMENT_STATUSES}", name="status"),
        CheckConstraint(f"kind IN {SETTLEMENT_KINDS}", name="kind"),
        # A service settlement follows a review; a cancellation has none.
        CheckConstraint("kind = 'cancellation' OR stars IS NOT NULL", name="stars"),
        CheckConstraint("payout_minor >= 0", name="payout"),
        # Paid out of the customer's capture: never more than the base it was computed from.
        CheckConstraint("payout_minor <= base_minor", name="payout_within_base"),
        CheckConstraint("receivable_offset_minor BETWEEN 0 AND payout_minor", name="receivable_offset"),
        Index("ix_settlement_settlement_status", "status", "created_at"),
    )

    id: uuid.UUID = Field(primary_key=True)
    order_id: uuid.UUID = Field(unique=True)
    kind: str = Field(default="service", max_length=16)
    review_id: str = Field(max_length=64)
    technician_id: uuid.UUID = Field(index=True)
    station_id: uuid.UUID | None = Field(default=None, index=True)
    stars: int | None
    rule_version: int = Field(foreign_key="settlement_rule_set.version")
    currency: str = Field(max_length=3)
    base_minor: int = Field(sa_type=BigInteger)
    adjustment_minor: int = Field(sa_type=BigInteger)
    fee_minor: int = Field(sa_type=BigInteger)
    payout_minor: int = Field(sa_type=BigInteger)
    # The inputs and each step, so an auditor can recompute the payout by hand.
    arithmetic: dict[str, Any] = Field(sa_type=JSONB)
    status: str = Field(max_length=20)
    connected_account_id: str | None = Field(default=None, max_length=100)
    transfer_id: str | None = Field(default=None, max_length=100, unique=True)
    clawback_minor: int = Field(default=0, sa_type=BigInteger)
    # What this payout kept back to settle the technician's receivable (earlier clawbacks).
    receivable_offset_minor: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    transferred_at: datetime | None = timestamp_column(nullable=True, default=None)
    # Set when the transfer was reserved (its netting fixed) and the provider is about to be
    # called; a run after a crash completes it with the same amount and idempotency key.
    transfer_requested_at: datetime | None = timestamp_column(nullable=True, default=None)


class ConnectedAccount(SQLModel, table=True):
    __tablename__ = "settlement_connected_account"

    technician_id: uuid.UUID = Field(primary_key=True)
    provider_account_id: str = Field(max_length=100, unique=True)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class Clawback(SQLModel, table=True):
    """Money taken back from a paid-out technician: the reversal to try at the provider, decided
    outside the transaction that booked the claw-back (reversed, or kept as his receivable)."""

    __tablename__ = "settlement_clawback"
    __table_args__ = (CheckConstraint(f"status IN {CLAWBACK_STATUSES}", name="status"),)

    settlement_id: uuid.UUID = Field(primary_key=True)
    cause_id: str = Field(primary_key=True, max_length=100)
    amount_minor: int = Field(sa_type=BigInteger)
    # What to reverse, fixed before the provider is called (its available balance may be less).
    reversal_minor: int | None = Field(default=None, sa_type=BigInteger)
    status: str = Field(default="pending", max_length=16)
    reversal_id: str | None = Field(default=None, max_length=100)
    created_at: datetime = timestamp_column(default_factory=utcnow)
    decided_at: datetime | None = timestamp_column(nullable=True, default=None)


class LedgerEntry(SQLModel, table=True):
    """Append-only (a trigger refuses UPDATE and DELETE); hash-chained per chain in `chain_seq` order."""

    __tablename__ = "settlement_ledger_entry"
    __table_args__ = (UniqueConstraint("chain", "chain_seq"),)

    id: uuid.UUID = Field(primary_key=True)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), unique=True, nullable=False))
    business_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=32)
    order_id: uuid.UUID | None = Field(default=None, index=True)
    settlement_id: uuid.UUID | None = Field(default=None, index=True)
    provider_object_id: str | None = Field(default=None, max_length=100, unique=True)
    memo: str = Field(default="", max_length=300)
    created_at: datetime = timestamp_column(default_factory=utcnow, index=True)
    content_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    # The order's chain (or one account's, for an entry without an order), see settlement/ledger.py.
    chain: str = Field(max_length=120)
    chain_seq: int = Field(sa_type=BigInteger)


class LedgerChain(SQLModel, table=True):
    """The tip of each chain: the one row a post locks, so posts to other chains never wait."""

    __tablename__ = "settlement_ledger_chain"

    chain: str = Field(primary_key=True, max_length=120)
    seq: int = Field(sa_type=BigInteger)
    tip_hash: str = Field(max_length=64)
    # The seq the latest anchor recorded; chains past it go into the next anchor.
    anchored_seq: int = Field(default=0, sa_type=BigInteger)


class LedgerAnchor(SQLModel, table=True):
    """A day's anchor over the chain tips that moved since the last one, chained to that one.
    Append-only like the entries."""

    __tablename__ = "settlement_ledger_anchor"

    day: date = Field(primary_key=True)
    tips: dict[str, Any] = Field(sa_type=JSONB)
    prev_hash: str = Field(max_length=64)
    anchor_hash: str = Field(max_length=64)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class LedgerPosting(SQLModel, table=True):
    """Signed amounts: debits positive, credits negative; an entry's postings sum to zero per currency."""

    __tablename__ = "settlement_ledger_posting"
    __table_args__ = (CheckConstraint("amount_minor <> 0", name="nonzero"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    entry_id: uuid.UUID = Field(foreign_key="settlement_ledger_entry.id", index=True)
    account: str = Field(max_length=80, index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)


class WebhookInbox(SQLModel, table=True):
    """Pending until processed; a failure waits ``next_attempt_at`` (exponential backoff), and
    after the last allowed attempt the row is dead-lettered for operations."""

    __tablename__ = "settlement_webhook_inbox"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    source: str = Field(max_length=20)
    event_id: str = Field(max_length=100)
    type: str = Field(max_length=80)
    payload: dict[str, Any] = Field(sa_type=JSONB)
    received_at: datetime = timestamp_column(default_factory=utcnow)
    processed_at: datetime | None = timestamp_column(nullable=True, default=None)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    next_attempt_at: datetime | None = timestamp_column(nullable=True, default=None)
    dead_lettered_at: datetime | None = timestamp_column(nullable=True, default=None)


class AuditAccess(SQLModel, table=True):
    """Every read by staff through the audit surface, itself auditable."""

    __tablename__ = "settlement_audit_access"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    account_id: uuid.UUID = Field(index=True)
    role: str = Field(max_length=16)
    action: str = Field(max_length=40)
    target: str | None = Field(default=None, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    at: datetime = timestamp_column(default_factory=utcnow)


# -- the sandbox provider's own tables (the provider's side, committed independently) -------------


class SandboxRequest(SQLModel, table=True):
    __tablename__ = "settlement_sandbox_request"

    idempotency_key: str = Field(primary_key=True, max_length=200)
    operation: str = Field(max_length=40)
    params_hash: str = Field(max_length=64)
    result: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class SandboxObject(SQLModel, table=True):
    """Holds, refunds, disputes, accounts, transfers and reversals as JSON documents by id."""

    __tablename__ = "settlement_sandbox_object"

    id: str = Field(primary_key=True, max_length=100)
    kind: str = Field(max_length=20, index=True)
    data: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class SandboxBalanceTransaction(SQLModel, table=True):
    __tablename__ = "settlement_sandbox_balance_transaction"

    id: str = Field(primary_key=True, max_length=100)
    type: str = Field(max_length=30)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    source_id: str = Field(max_length=100)
    created_at: datetime = timestamp_column(default_factory=utcnow, index=True)


class SandboxEvent(SQLModel, table=True):
    """Webhook events the sandbox would send, in creation order."""

    __tablename__ = "settlement_sandbox_event"

    id: str = Field(primary_key=True, max_length=100)
    type: str = Field(max_length=80)
    body: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow, index=True)
