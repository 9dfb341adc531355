import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from api import presenters
from api.deps import (
    CurrentPrincipal, CustomerOrAdmin, CustomerPrincipal, IdempotencyKey, SessionDep, remember_idempotent,
    replay_idempotent,
)
from dispatch import service
from dispatch.accounts import customer_for_account, technician_for_account
from dispatch.models import Order
from dispatch.schemas import OrderCancel, OrderCreate, OrderEventPublic, OrderPublic, Page
from dispatch.security import Principal
from dispatch.states import STATES

router = APIRouter(prefix="/v1/orders", tags=["orders"])

StatusFilter = Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")$")]


async def _visible_order(session: SessionDep, principal: Principal, order_id: uuid.UUID) -> Order:
    kwargs: dict = {}
    if principal.role == "customer":
        kwargs["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        kwargs["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    return await service.get_order_for(session, order_id, role=principal.role, **kwargs)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrderPublic,
             responses={409: {"description": "Idempotency-Key reused with another body"}})
async def create_order(
    body: OrderCreate, session: SessionDep,
    principal: CustomerPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    request_hash, replay = await replay_idempotent(session, principal, idempotency_key, "POST /v1/orders", body)
    if replay is not None:
        return replay
    customer = await customer_for_account(session, principal.account_id)
    order = await service.create_order(
        session, customer_id=customer.id, address_id=body.address_id, kind=body.kind,
        description=body.description, priority=body.priority,
        preferred_technician_id=body.preferred_technician_id,
        actor=service.Actor("customer", str(principal.account_id)),
    )
    public = presenters.order(order)
    await remember_idempotent(session, principal, idempotency_key, "POST /v1/orders", request_hash, 201, public)
    return public


@router.get("")
async def list_orders(
    principal: CurrentPrincipal, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_filter: Annotated[StatusFilter, Query(alias="status")] = None,
) -> Page[OrderPublic]:
    scope: dict = {}
    if principal.role == "customer":
        scope["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        scope["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    rows, next_cursor = await service.list_orders(session, limit=limit, cursor=cursor, status=status_filter, **scope)
    return Page(data=[presenters.order(o) for o in rows], next_cursor=next_cursor)


@router.get("/{order_id}")
async def get_order(order_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> OrderPublic:
    return presenters.order(await _visible_order(session, principal, order_id))


@router.get("/{order_id}/events")
async def order_events(order_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> Page[OrderEventPublic]:
    order = await _visible_order(session, principal, order_id)
    return Page(data=[presenters.order_event(e) for e in await service.order_events(session, order.id)])


@router.post("/{order_id}/cancel")
async def cancel_order(
    order_id: uuid.UUID, body: OrderCancel, session: SessionDep,
    principal: CustomerOrAdmin,
) -> OrderPublic:
    order = await _visible_order(session, principal, order_id)
    cancelled = await service.cancel_order(session, order.id, service.Actor(principal.role, str(principal.account_id)), body.reason)
    return presenters.order(cancelled)

