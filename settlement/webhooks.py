"""Provider webhooks: verified, stored in an inbox unique on (source, event id) so a second
delivery is a no-op, then handled. An event about something not recorded yet (out of order)
stays in the inbox and is retried with exponential backoff, on a redelivery or a worker pass.

An event is a notification, not a source of truth: even correctly signed (the secret may have
leaked), its amounts and objects are read back from the provider, and an event that names
something the provider does not have is dead-lettered without booking anything. So is an event
that still fails after MAX_ATTEMPTS: operations see it in the inbox (``dead_lettered_at``), in
the log (``settlement.webhook_dead_lettered``) and in a metric.
"""

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import DomainError
from settlement import service
from settlement.errors import WebhookMismatch
from settlement.gateway import (
    GatewayError,
    InvalidWebhook,
    PaymentGateway,
    PaymentObjectNotFound,
)
from settlement.models import Payment, WebhookInbox

log = structlog.get_logger(__name__)
SOURCE = "stripe"
MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)

DEAD_LETTERED = Counter("gasdispatch_settlement_webhooks_dead_lettered_total",
                        "Provider webhook events given up on, by event type and reason", ["type", "reason"])


class WebhookRejected(DomainError):
    """The webhook signature or body is not valid."""

    slug = "invalid-webhook"


def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failure: 30 s, 1 min, 2 min, ... at most an hour."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY)


async def receive(session: AsyncSession, gateway: PaymentGateway, body: bytes, signature: str) -> bool:
    """Store and handle one delivery; False when this event id was already received.

    A redelivery makes a waiting event due at once: the provider's own retries are spaced.
    """
    try:
        event = gateway.parse_webhook(body, signature)
    except InvalidWebhook as exc:
        raise WebhookRejected(str(exc)) from exc
    now = datetime.now(timezone.utc)
    inserted = (await session.exec(insert(WebhookInbox).values(
        source=SOURCE, event_id=event.id, type=event.type, payload=dict(event.object), received_at=now, attempts=0,
    ).on_conflict_do_nothing(index_elements=["source", "event_id"]).returning(WebhookInbox.id))).first()
    if inserted is None:
        row = (await session.exec(select(WebhookInbox).where(
            WebhookInbox.source == SOURCE, WebhookInbox.event_id == event.id))).one()
        if row.processed_at is None and row.dead_lettered_at is None:
            row.next_attempt_at = now
            session.add(row)
    await process_pending(session, gateway)
    return inserted is not None


async def process_pending(session: AsyncSession, gateway: PaymentGateway) -> int:
    now = datetime.now(timezone.utc)
    rows = (await session.exec(
        select(WebhookInbox).where(WebhookInbox.processed_at.is_(None), WebhookInbox.dead_lettered_at.is_(None),
                                   or_(WebhookInbox.next_attempt_at.is_(None), WebhookInbox.next_attempt_at <= now))
        .order_by(WebhookInbox.id).with_for_update(skip_locked=True))).all()
    done = 0
    for row in rows:
        try:
            async with session.begin_nested():
                await _handle(session, gateway, row.type, row.payload)
            row.processed_at = datetime.now(timezone.utc)
            done += 1
        except (WebhookMismatch, PaymentObjectNotFound) as exc:  # asking again gives the same answer
            _failed(row, exc, now, give_up=True)
        except (DomainError, GatewayError) as exc:
            _failed(row, exc, now, give_up=False)
        session.add(row)
    await session.flush()
    # Reversals of claw-backs booked above call the provider: after these rows' locks are released.
    await service.reverse_pending_clawbacks(session, gateway)
    return done


def _failed(row: WebhookInbox, exc: Exception, now: datetime, *, give_up: bool) -> None:
    row.attempts += 1
    row.last_error = f"{type(exc).__name__}: {exc}"[:500]
    if give_up or row.attempts >= MAX_ATTEMPTS:
        row.dead_lettered_at, row.next_attempt_at = now, None
        reason = "mismatch" if give_up else "attempts_exhausted"
        DEAD_LETTERED.labels(type=row.type, reason=reason).inc()
        log.error("settlement.webhook_dead_lettered", event_id=row.event_id, type=row.type, reason=reason,
                  attempts=row.attempts, error=row.last_error)
        return
    row.next_attempt_at = now + retry_delay(row.attempts)
    log.info("settlement.webhook_deferred", event_id=row.event_id, attempts=row.attempts,
             next_attempt_at=row.next_attempt_at.isoformat(), error=row.last_error)


def _field(obj: Mapping[str, Any], key: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise WebhookMismatch(f"the event has no {key}")
    return value


def _claimed(obj: Mapping[str, Any], list_key: str) -> dict[str, Any]:
    """The ids and amounts an event claims in an embedded list (e.g. a charge's refunds)."""
    items = (obj.get(list_key) or {}).get("data") or []
    return {_field(item, "id"): item.get("amount") for item in items}


async def _captured_payment(session: AsyncSession, charge_id: str) -> Payment:
    payment = await service.payment_by_charge(session, charge_id)
    if payment is None or payment.status != "captured":
        raise service.SettlementNotReady(f"charge {charge_id} is not recorded yet")
    return payment


async def _handle(session: AsyncSession, gateway: PaymentGateway, type_: str, obj: dict) -> None:
    if type_ == "charge.refunded":
        payment = await _captured_payment(session, _field(obj, "id"))
        charge = await asyncio.to_thread(gateway.retrieve_charge, payment.charge_id)
        if charge.currency != payment.currency or charge.captured_minor != payment.captured_minor:
            raise WebhookMismatch(f"charge {charge.id} at the provider is not the capture we recorded")
        real = {r.id: r.amount_minor for r in charge.refunds}
        for refund_id, amount in _claimed(obj, "refunds").items():
            if real.get(refund_id) != amount:
                raise WebhookMismatch(f"refund {refund_id} of {amount} is not on charge {charge.id} at the provider")
        for refund in charge.refunds:  # every refund the provider has, including ones the event left out
            await service.record_money_back(session, payment, provider_object_id=refund.id,
                                            amount_minor=refund.amount_minor, kind="refund", gateway=gateway)
    elif type_ == "charge.dispute.created":
        dispute = await asyncio.to_thread(gateway.retrieve_dispute, _field(obj, "id"))
        if (obj.get("charge"), obj.get("amount")) != (dispute.charge_id, dispute.amount_minor):
            raise WebhookMismatch(f"dispute {dispute.id} at the provider differs from the event")
        payment = await _captured_payment(session, dispute.charge_id)
        if dispute.currency != payment.currency:
            raise WebhookMismatch(f"dispute {dispute.id} is in {dispute.currency}, the payment in {payment.currency}")
        await service.record_money_back(session, payment, provider_object_id=dispute.id,
                                        amount_minor=dispute.amount_minor, kind="dispute", gateway=gateway)
    elif type_ == "transfer.reversed":
        transfer = await asyncio.to_thread(gateway.retrieve_transfer, _field(obj, "id"))
        real = {r.id: r.amount_minor for r in transfer.reversals}
        for reversal_id, amount in _claimed(obj, "reversals").items():
            if real.get(reversal_id) != amount:
                raise WebhookMismatch(f"reversal {reversal_id} of {amount} is not on transfer {transfer.id}")
        for reversal in transfer.reversals:
            await service.record_external_reversal(session, transfer_id=transfer.id, reversal_id=reversal.id,
                                                   amount_minor=reversal.amount_minor)
