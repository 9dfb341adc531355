import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlmodel import select

from api import presenters
from api.deps import CurrentCustomer, SessionDep
from dispatch import addresses
from dispatch.cities import city_at
from kit.errors import Conflict, NotFound
from kit.geo import point
from dispatch.models import Account, Address, Order
from kit.pagination import page_of, paginate
from dispatch.schemas import AddressCreate, AddressPublic, AddressUpdate, CustomerPublic
from kit.schemas import Page

router = APIRouter(prefix="/v1/customers/me", tags=["customers"])


@router.get("")
async def me(customer: CurrentCustomer, session: SessionDep) -> CustomerPublic:
    account = await session.get(Account, customer.account_id)
    assert account is not None
    return CustomerPublic(id=customer.id, name=customer.name, phone=customer.phone, email=account.email)


async def _own_address(session: SessionDep, customer: CurrentCustomer, address_id: uuid.UUID) -> Address:
    found = await session.get(Address, address_id)
    if found is None or found.customer_id != customer.id:
        raise NotFound("no such address")
    return found


async def _address_public(session: SessionDep, address: Address) -> AddressPublic:
    return presenters.address(address, await city_at(session, address.location))


@router.get("/addresses")
async def list_addresses(
    customer: CurrentCustomer, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[AddressPublic]:
    statement = paginate(select(Address).where(Address.customer_id == customer.id), Address, limit, cursor)
    rows, next_cursor = page_of(list((await session.exec(statement)).all()), limit)
    return Page(data=[await _address_public(session, a) for a in rows], next_cursor=next_cursor)


@router.post("/addresses", status_code=status.HTTP_201_CREATED, responses={
    422: {"description": "`validation-error`, or `address-invalid` naming the `field` (a unit without its building, "
                         "neither parts nor a line, both)"}})
async def create_address(body: AddressCreate, customer: CurrentCustomer, session: SessionDep) -> AddressPublic:
    created = Address(customer_id=customer.id, label=body.label, line="",
                      location=point(body.location.lon, body.location.lat))
    addresses.set_place(created, line=body.line, parts=body.structured.model_dump() if body.structured else None)
    session.add(created)
    await session.flush()
    await session.refresh(created)
    return await _address_public(session, created)


@router.get("/addresses/{address_id}")
async def get_address(address_id: uuid.UUID, customer: CurrentCustomer, session: SessionDep) -> AddressPublic:
    return await _address_public(session, await _own_address(session, customer, address_id))


@router.patch("/addresses/{address_id}", responses={422: {"description": "`validation-error` or `address-invalid`"}})
async def update_address(address_id: uuid.UUID, body: AddressUpdate, customer: CurrentCustomer, session: SessionDep) -> AddressPublic:
    """A new `structured` address recomposes the line; a new `line` alone clears the parts."""
    found = await _own_address(session, customer, address_id)
    if body.label is not None:
        found.label = body.label
    if body.line is not None or body.structured is not None:
        addresses.set_place(found, line=body.line, parts=body.structured.model_dump() if body.structured else None)
    if body.location is not None:
        found.location = point(body.location.lon, body.location.lat)
    session.add(found)
    await session.flush()
    await session.refresh(found)
    return await _address_public(session, found)


@router.delete("/addresses/{address_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_address(address_id: uuid.UUID, customer: CurrentCustomer, session: SessionDep) -> Response:
    found = await _own_address(session, customer, address_id)
    in_use = (await session.exec(select(Order.id).where(Order.address_id == found.id).limit(1))).first()
    if in_use is not None:  # orders keep their address
        raise Conflict("this address has orders; it cannot be deleted")
    await session.delete(found)
    await session.flush()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
