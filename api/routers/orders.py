import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import presenters
from api.deps import (
    CurrentPrincipal, CustomerOrAdmin, CustomerPrincipal, IdempotencyKey, RedisDep, SessionDep, remember_idempotent,
    replay_idempotent,
)
from dispatch import notifications, service
from dispatch.accounts import customer_for_account, technician_for_account
from dispatch.field import reports
from dispatch.models import Address, Order, OrderEvent
from dispatch.schemas import (
    CancellationQuotePublic,
    EtaPublic,
    OrderCancel,
    OrderCreate,
    OrderEventPublic,
    OrderMessagePublic,
    OrderPublic,
    OrderReschedule,
)
from kit.schemas import Input, Money, Page
from dispatch.security import Principal
from dispatch.states import STATES
from matching import eta
from matching.service import geo_index
from settlement import cancellation
from settlement import service as settlement

router = APIRouter(prefix="/v1/orders", tags=["orders"])

StatusFilter = Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")$")]
STAFF = ("admin", "auditor")


async def _order_for(session: SessionDep, principal: Principal, order: Order) -> OrderPublic:
    public = await presenters.order(session, order)
    if principal.role == "auditor":  # an audit follows the money, not the household's door or words
        lon, lat = public.location["coordinates"]
        return public.model_copy(update={"location": {"type": "Point", "coordinates": [round(lon, 2), round(lat, 2)]},
                                         "description": ""})
    if principal.role in STAFF:
        return public
    return public.model_copy(update={"status_reason": service.shared_status_reason(order.status, order.status_reason)})


async def _with_eta(session: SessionDep, redis: RedisDep, principal: Principal, order: Order,
                    public: OrderPublic) -> OrderPublic:
    """The arrival range, for those waiting on it (the customer, his technician, operations)."""
    if principal.role == "auditor" or order.status not in eta.HEADING:
        return public
    arrival = await eta.order_eta(session, geo_index(redis), order)
    if arrival is None:
        return public
    return public.model_copy(update={
        "eta": EtaPublic(earliest=arrival.earliest, latest=arrival.latest, model=arrival.model)})


async def _with_final_prices(session: SessionDep, publics: list[OrderPublic]) -> list[OrderPublic]:
    prices = await reports.final_prices(session, [p.id for p in publics])
    return [p.model_copy(update={"final_price": Money(amount_minor=prices[p.id][0], currency=prices[p.id][1])})
            if p.id in prices else p for p in publics]


def _event_for(principal: Principal, event: OrderEvent) -> OrderEventPublic:
    public = presenters.order_event(event)
    if principal.role in STAFF:
        return public
    return public.model_copy(update={"reason": service.shared_event_reason(event.action, event.reason),
                                     "payload": service.shared_event_payload(event.payload)})


async def _visible_order(session: SessionDep, principal: Principal, order_id: uuid.UUID) -> Order:
    kwargs: dict = {}
    if principal.role == "customer":
        kwargs["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        kwargs["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    return await service.get_order_for(session, order_id, role=principal.role, **kwargs)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrderPublic, responses={
    200: {"model": OrderPublic, "description": "A gas leak at a home with an open gas-leak order joins that order"},
    409: {"description": "Idempotency-Key reused with another body, or too many open orders"},
    429: {"description": "Too many orders placed in a short time"}})
async def create_order(
    body: OrderCreate, session: SessionDep, redis: RedisDep,
    principal: CustomerPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    request_hash, replay = await replay_idempotent(session, principal, idempotency_key, "POST /v1/orders", body)
    if replay is not None:
        return replay
    customer = await customer_for_account(session, principal.account_id)
    await service.throttle_order_creation(redis, customer.id)
    if body.kind == service.HOME_EMERGENCY_KIND:
        address = await session.get(Address, body.address_id)
        joined = await service.open_home_emergency(session, body.address_id) \
            if address is not None and address.customer_id == customer.id else None
        if joined is not None:  # a detector (or another member of the household) reported it first
            return JSONResponse(jsonable_encoder(await _order_for(session, principal, joined)),
                                status_code=status.HTTP_200_OK)
    order = await service.create_order(
        session, customer_id=customer.id, address_id=body.address_id, kind=body.kind,
        description=body.description, preferred_technician_id=body.preferred_technician_id,
        actor=service.Actor("customer", str(principal.account_id)),
    )
    public = await _order_for(session, principal, order)
    await remember_idempotent(session, principal, idempotency_key, "POST /v1/orders", request_hash, 201, public)
    return public


@router.get("")
async def list_orders(
    principal: CurrentPrincipal, session: SessionDep, redis: RedisDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_filter: Annotated[StatusFilter, Query(alias="status")] = None,
) -> Page[OrderPublic]:
    scope: dict = {}
    if principal.role == "customer":
        scope["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        scope["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    rows, next_cursor = await service.list_orders(session, limit=limit, cursor=cursor, status=status_filter, **scope)
    publics = [await _with_eta(session, redis, principal, o, await _order_for(session, principal, o)) for o in rows]
    return Page(data=await _with_final_prices(session, publics), next_cursor=next_cursor)


@router.get("/{order_id}")
async def get_order(order_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep,
                    redis: RedisDep) -> OrderPublic:
    """With `eta`, the arrival range, from acceptance until the technician checks in, and
    `final_price` once the work report is in."""
    order = await _visible_order(session, principal, order_id)
    public = await _with_eta(session, redis, principal, order, await _order_for(session, principal, order))
    return (await _with_final_prices(session, [public]))[0]


@router.get("/{order_id}/events")
async def order_events(order_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> Page[OrderEventPublic]:
    order = await _visible_order(session, principal, order_id)
    return Page(data=[_event_for(principal, e) for e in await service.order_events(session, order.id)])


@router.get("/{order_id}/messages")
async def order_messages(order_id: uuid.UUID, principal: CustomerPrincipal,
                         session: SessionDep) -> Page[OrderMessagePublic]:
    """Operations' messages to the customer about his order, oldest first."""
    order = await _visible_order(session, principal, order_id)
    return Page(data=[OrderMessagePublic(id=m.id, text=m.body, created_at=m.created_at)
                      for m in await notifications.messages_for(session, principal.account_id, order.id)])


@router.get("/{order_id}/cancellation-quote")
async def cancellation_quote(order_id: uuid.UUID, session: SessionDep,
                             principal: CustomerPrincipal) -> CancellationQuotePublic:
    """What cancelling costs now (free before acceptance; then the settlement rules' fee)."""
    order = await _visible_order(session, principal, order_id)
    q = await cancellation.quote(session, order.id, role=principal.role)
    return CancellationQuotePublic(
        order_id=q.order_id, status=q.status, fee=Money(amount_minor=q.fee_minor, currency=q.currency),
        technician_share=Money(amount_minor=q.technician_share_minor, currency=q.currency),
        rule_version=q.rule_version, free_until=q.free_until, can_cancel=q.can_cancel,
        can_reschedule=q.can_reschedule)


@router.post("/{order_id}/cancel", responses={
    409: {"description": "The state does not allow it (`current_state`), or the fee is above `accepted_fee_minor`"}})
async def cancel_order(
    order_id: uuid.UUID, body: OrderCancel, session: SessionDep,
    principal: CustomerOrAdmin,
) -> OrderPublic:
    order = await _visible_order(session, principal, order_id)
    cancelled = await cancellation.cancel(
        session, order.id, service.Actor(principal.role, str(principal.account_id)), reason=body.reason,
        reason_code=body.reason_code, accepted_fee_minor=body.accepted_fee_minor)
    return await _order_for(session, principal, cancelled)


@router.post("/{order_id}/reschedule", responses={
    409: {"description": "The state does not allow it (`current_state`), or cancelling would cost a fee now"}})
async def reschedule_order(order_id: uuid.UUID, body: OrderReschedule, session: SessionDep,
                           principal: CustomerOrAdmin) -> OrderPublic:
    """Release the technician before he sets out and match the order again."""
    order = await _visible_order(session, principal, order_id)
    moved = await cancellation.reschedule(session, order.id, service.Actor(principal.role, str(principal.account_id)),
                                          reason_code=body.reason_code, reason=body.reason)
    return await _order_for(session, principal, moved)


@router.post("/{order_id}/consent")
async def consent_to_order(order_id: uuid.UUID, session: SessionDep, principal: CustomerOrAdmin) -> OrderPublic:
    """Agree to a priced follow-up (operations may approve it for the customer): it is matched.
    Declining is cancelling it."""
    order = await _visible_order(session, principal, order_id)
    agreed = await service.consent_order(session, order.id, service.Actor(principal.role, str(principal.account_id)))
    return await _order_for(session, principal, agreed)



class PaymentRetry(Input):
    # A payment method id from the provider's client library (Stripe: pm_...), never card data.
    payment_method: str = Field(pattern=r"^pm_[A-Za-z0-9_]{1,96}$")


class PaymentRetryPublic(BaseModel):
    order: OrderPublic
    outcome: Literal["authorised", "declined"]
    attempts_left: int


@router.post("/{order_id}/payment/retry", responses={
    409: {"description": "The order's payment needs nothing (`current_state`), or another attempt is in progress"},
    429: {"description": "Too many cards tried for this order"}})
async def retry_payment(order_id: uuid.UUID, body: PaymentRetry, session: SessionDep,
                        principal: CustomerPrincipal) -> PaymentRetryPublic:
    """Pay an order whose card was declined (`payment_attention`) with another card. Authorised: the
    order is matched again (or, when the job was done, captured). Declined: it waits for another card."""
    order = await _visible_order(session, principal, order_id)
    order, outcome, left = await settlement.retry_payment(session, order.id, body.payment_method,
                                                          settlement.get_gateway())
    return PaymentRetryPublic(order=await _order_for(session, principal, order), outcome=outcome, attempts_left=left)
