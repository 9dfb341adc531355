"""A customer's cancellation and reschedule, and the money of a cancellation fee.

The quote says what cancelling costs now under the current rules (settlement/rules.py). Cancel
is bound to the fee the customer was shown: a higher fee now is a conflict, and the fee quoted
travels in the order's `cancel` event, so the asynchronous settlement handler charges exactly
that, never a fee recomputed later. The fee is captured from the hold (the rest released in the
same capture), split in one ledger entry between the platform and the technician's payable,
and his share paid out like any settlement (a `cancellation` settlement, no review).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from dispatch.errors import IllegalTransition
from dispatch import queries
from dispatch.models import Order
from dispatch.states import next_state
from kit.errors import Conflict
from settlement import ledger, service
from settlement.gateway import PaymentGateway
from settlement.ledger import Posting
from settlement.models import Payment, RuleSet, Settlement
from settlement.rules import cancellation_fee, split_cancellation_fee

# Operations cancel for operational reasons (supply cut, duplicate): the customer pays no fee.
_FEE_PAYING_ROLES = frozenset({"customer"})


class CancellationFeeChanged(Conflict):
    """Cancelling now costs more than the fee you accepted; look at the new fee and confirm again."""

    slug = "cancellation-fee-changed"
    fields = ("current_state", "fee")

    def __init__(self, quote: "Quote") -> None:
        super().__init__(f"cancelling now costs {quote.fee_minor} {quote.currency}")
        self.extra = {"current_state": quote.status,
                      "fee": {"amount_minor": quote.fee_minor, "currency": quote.currency}}


class RescheduleNotFree(Conflict):
    """The technician is already committed to this order: rescheduling would dodge the cancellation fee."""

    slug = "reschedule-not-free"
    fields = ("current_state", "fee")

    def __init__(self, quote: "Quote") -> None:
        super().__init__(f"rescheduling is not possible now; cancelling costs {quote.fee_minor} {quote.currency}")
        self.extra = {"current_state": quote.status,
                      "fee": {"amount_minor": quote.fee_minor, "currency": quote.currency}}


class ServiceAlreadyDone(Conflict):
    """The job was done; its payment needs another card, not a cancellation."""

    slug = "service-already-done"
    fields = ("current_state",)

    def __init__(self, status: str) -> None:
        super().__init__()
        self.extra = {"current_state": status}


def _service_done(order: Order, role: str) -> bool:
    # payment_attention keeps the technician only when the job was completed before the decline.
    return role in _FEE_PAYING_ROLES and order.status == "payment_attention" and order.technician_id is not None


@dataclass(frozen=True)
class Quote:
    order_id: uuid.UUID
    status: str
    fee_minor: int
    technician_share_minor: int
    currency: str
    rule_version: int
    free_until: datetime | None
    can_cancel: bool
    can_reschedule: bool

    def as_event_payload(self) -> dict[str, Any] | None:
        if self.fee_minor == 0:
            return None
        return {"fee_minor": self.fee_minor, "technician_share_minor": self.technician_share_minor,
                "currency": self.currency, "rule_version": self.rule_version}


def _allowed(status: str, action: str, role: str) -> bool:
    try:
        next_state(status, action, role, reason=action)
    except IllegalTransition:
        return False
    return True


async def _accepted_at(session: AsyncSession, order_id: uuid.UUID) -> datetime | None:
    accepts = [e.created_at for e in await dispatch.order_events(session, order_id) if e.action == "accept"]
    return accepts[-1] if accepts else None


def _capturable(order: Order, payment: Payment | None) -> int:
    if payment is None:  # the hold follows the acceptance event; it will be the estimate
        return order.price_estimate_minor
    return payment.held_minor if payment.status == "authorised" else 0


async def quote(session: AsyncSession, order_id: uuid.UUID, *, role: str = "customer",
                now: datetime | None = None) -> Quote:
    """What cancelling costs ``role`` now; free services (no hold) never cost anything."""
    now = now or datetime.now(timezone.utc)
    order = await dispatch.get_order(session, order_id)
    rule_row = await service.current_rules(session)
    fee = cancellation_fee(service.as_rules(rule_row), status=order.status, now=now,
                           accepted_at=await _accepted_at(session, order_id),
                           hold_minor=_capturable(order, await session.get(Payment, order_id)))
    if role not in _FEE_PAYING_ROLES:
        fee_minor, share = 0, 0
    else:
        fee_minor, share = fee.fee_minor, fee.technician_share_minor
    return Quote(order_id=order.id, status=order.status, fee_minor=fee_minor, technician_share_minor=share,
                 currency=order.currency, rule_version=rule_row.version, free_until=fee.free_until,
                 can_cancel=_allowed(order.status, "cancel", role) and not _service_done(order, role),
                 can_reschedule=_allowed(order.status, "reschedule", role) and fee_minor == 0)


async def cancel(session: AsyncSession, order_id: uuid.UUID, actor: dispatch.Actor, *, reason: str,
                 reason_code: str | None, accepted_fee_minor: int | None, now: datetime | None = None) -> Order:
    """A fee lower than the one accepted is charged as it is now; a higher one is a conflict."""
    current = await quote(session, order_id, role=actor.role, now=now)
    if _service_done(await dispatch.get_order(session, order_id), actor.role):
        raise ServiceAlreadyDone(current.status)
    if current.fee_minor > (accepted_fee_minor or 0):
        raise CancellationFeeChanged(current)
    return await dispatch.cancel_order(session, order_id, actor, reason, reason_code=reason_code,
                                       expected_status=current.status,
                                       cancellation_fee=current.as_event_payload())


async def reschedule(session: AsyncSession, order_id: uuid.UUID, actor: dispatch.Actor, *, reason_code: str,
                     reason: str = "", now: datetime | None = None) -> Order:
    """Only while cancelling would be free, so a reschedule never dodges the fee."""
    current = await quote(session, order_id, role=actor.role, now=now)
    if current.fee_minor > 0 and _allowed(current.status, "reschedule", actor.role):
        raise RescheduleNotFree(current)
    return await dispatch.reschedule_order(session, order_id, actor, reason_code=reason_code, reason=reason,
                                           expected_status=current.status)


# -- the money --------------------------------------------------------------------------------


def cancellation_settlement_id(order_id: uuid.UUID) -> uuid.UUID:
    return service.settlement_id_for(order_id)


async def settle_cancelled_order(session: AsyncSession, order_id: uuid.UUID, *, technician_id: uuid.UUID | None,
                                 fee: dict[str, Any] | None, gateway: PaymentGateway) -> Payment | None:
    """Release the hold, or capture the quoted fee from it and book and pay its split. Idempotent:
    a redelivered event finds the payment no longer authorised."""
    payment = await session.get(Payment, order_id, populate_existing=True)  # locked only to book, after the call
    if payment is None or payment.status != "authorised":
        return payment
    fee_minor = min(int(fee["fee_minor"]), payment.held_minor) if fee else 0
    if fee_minor <= 0:
        await service._cancel_hold(session, payment, gateway)
        return payment
    await service._capture(session, payment, fee_minor, gateway, "cancellation fee")
    if payment.status != "captured":
        return payment  # a redelivery booked it while this one called the provider
    rule_row = await session.get(RuleSet, int(fee["rule_version"]))
    assert rule_row is not None, "a quoted rule version is never deleted"
    share = split_cancellation_fee(service.as_rules(rule_row), fee_minor) if technician_id else 0
    settlement = None
    if share > 0:
        settlement = await _cancellation_settlement(session, payment, technician_id, rule_row.version,
                                                    fee_minor=fee_minor, share=share)
    await ledger.post(session, business_key=f"order:{order_id}:cancellation_fee", kind="cancellation_fee",
                      order_id=order_id, settlement_id=settlement.id if settlement else None,
                      memo=f"rule version {rule_row.version}", postings=[
                          Posting(ledger.ORDER_LIABILITY, fee_minor, payment.currency),
                          Posting(ledger.PLATFORM_REVENUE, -(fee_minor - share), payment.currency),
                          *([Posting(ledger.technician_payable(technician_id), -share, payment.currency)]
                            if share else [])])
    if settlement is not None:
        await service.release_accrued(session, technician_id=settlement.technician_id)
    return payment


async def _cancellation_settlement(session: AsyncSession, payment: Payment, technician_id: uuid.UUID,
                                   rule_version: int, *, fee_minor: int, share: int) -> Settlement:
    technician = await queries.find_technician(session, technician_id)
    settlement_id = cancellation_settlement_id(payment.order_id)
    await session.exec(insert(Settlement).values(
        id=settlement_id, order_id=payment.order_id, kind="cancellation", review_id="cancellation",
        technician_id=technician_id, station_id=technician.station_id if technician else None, stars=None,
        rule_version=rule_version, currency=payment.currency, base_minor=fee_minor, adjustment_minor=0,
        fee_minor=fee_minor - share, payout_minor=share, status="accrued", clawback_minor=0,
        receivable_offset_minor=0, created_at=datetime.now(timezone.utc),
        arithmetic={"rule_version": rule_version, "cancellation_fee_minor": fee_minor,
                    "technician_share_minor": share, "platform_share_minor": fee_minor - share,
                    "formula": "share = fee * cancellation_technician_bps / 10000; platform = fee - share"},
    ).on_conflict_do_nothing(index_elements=["order_id"]))
    return (await session.exec(select(Settlement).where(Settlement.order_id == payment.order_id)
                               .execution_options(populate_existing=True))).one()
