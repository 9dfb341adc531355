"""Provider webhooks: verified, stored in an inbox unique on (source, event id) so a second
delivery is a no-op, then handled. An event about something not recorded yet (out of order)
stays in the inbox and is retried on the next delivery or worker pass."""

from datetime import datetime, timezone

import structlog
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.errors import DomainError
from settlement import service
from settlement.gateway import InvalidWebhook, PaymentGateway
from settlement.models import WebhookInbox

log = structlog.get_logger(__name__)
SOURCE = "stripe"


class WebhookRejected(DomainError):
    """The webhook signature or body is not valid."""

    slug = "invalid-webhook"


async def receive(session: AsyncSession, gateway: PaymentGateway, body: bytes, signature: str) -> bool:
    """Store and handle one delivery; False when this event id was already received."""
    try:
        event = gateway.parse_webhook(body, signature)
    except InvalidWebhook as exc:
        raise WebhookRejected(str(exc)) from exc
    inserted = (await session.exec(insert(WebhookInbox).values(
        source=SOURCE, event_id=event.id, type=event.type, payload=dict(event.object),
        received_at=datetime.now(timezone.utc), attempts=0,
    ).on_conflict_do_nothing(index_elements=["source", "event_id"]).returning(WebhookInbox.id))).first()
    await process_pending(session, gateway)
    return inserted is not None


async def process_pending(session: AsyncSession, gateway: PaymentGateway) -> int:
    rows = (await session.exec(select(WebhookInbox).where(WebhookInbox.processed_at.is_(None))
                               .order_by(WebhookInbox.id).with_for_update(skip_locked=True))).all()
    done = 0
    for row in rows:
        try:
            async with session.begin_nested():
                await _handle(session, gateway, row.type, row.payload)
            row.processed_at = datetime.now(timezone.utc)
            done += 1
        except DomainError as exc:
            row.attempts += 1
            row.last_error = str(exc)[:500]
            log.info("settlement.webhook_deferred", event_id=row.event_id, error=str(exc))
        session.add(row)
    await session.flush()
    return done


async def _handle(session: AsyncSession, gateway: PaymentGateway, type_: str, obj: dict) -> None:
    if type_ == "charge.refunded":
        payment = await service.payment_by_charge(session, obj["id"])
        if payment is None or payment.status != "captured":
            raise service.SettlementNotReady(f"charge {obj['id']} is not recorded yet")
        for refund in obj.get("refunds", {}).get("data", []):
            await service.record_money_back(session, payment, provider_object_id=refund["id"],
                                            amount_minor=refund["amount"], kind="refund", gateway=gateway)
    elif type_ == "charge.dispute.created":
        payment = await service.payment_by_charge(session, obj["charge"])
        if payment is None or payment.status != "captured":
            raise service.SettlementNotReady(f"charge {obj['charge']} is not recorded yet")
        await service.record_money_back(session, payment, provider_object_id=obj["id"],
                                        amount_minor=obj["amount"], kind="dispute", gateway=gateway)
    elif type_ == "transfer.reversed":
        for reversal in obj.get("reversals", {}).get("data", []):
            await service.record_external_reversal(session, transfer_id=obj["id"], reversal_id=reversal["id"],
                                                   amount_minor=reversal["amount"])
