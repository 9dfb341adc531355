"""The money flow of an order: hold on accept, a larger hold once the customer approves a
higher price, capture on completion, settlement on the finalized review, a crash-safe
transfer netting what the technician owes, refunds and disputes after settlement.

A declined card ends cleanly: the attempt is recorded, the order moves to `payment_attention`
(the technician is released if he has not reached the door) and the customer is told; he pays
with another card (`retry_payment`), never in a loop. A capture whose hold does not exist yet
raises NotReady so the event is delivered again later.

Every provider call carries a deterministic idempotency key and every ledger entry a
deterministic business key, so any step can be retried. No database lock is held while the
provider is called: the transfer is reserved in one transaction (its netting fixed, committed),
the provider is called with `settlement:{id}:transfer:v1`, and the ledger entries and the new
state are written in another; a claw-back books the receivable and a pending reversal, and the
reversal is decided the same way. A run after a crash completes what was reserved, once.
"""

import asyncio
import os
import signal
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import queries
from dispatch import service as dispatch
from dispatch.models import Order
from dispatch.notifications import notify
from dispatch.reasons import CARD_DECLINED
from dispatch.states import PAYMENT_RELEASES_TECHNICIAN
from kit.config import get_settings
from kit.errors import Conflict, InvalidInput, NotFound, NotReady, TooManyAttempts
from settlement import ledger
from settlement.errors import RefundExceedsCapture
from settlement.gateway import (
    CardDeclined,
    IdempotencyConflict,
    PaymentGateway,
    PaymentRequestRejected,
)
from settlement.ledger import Posting
from settlement.models import (
    Clawback,
    ConnectedAccount,
    Payment,
    PaymentAttempt,
    RuleSet,
    Settlement,
)
from settlement.rules import Rules, check_adjustment, compute

log = structlog.get_logger(__name__)
SYSTEM = dispatch.Actor.system("settlement")


class SettlementNotReady(Conflict):
    """The payment for this order is not captured yet; the event is retried later."""

    slug = "settlement-not-ready"


@lru_cache
def get_gateway() -> PaymentGateway:
    settings = get_settings()
    if settings.payment_gateway == "stripe":
        from settlement.stripe_gateway import StripeGateway

        return StripeGateway(settings.stripe_api_key, settings.stripe_api_base or "https://api.stripe.com",
                             settings.stripe_webhook_secret)
    from settlement.sandbox_gateway import SandboxGateway

    return SandboxGateway(settings.database_url, settings.stripe_webhook_secret)


async def _call(method: Any, **kwargs: Any) -> Any:
    # The port is synchronous (HTTP for Stripe, its own connection for the sandbox).
    return await asyncio.to_thread(method, **kwargs)


def _fault(point: str) -> None:
    if get_settings().fault == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _end_step(session: AsyncSession) -> None:
    """End a step before a provider call: committed, so no lock it took is held during the call.
    Inside a caller's savepoint the caller owns the boundary, and the step is only flushed."""
    if session.in_nested_transaction():
        await session.flush()
    else:
        await session.commit()


# -- rules ----------------------------------------------------------------------------------


def as_rules(row: RuleSet) -> Rules:
    return Rules(row.version, row.platform_fee_bps, row.platform_fee_fixed_minor, row.adjustment_bps_by_stars,
                 row.minimum_payout_minor, row.payout_schedule, row.cancellation_fee_minor,
                 row.cancellation_fee_accepted_minor, row.cancellation_free_minutes, row.cancellation_technician_bps)


async def current_rules(session: AsyncSession) -> RuleSet:
    row = (await session.exec(select(RuleSet).order_by(RuleSet.version.desc()).limit(1))).first()
    if row is None:
        raise NotFound("no settlement rules are defined")
    return row


async def list_rules(session: AsyncSession) -> list[RuleSet]:
    return list((await session.exec(select(RuleSet).order_by(RuleSet.version))).all())


async def publish_rules(session: AsyncSession, *, created_by: str, **values: Any) -> RuleSet:
    """A new version; settlements already made keep the version they used."""
    stars = values["adjustment_bps_by_stars"]
    if set(stars) != {"1", "2", "3", "4", "5"}:
        raise InvalidInput("adjustment_bps_by_stars needs an entry for each of 1..5 stars")
    for bps in stars.values():
        check_adjustment(values["platform_fee_bps"], bps)
    latest = (await session.exec(select(func.max(RuleSet.version)))).one() or 0
    row = RuleSet(version=latest + 1, created_by=created_by, **values)
    session.add(row)
    await session.flush()
    return row


# -- customer side --------------------------------------------------------------------------


MAX_PAYMENT_ATTEMPTS = 5
# Refusals that mean "this card will not pay": the customer must choose another one.
_DECLINES = (CardDeclined, PaymentRequestRejected)


def _hold_key(order_id: uuid.UUID, attempt: int) -> str:
    return f"settlement:{order_id}:hold:v1" if attempt == 1 else f"settlement:{order_id}:hold:attempt{attempt}:v1"


async def payment_attempts(session: AsyncSession, order_id: uuid.UUID) -> list[PaymentAttempt]:
    return list((await session.exec(select(PaymentAttempt).where(PaymentAttempt.order_id == order_id)
                                    .order_by(PaymentAttempt.attempt))).all())


async def _payment_method(session: AsyncSession, order_id: uuid.UUID) -> str:
    """The card the customer gave for this order in a retry, else the platform's current default."""
    given = (await session.exec(select(PaymentAttempt.payment_method_ref).where(
        PaymentAttempt.order_id == order_id, PaymentAttempt.outcome == "authorised", PaymentAttempt.attempt > 1)
        .order_by(PaymentAttempt.attempt.desc()).limit(1))).first()
    return given or get_settings().settlement_payment_method_ref


async def _authorise(session: AsyncSession, order: Order, attempt: int, payment_method_ref: str,
                     gateway: PaymentGateway) -> Payment | None:
    """One authorisation of the order's price; the attempt is recorded either way, None if declined."""
    code = None
    try:
        hold = await _call(gateway.authorise, order_id=str(order.id), amount_minor=order.price_estimate_minor,
                           currency=order.currency, customer_ref=None, payment_method_ref=payment_method_ref,
                           idempotency_key=_hold_key(order.id, attempt))
    except IdempotencyConflict as exc:
        raise Conflict("another payment attempt for this order is in progress") from exc
    except _DECLINES as exc:
        hold, code = None, (exc.code or "card_declined")[:64]
        log.info("settlement.hold_declined", order_id=str(order.id), attempt=attempt, code=code)
    recorded = (await session.exec(insert(PaymentAttempt).values(
        order_id=order.id, attempt=attempt, payment_method_ref=payment_method_ref,
        outcome="declined" if hold is None else "authorised", decline_code=code,
        created_at=_now()).on_conflict_do_nothing().returning(PaymentAttempt.attempt))).first()
    if recorded is None:
        raise Conflict("another payment attempt for this order is in progress")
    if hold is None:
        return None
    payment = Payment(order_id=order.id, customer_id=order.customer_id, currency=hold.currency, hold_id=hold.id,
                      charge_id=hold.charge_id, held_minor=hold.amount_minor)
    session.add(payment)
    await ledger.post(session, business_key=f"order:{order.id}:hold", kind="hold", order_id=order.id,
                      provider_object_id=hold.id, postings=[
                          Posting(ledger.CUSTOMER_HOLDS, hold.amount_minor, hold.currency),
                          Posting(ledger.ORDER_LIABILITY, -hold.amount_minor, hold.currency)])
    return payment


async def place_hold(session: AsyncSession, order_id: uuid.UUID, gateway: PaymentGateway) -> Payment | None:
    """The hold at acceptance. A declined card is recorded once and the order waits for the
    customer (payment_attention); a redelivered event finds the attempt and does nothing."""
    existing = await session.get(Payment, order_id)
    if existing is not None:
        return existing
    order = await dispatch.get_order(session, order_id)
    if order.price_estimate_minor == 0:
        return None  # free services (inspections, emergencies) take no payment
    if await payment_attempts(session, order_id):
        return None  # declined before: only the customer's retry tries again
    payment = await _authorise(session, order, 1, get_settings().settlement_payment_method_ref, gateway)
    if payment is None:
        await _needs_attention(session, order_id, CARD_DECLINED)
    return payment


async def _needs_attention(session: AsyncSession, order_id: uuid.UUID, reason_code: str) -> None:
    """The customer must pay with another card. Before the door the technician is released; at the
    door the job goes on and the order moves once it is completed (capture_order)."""
    order = await queries.find_order(session, order_id, refresh=True)
    if order.status not in (*PAYMENT_RELEASES_TECHNICIAN, "completed"):
        log.warning("settlement.declined_during_service", order_id=str(order_id), status=order.status)
        return
    release = order.status in PAYMENT_RELEASES_TECHNICIAN
    payload: dict[str, Any] = {"reason_code": reason_code}
    if release and order.technician_id is not None:
        payload["released_technician_id"] = str(order.technician_id)
    await dispatch.transition(session, order_id, "payment_declined", SYSTEM, reason=reason_code, payload=payload,
                              set_values={"technician_id": None} if release else None)
    customer = await queries.find_customer(session, order.customer_id)
    if customer is not None:
        attempts = len(await payment_attempts(session, order_id))
        await notify(session, customer.account_id, "payment_attention", "付款需要处理 / Payment needs attention",
                     "Your card was declined. Pay with another card to continue.",
                     {"order_id": str(order_id), "reason_code": reason_code,
                      "attempts_left": max(MAX_PAYMENT_ATTEMPTS - attempts, 0)},
                     dedupe_key=f"payment_attention:{order_id}:{attempts}")


async def retry_payment(session: AsyncSession, order_id: uuid.UUID, payment_method_ref: str,
                        gateway: PaymentGateway) -> tuple[Order, str, int]:
    """The customer pays an order in payment_attention with another card: (order, outcome, attempts left).

    Authorised: the order returns to matching, or to completed when the job was done (its
    capture follows). Declined: it stays, and the customer may try up to MAX_PAYMENT_ATTEMPTS.
    Nothing is locked while the provider is called; a concurrent second attempt is a conflict.
    """
    order = await dispatch.get_order(session, order_id)
    if order.status != "payment_attention":
        raise dispatch.OrderStateConflict(f"order is {order.status}, its payment needs nothing", order.status)
    attempts = len(await payment_attempts(session, order_id))
    if attempts >= MAX_PAYMENT_ATTEMPTS:
        raise TooManyAttempts("too many cards tried for this order; cancel it or call the hotline",
                              retry_after_s=24 * 3600)
    payment = await _authorise(session, order, attempts + 1, payment_method_ref, gateway)
    left = MAX_PAYMENT_ATTEMPTS - attempts - 1
    if payment is None:
        return order, "declined", left
    into = [e for e in await dispatch.order_events(session, order_id) if e.to_status == "payment_attention"][-1]
    action = "payment_recovered" if into.from_status == "completed" else "payment_retried"
    order = await dispatch.transition(session, order_id, action, SYSTEM, expected_status="payment_attention",
                                      payload={"reason_code": "payment_authorised"})
    return order, "authorised", left


async def _still_holding(session: AsyncSession, payment: Payment, hold_id: str | None) -> bool:
    """After a provider call made without a lock: the payment row locked now, and still on the
    hold the call acted on (else a redelivery booked it meanwhile, and the idempotent call
    returned that same result)."""
    await session.refresh(payment, with_for_update=True)
    return payment.status == "authorised" and payment.hold_id == hold_id


async def _capture(session: AsyncSession, payment: Payment, amount: int, gateway: PaymentGateway, memo: str) -> None:
    hold_id = payment.hold_id
    capture = await _call(gateway.capture, hold_id=hold_id, amount_minor=amount,
                          idempotency_key=f"settlement:{payment.order_id}:capture:v1")
    if not await _still_holding(session, payment, hold_id):
        return
    held = payment.held_minor
    await ledger.post(session, business_key=f"order:{payment.order_id}:capture", kind="capture",
                      order_id=payment.order_id, provider_object_id=capture.charge_id, memo=memo, postings=[
                          Posting(ledger.PROVIDER_BALANCE, capture.amount_minor, payment.currency),
                          Posting(ledger.ORDER_LIABILITY, held - capture.amount_minor, payment.currency),
                          Posting(ledger.CUSTOMER_HOLDS, -held, payment.currency)])
    payment.captured_minor, payment.charge_id = capture.amount_minor, capture.charge_id
    payment.status, payment.updated_at = "captured", _now()
    session.add(payment)
    await session.flush()


async def raise_hold(session: AsyncSession, order_id: uuid.UUID, amount_minor: int,
                     gateway: PaymentGateway) -> Payment | None:
    """The customer approved a price above the hold: hold the full amount instead.

    A new authorisation for the full price replaces the old one (cancelled only once the new
    one succeeded), rather than a second hold for the difference: one charge per order keeps
    the transfer's source charge, refunds, disputes and their webhooks on a single object.
    A declined card keeps the old hold; capture then charges what is held.
    """
    payment = await session.get(Payment, order_id, populate_existing=True)  # locked only to book, after the call
    if payment is None or payment.status != "authorised" or amount_minor <= payment.held_minor:
        return payment
    await _raise_hold(session, payment, amount_minor, gateway)
    return payment


async def _raise_hold(session: AsyncSession, payment: Payment, amount: int, gateway: PaymentGateway) -> None:
    order_id, old_hold_id, old_amount = payment.order_id, payment.hold_id, payment.held_minor
    try:
        hold = await _call(gateway.authorise, order_id=str(order_id), amount_minor=amount, currency=payment.currency,
                           customer_ref=None, payment_method_ref=await _payment_method(session, order_id),
                           idempotency_key=f"settlement:{order_id}:hold:{amount}:v1")
    except (CardDeclined, PaymentRequestRejected) as exc:
        log.info("settlement.raise_hold_refused", order_id=str(order_id), amount_minor=amount, error=str(exc))
        return
    await _call(gateway.cancel_hold, hold_id=old_hold_id, idempotency_key=f"settlement:{order_id}:cancel:{old_hold_id}:v1")
    if not await _still_holding(session, payment, old_hold_id):
        return
    await ledger.post(session, business_key=f"order:{order_id}:hold:{amount}", kind="hold", order_id=order_id,
                      provider_object_id=hold.id, memo=f"approved price; replaces hold {old_hold_id}", postings=[
                          Posting(ledger.CUSTOMER_HOLDS, hold.amount_minor, hold.currency),
                          Posting(ledger.ORDER_LIABILITY, -hold.amount_minor, hold.currency)])
    await ledger.post(session, business_key=f"order:{order_id}:hold_replaced:{old_hold_id}", kind="hold_released",
                      order_id=order_id, memo=f"replaced by hold {hold.id}", postings=[
                          Posting(ledger.ORDER_LIABILITY, old_amount, payment.currency),
                          Posting(ledger.CUSTOMER_HOLDS, -old_amount, payment.currency)])
    payment.hold_id, payment.charge_id, payment.held_minor = hold.id, hold.charge_id, hold.amount_minor
    payment.updated_at = _now()
    session.add(payment)
    await session.flush()


async def capture_order(session: AsyncSession, order_id: uuid.UUID, final_price_minor: int | None,
                        gateway: PaymentGateway) -> Payment | None:
    """Capture the final price; what is left of the hold is released by capturing less.

    Dispatch completes above the estimate only with the customer's approval, so a price above
    the hold raises it here too when the approval event has not been handled yet. Without a
    hold: a free job needs none; a declined card sends the order to payment_attention; otherwise
    the hold is not placed yet and NotReady has the event delivered again later.
    """
    payment = await session.get(Payment, order_id, populate_existing=True)  # locked only to book, after each call
    order = await dispatch.get_order(session, order_id)
    price = order.price_estimate_minor if final_price_minor is None else int(final_price_minor)
    if payment is None:
        if price <= 0:
            return None
        attempts = await payment_attempts(session, order_id)
        if attempts and attempts[-1].outcome == "declined":
            await _needs_attention(session, order_id, attempts[-1].decline_code or CARD_DECLINED)
            return None
        raise NotReady(f"order {order_id} has no hold yet", retry_after_s=5)
    if payment.status != "authorised":
        return payment
    if price <= 0:
        await _cancel_hold(session, payment, gateway)
        return payment
    if price > payment.held_minor:
        await _raise_hold(session, payment, price, gateway)
        if payment.status != "authorised":
            return payment
    amount = min(price, payment.held_minor)
    memo = "" if amount == price else f"final price {price} above the hold; captured the hold"
    await _capture(session, payment, amount, gateway, memo)
    return payment


async def _cancel_hold(session: AsyncSession, payment: Payment, gateway: PaymentGateway) -> None:
    hold_id = payment.hold_id
    await _call(gateway.cancel_hold, hold_id=hold_id, idempotency_key=f"settlement:{payment.order_id}:cancel:v1")
    if not await _still_holding(session, payment, hold_id):
        return
    await ledger.post(session, business_key=f"order:{payment.order_id}:hold_released", kind="hold_released",
                      order_id=payment.order_id, postings=[
                          Posting(ledger.ORDER_LIABILITY, payment.held_minor, payment.currency),
                          Posting(ledger.CUSTOMER_HOLDS, -payment.held_minor, payment.currency)])
    payment.status, payment.updated_at = "cancelled", _now()
    session.add(payment)
    await session.flush()


# -- settlement -----------------------------------------------------------------------------


def settlement_id_for(order_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"gasdispatch:settlement:{order_id}")


async def compute_settlement(
    session: AsyncSession, *, order_id: uuid.UUID, review_id: str, stars: int,
) -> Settlement:
    """One settlement per order (unique order_id): a second computation returns the first."""
    existing = (await session.exec(select(Settlement).where(Settlement.order_id == order_id))).first()
    if existing is not None:
        return existing
    if not 1 <= stars <= 5:
        raise InvalidInput("stars must be 1..5")
    order = await dispatch.get_order(session, order_id)
    if order.technician_id is None or order.status not in ("completed", "reviewed"):
        raise SettlementNotReady(f"order is {order.status}")
    payment = await session.get(Payment, order_id)
    if payment is not None and payment.status != "captured":
        raise SettlementNotReady("the payment is not captured yet")
    if payment is None and order.price_estimate_minor > 0:
        raise SettlementNotReady("the customer's payment is not settled yet")
    base = 0 if payment is None else payment.captured_minor - payment.refunded_minor
    rule_row = await current_rules(session)
    result = compute(as_rules(rule_row), base_minor=base, stars=stars)
    technician = await queries.find_technician(session, order.technician_id)
    settlement_id = settlement_id_for(order_id)
    inserted = (await session.exec(insert(Settlement).values(
        id=settlement_id, order_id=order_id, review_id=review_id, technician_id=order.technician_id,
        station_id=technician.station_id if technician else None, stars=stars, rule_version=rule_row.version,
        currency=order.currency, base_minor=result.base_minor, adjustment_minor=result.adjustment_minor,
        fee_minor=result.fee_minor, payout_minor=result.payout_minor, arithmetic=result.arithmetic,
        status="held" if result.held else "accrued", clawback_minor=0, receivable_offset_minor=0, created_at=_now(),
    ).on_conflict_do_nothing(index_elements=["order_id"]).returning(Settlement.id))).first()
    settlement = (await session.exec(
        select(Settlement).where(Settlement.order_id == order_id).execution_options(populate_existing=True))).one()
    if inserted is None:
        return settlement  # a concurrent worker computed it first
    if not result.held:
        await _book_settlement(session, settlement)
    return settlement


async def _book_settlement(session: AsyncSession, s: Settlement) -> None:
    postings = [Posting(ledger.ORDER_LIABILITY, s.base_minor, s.currency),
                Posting(ledger.QUALITY_BONUS_POOL, s.adjustment_minor, s.currency),
                Posting(ledger.PLATFORM_REVENUE, -s.fee_minor, s.currency),
                Posting(ledger.technician_payable(s.technician_id), -s.payout_minor, s.currency)]
    if any(p.amount_minor for p in postings):  # a free or fully refunded job moves no money
        await ledger.post(session, business_key=f"settlement:{s.id}:computed", kind="settlement",
                          order_id=s.order_id, settlement_id=s.id, postings=postings)
    if s.payout_minor == 0:
        await _mark_settled(session, s, status_from="accrued")
        return
    await release_accrued(session, technician_id=s.technician_id)


async def release_accrued(session: AsyncSession, *, technician_id: uuid.UUID | None = None,
                          daily_batch: bool = False) -> int:
    """Move accrued settlements to transfer_pending once the technician's total reaches the minimum.

    Under the daily schedule only the batch run releases them.
    """
    rules = await current_rules(session)
    if rules.payout_schedule == "daily" and not daily_batch:
        return 0
    statement = (select(Settlement.technician_id, func.sum(Settlement.payout_minor))
                 .where(Settlement.status == "accrued").group_by(Settlement.technician_id))
    if technician_id is not None:
        statement = statement.where(Settlement.technician_id == technician_id)
    ready = [t for t, total in (await session.exec(statement)).all() if total >= rules.minimum_payout_minor]
    if not ready:
        return 0
    result = await session.exec(update(Settlement).where(
        Settlement.status == "accrued", Settlement.technician_id.in_(ready)).values(status="transfer_pending"))
    await session.flush()
    return result.rowcount


async def release_held(session: AsyncSession, settlement_id: uuid.UUID, *, adjustment_bps: int,
                       decided_by: str) -> Settlement:
    """Operations decide a held (low-rated) settlement: the adjustment they chose, recorded with it."""
    s = await session.get(Settlement, settlement_id, with_for_update=True)
    if s is None:
        raise NotFound("no such settlement")
    if s.status != "held":
        raise Conflict(f"settlement is {s.status}, not held")
    rules = as_rules(await session.get(RuleSet, s.rule_version))
    check_adjustment(rules.platform_fee_bps, adjustment_bps)
    payment = await session.get(Payment, s.order_id)
    base = 0 if payment is None else payment.captured_minor - payment.refunded_minor
    result = compute(rules, base_minor=base, stars=s.stars, adjustment_bps=adjustment_bps)
    s.base_minor, s.adjustment_minor, s.fee_minor, s.payout_minor = (
        result.base_minor, result.adjustment_minor, result.fee_minor, result.payout_minor)
    s.arithmetic = {**result.arithmetic, "released_by": decided_by, "released_at": _now().isoformat()}
    s.status = "accrued"
    session.add(s)
    await session.flush()
    await _book_settlement(session, s)
    return s


async def ensure_connected_account(session: AsyncSession, technician_id: uuid.UUID,
                                   gateway: PaymentGateway) -> ConnectedAccount:
    row = await session.get(ConnectedAccount, technician_id)
    if row is not None:
        return row
    technician = await queries.find_technician(session, technician_id)
    if technician is None:
        raise NotFound("no such technician")
    account = await queries.find_account(session, technician.account_id)
    created = await _call(gateway.create_connected_account, technician_id=str(technician_id),
                          email=account.email if account else f"{technician_id}@technicians.invalid",
                          idempotency_key=f"settlement:technician:{technician_id}:account:v1")
    await session.exec(insert(ConnectedAccount).values(
        technician_id=technician_id, provider_account_id=created.id, created_at=_now(),
    ).on_conflict_do_nothing())
    return (await session.exec(select(ConnectedAccount).where(ConnectedAccount.technician_id == technician_id)
                               .execution_options(populate_existing=True))).one()


async def transfer_settlement(session: AsyncSession, settlement_id: uuid.UUID, gateway: PaymentGateway) -> bool:
    """Pay one transfer_pending settlement; False if another worker booked it or it is done.

    Three steps, so no lock is held while the provider is called: reserve (the netting of his
    receivable fixed on the row, committed), the provider call with the settlement's idempotency
    key, and the booking (the caller commits). A run after a crash between them finds the
    reservation and completes it with the same amount and key: paid once, booked once.
    """
    s = await session.get(Settlement, settlement_id, populate_existing=True)
    if s is None or s.status != "transfer_pending":
        return False
    account = await ensure_connected_account(session, s.technician_id, gateway)
    await _end_step(session)
    s = await _reserve_transfer(session, settlement_id, account)
    if s is None:
        return False
    await _end_step(session)
    transfer = None
    if s.payout_minor - s.receivable_offset_minor > 0:
        transfer = await _provider_transfer(session, s, account, gateway)
        _fault("after_provider_call")
    return await _book_transfer(session, settlement_id, transfer)


async def _lock_technician_payouts(session: AsyncSession, technician_id: uuid.UUID) -> None:
    # Reservations and bookings of one technician's payouts in turn: two never net one receivable.
    await session.exec(select(ConnectedAccount).where(ConnectedAccount.technician_id == technician_id)
                       .with_for_update())


async def _reserve_transfer(session: AsyncSession, settlement_id: uuid.UUID,
                            account: ConnectedAccount) -> Settlement | None:
    s = (await session.exec(select(Settlement).where(
        Settlement.id == settlement_id, Settlement.status == "transfer_pending",
    ).with_for_update(skip_locked=True).execution_options(populate_existing=True))).first()
    if s is None or s.transfer_requested_at is not None:
        return s  # None: another worker is reserving it; reserved: complete it as reserved
    if await session.get(Payment, s.order_id) is None:
        raise SettlementNotReady("no captured payment to transfer from")
    await _lock_technician_payouts(session, s.technician_id)
    owed = await ledger.balance(session, ledger.technician_receivable(s.technician_id), s.currency)
    reserved_elsewhere = (await session.exec(select(func.coalesce(func.sum(Settlement.receivable_offset_minor), 0))
                                             .where(Settlement.technician_id == s.technician_id,
                                                    Settlement.status == "transfer_pending",
                                                    Settlement.transfer_requested_at.is_not(None),
                                                    Settlement.id != s.id))).one()
    s.receivable_offset_minor = min(max(owed - int(reserved_elsewhere), 0), s.payout_minor)
    s.connected_account_id, s.transfer_requested_at = account.provider_account_id, _now()
    session.add(s)
    await session.flush()
    return s


async def _provider_transfer(session: AsyncSession, s: Settlement, account: ConnectedAccount,
                             gateway: PaymentGateway) -> Any:
    key = f"settlement:{s.id}:transfer:v1"
    payment = await session.get(Payment, s.order_id)
    try:
        return (await _call(gateway.find_transfer, transfer_group=str(s.order_id), idempotency_key=key)
                or await _call(gateway.transfer, account_id=account.provider_account_id,
                               amount_minor=s.payout_minor - s.receivable_offset_minor, currency=s.currency,
                               transfer_group=str(s.order_id), source_charge_id=payment.charge_id,
                               idempotency_key=key))
    except PaymentRequestRejected as exc:
        if exc.code not in ("insufficient_funds", "balance_insufficient"):
            raise
        # Money went back on the charge (a refund or dispute) that its webhook has not booked
        # yet: no transfer was made, so the reservation is dropped and, once the money back is
        # booked, the next run nets it as a receivable.
        await session.exec(update(Settlement).where(Settlement.id == s.id, Settlement.status == "transfer_pending")
                           .values(transfer_requested_at=None, receivable_offset_minor=0))
        await _end_step(session)
        log.warning("settlement.transfer_waits_for_money_back", settlement_id=str(s.id), error=str(exc))
        raise SettlementNotReady("money went back on the charge and is not booked yet") from exc


async def _book_transfer(session: AsyncSession, settlement_id: uuid.UUID, transfer: Any) -> bool:
    s = (await session.exec(select(Settlement).where(Settlement.id == settlement_id).with_for_update()
                            .execution_options(populate_existing=True))).one()
    if s.status != "transfer_pending":
        return False  # a concurrent run booked the same transfer
    await _lock_technician_payouts(session, s.technician_id)
    offset = s.receivable_offset_minor
    if offset > 0:
        await ledger.post(session, business_key=f"settlement:{s.id}:receivable_offset", kind="receivable_offset",
                          order_id=s.order_id, settlement_id=s.id, memo="receivable collected from this payout",
                          postings=[Posting(ledger.technician_payable(s.technician_id), offset, s.currency),
                                    Posting(ledger.technician_receivable(s.technician_id), -offset, s.currency)])
    if transfer is not None:
        await ledger.post(session, business_key=f"settlement:{s.id}:transfer", kind="transfer", order_id=s.order_id,
                          settlement_id=s.id, provider_object_id=transfer.id, postings=[
                              Posting(ledger.technician_payable(s.technician_id), transfer.amount_minor, s.currency),
                              Posting(ledger.PROVIDER_BALANCE, -transfer.amount_minor, s.currency)])
        _fault("after_ledger_write")
        s.transfer_id = transfer.id
    session.add(s)
    await _mark_settled(session, s, status_from="transfer_pending")
    return True


async def _mark_settled(session: AsyncSession, s: Settlement, *, status_from: str) -> None:
    result = await session.exec(update(Settlement).where(Settlement.id == s.id, Settlement.status == status_from)
                                .values(status="transferred", transferred_at=_now(), transfer_id=s.transfer_id,
                                        connected_account_id=s.connected_account_id,
                                        receivable_offset_minor=s.receivable_offset_minor))
    if result.rowcount != 1:
        raise Conflict("the settlement changed meanwhile")
    if s.kind == "cancellation":  # the order ended cancelled; it has no review or settle step
        await session.refresh(s)
        return
    order = await dispatch.get_order(session, s.order_id)
    if order.status == "completed":  # the review event may arrive before ratings moved the order
        await dispatch.transition(session, s.order_id, "review", SYSTEM)
    await dispatch.transition(session, s.order_id, "settle", SYSTEM, payload={
        "settlement_id": str(s.id), "payout_minor": s.payout_minor, "transfer_id": s.transfer_id})
    await session.refresh(s)


async def pending_transfer_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list((await session.exec(select(Settlement.id).where(Settlement.status == "transfer_pending")
                                    .order_by(Settlement.created_at))).all())


# -- refunds and disputes -------------------------------------------------------------------


async def refund_order(session: AsyncSession, order_id: uuid.UUID, *, amount_minor: int, request_key: str,
                       gateway: PaymentGateway) -> str:
    """Nothing is locked during the provider call: the refund's idempotency key makes it once, and
    record_money_back checks the amount again under the payment's lock."""
    payment = await session.get(Payment, order_id, populate_existing=True)
    if payment is None or payment.status != "captured":
        raise InvalidInput("only a captured payment can be refunded")
    if not 0 < amount_minor <= payment.captured_minor - payment.refunded_minor:
        raise InvalidInput(f"refund must be 1..{payment.captured_minor - payment.refunded_minor}")
    refund = await _call(gateway.refund, charge_or_hold_id=payment.charge_id, amount_minor=amount_minor,
                         idempotency_key=f"settlement:{order_id}:refund:{request_key}:v1")
    await record_money_back(session, payment, provider_object_id=refund.id, amount_minor=refund.amount_minor,
                            kind="refund", gateway=gateway)
    await reverse_pending_clawbacks(session, gateway)
    return refund.id


async def record_money_back(session: AsyncSession, payment: Payment, *, provider_object_id: str, amount_minor: int,
                            kind: str, gateway: PaymentGateway) -> bool:
    """A refund or dispute, never more than is left of the capture. Before settlement it lowers the
    base; after, the technician bears it up to his payout: reversed from his transfer as far as the
    provider allows, the rest a receivable. The reversal is left pending here: the caller decides
    it with reverse_pending_clawbacks once its own locks are released.
    """
    payment = await session.get(Payment, payment.order_id, with_for_update=True, populate_existing=True)
    if await ledger.has_provider_object(session, provider_object_id):
        return False
    left = payment.captured_minor - payment.refunded_minor
    if not 0 < amount_minor <= left:
        raise RefundExceedsCapture(
            f"{kind} {provider_object_id} of {amount_minor} is outside 1..{left} left of the capture")
    s = (await session.exec(select(Settlement).where(Settlement.order_id == payment.order_id)
                            .with_for_update().execution_options(populate_existing=True))).first()
    booked = s is not None and s.status != "held"
    debit = ledger.REFUNDS if booked else ledger.ORDER_LIABILITY
    _, created = await ledger.post(
        session, business_key=f"provider:{provider_object_id}", kind=kind, order_id=payment.order_id,
        provider_object_id=provider_object_id, postings=[
            Posting(debit, amount_minor, payment.currency),
            Posting(ledger.PROVIDER_BALANCE, -amount_minor, payment.currency)])
    if not created:
        return False
    payment.refunded_minor += amount_minor
    payment.updated_at = _now()
    session.add(payment)
    await session.flush()
    if booked:
        await _claw_back(session, s, provider_object_id, amount_minor)
    return True


async def _claw_back(session: AsyncSession, s: Settlement, cause_id: str, amount_minor: int) -> None:
    """Book what he owes back and, when he was paid out, a pending reversal of his transfer."""
    clawback = min(amount_minor, s.payout_minor - s.clawback_minor)
    if clawback <= 0:
        return
    receivable = ledger.technician_receivable(s.technician_id)
    await ledger.post(session, business_key=f"settlement:{s.id}:clawback:{cause_id}", kind="clawback",
                      order_id=s.order_id, settlement_id=s.id, postings=[
                          Posting(receivable, clawback, s.currency), Posting(ledger.REFUNDS, -clawback, s.currency)])
    s.clawback_minor += clawback
    session.add(s)
    await session.flush()
    if s.transfer_id is None:
        return  # not paid out: netted from this or a later payout
    await session.exec(insert(Clawback).values(settlement_id=s.id, cause_id=cause_id, amount_minor=clawback,
                                               status="pending", created_at=_now()).on_conflict_do_nothing())


async def reverse_clawbacks(session: AsyncSession, settlement_id: uuid.UUID, gateway: PaymentGateway) -> int:
    """Try the pending reversals of one settlement's claw-backs; returns how many were decided.

    Nothing is locked while the provider is called: the amount to reverse is fixed on the
    claw-back row first (committed), the reversal is made with a key of its own, and the decision
    (reversed, or kept as his receivable, netted from later payouts) is booked once under the
    row's lock. A run after a crash repeats the call with the same key and amount.
    """
    s = await session.get(Settlement, settlement_id, populate_existing=True)
    pending = (await session.exec(select(Clawback).where(Clawback.settlement_id == settlement_id,
                                                         Clawback.status == "pending")
                                  .order_by(Clawback.created_at).execution_options(populate_existing=True))).all()
    decided = 0
    for c in pending:
        amount = c.reversal_minor
        if amount is None:
            amount = await _reversible(s, c, gateway)
            await session.exec(update(Clawback).where(Clawback.settlement_id == s.id, Clawback.cause_id == c.cause_id,
                                                      Clawback.reversal_minor.is_(None)).values(reversal_minor=amount))
            await _end_step(session)
            await session.refresh(c)
            amount = c.reversal_minor
        reversal = None
        if amount > 0:
            try:
                reversal = await _call(gateway.reverse_transfer, transfer_id=s.transfer_id, amount_minor=amount,
                                       idempotency_key=f"settlement:{s.id}:reversal:{c.cause_id}:v1")
            except PaymentRequestRejected as exc:  # his balance moved since we read it: the receivable stays
                log.info("settlement.reversal_refused", settlement_id=str(s.id), error=str(exc))
        decided += await _book_reversal(session, s, c.cause_id, reversal)
        await _end_step(session)
    return decided


async def _reversible(s: Settlement, c: Clawback, gateway: PaymentGateway) -> int:
    transfer = await _call(gateway.find_transfer, transfer_group=str(s.order_id),
                           idempotency_key=f"settlement:{s.id}:transfer:v1")
    if transfer is None:
        return 0
    available = await _call(gateway.available_balance, account_id=transfer.account_id, currency=s.currency)
    reversible = min(c.amount_minor, transfer.amount_minor - transfer.amount_reversed_minor, available)
    if reversible <= 0:
        log.info("settlement.reversal_skipped", settlement_id=str(s.id), balance_minor=available)
    return max(reversible, 0)


async def _book_reversal(session: AsyncSession, s: Settlement, cause_id: str, reversal: Any) -> int:
    c = (await session.exec(select(Clawback).where(Clawback.settlement_id == s.id, Clawback.cause_id == cause_id,
                                                   Clawback.status == "pending").with_for_update()
                            .execution_options(populate_existing=True))).first()
    if c is None:
        return 0  # a concurrent run decided it
    if reversal is not None:
        # What is not reversed stays a receivable, netted from his later payouts.
        await ledger.post(session, business_key=f"provider:{reversal.id}", kind="reversal", order_id=s.order_id,
                          settlement_id=s.id, provider_object_id=reversal.id, postings=[
                              Posting(ledger.PROVIDER_BALANCE, reversal.amount_minor, s.currency),
                              Posting(ledger.technician_receivable(s.technician_id), -reversal.amount_minor,
                                      s.currency)])
    c.status = "kept" if reversal is None else "reversed"
    c.reversal_id, c.decided_at = reversal.id if reversal is not None else None, _now()
    session.add(c)
    await session.flush()
    return 1


async def pending_clawback_settlement_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list((await session.exec(select(Clawback.settlement_id).where(Clawback.status == "pending")
                                    .distinct())).all())


async def reverse_pending_clawbacks(session: AsyncSession, gateway: PaymentGateway) -> int:
    """End the caller's step (its locks released), then decide every pending reversal."""
    await _end_step(session)
    decided = 0
    for settlement_id in await pending_clawback_settlement_ids(session):
        decided += await reverse_clawbacks(session, settlement_id, gateway)
    return decided


async def record_external_reversal(session: AsyncSession, *, transfer_id: str, reversal_id: str,
                                   amount_minor: int) -> bool:
    """A reversal made outside gasdispatch (e.g. in the provider's dashboard): we owe it back."""
    if await ledger.has_provider_object(session, reversal_id):
        return False
    s = (await session.exec(select(Settlement).where(Settlement.transfer_id == transfer_id))).first()
    if s is None:
        raise SettlementNotReady(f"transfer {transfer_id} is not recorded yet")
    _, created = await ledger.post(
        session, business_key=f"provider:{reversal_id}", kind="reversal", order_id=s.order_id, settlement_id=s.id,
        provider_object_id=reversal_id, postings=[
            Posting(ledger.PROVIDER_BALANCE, amount_minor, s.currency),
            Posting(ledger.technician_payable(s.technician_id), -amount_minor, s.currency)])
    return created


async def payment_by_charge(session: AsyncSession, charge_id: str) -> Payment | None:
    return (await session.exec(select(Payment).where(Payment.charge_id == charge_id))).first()
