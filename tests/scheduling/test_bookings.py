"""Booking a window: the order waits in `scheduled` outside matching, is confirmed with its window,
moves to another available window or is cancelled through the orders' own path, and enters
matching only shortly before its window."""

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.events import OrderCreated
from dispatch.models import Order, OrderEvent
from dispatch.service import Actor
from kit.db import database_now
from matching import service as matching
from matching.models import Offer
from scheduling import service
from scheduling.errors import SlotUnavailable
from scheduling.models import Booking
from scheduling.schemas import ScheduleIn
from tests.factories import make_customer, make_staff, make_technician
from tests.field.support import make_station
from tests.scheduling.scheduling_factories import (
    day_ahead,
    local,
    put_week,
    slot_starts,
    week,
)


async def _book(client: AsyncClient, customer, when, kind: str = "repair"):  # noqa: ANN001, ANN202
    return await client.post("/v1/bookings", headers=customer.headers, json={
        "address_id": str(customer.address.id), "kind": kind, "window_start": when.isoformat()})


@pytest.fixture
async def on_shift(client: AsyncClient, session: AsyncSession):  # noqa: ANN201
    technician = await make_technician(session, station=await make_station(session))
    await put_week(client, technician.headers)  # 08:00-18:00, lunch 12:00-13:00
    return technician


async def test_a_booking_is_confirmed_with_its_window_and_holds_a_technician(
    client: AsyncClient, session: AsyncSession, on_shift,  # noqa: ANN001
) -> None:
    customer = await make_customer(session)
    day = day_ahead()
    response = await _book(client, customer, local(day, 14))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "scheduled"
    assert (order["window_start"], order["window_end"]) == (f"{day}T06:00:00Z", f"{day}T08:00:00Z")
    assert order["timezone"] == "Asia/Shanghai"  # the apps show the window on the city's clock
    row = await session.get(Order, uuid.UUID(order["id"]))
    assert (row.window_start, row.window_end, row.sla_deadline) == (local(day, 14), local(day, 16), local(day, 16))
    assert (await session.get(Booking, uuid.UUID(order["id"]))).technician_id == on_shift.technician.id
    seen = (await client.get(f"/v1/orders/{order['id']}", headers=customer.headers)).json()
    assert seen["status"] == "scheduled" and seen["window_start"] == order["window_start"]


async def test_the_matcher_leaves_a_booked_order_alone_until_its_window_nears(
    client: AsyncClient, session: AsyncSession, redis, on_shift,  # noqa: ANN001
) -> None:
    customer = await make_customer(session)
    day = day_ahead()
    order_id = uuid.UUID((await _book(client, customer, local(day, 8))).json()["id"])
    order = await session.get(Order, order_id)
    await matching.on_order_created(session, OrderCreated(order_id=order_id, priority=order.priority, kind=order.kind,
                                                          source=order.source,
                                                          required_certification=order.required_certification))
    await matching.run_batch(session, matching.geo_index(redis), city_id=order.city_id)
    assert (await session.get(Order, order_id, populate_existing=True)).status == "scheduled"
    assert (await session.exec(select(Offer).where(Offer.order_id == order_id))).all() == []

    assert await service.release_due(session, local(day, 8) - timedelta(hours=1)) == 0
    assert await service.release_due(session, local(day, 8) - timedelta(minutes=20)) == 1
    released = await session.get(Order, order_id, populate_existing=True)
    assert released.status == "matching"
    assert released.preferred_technician_id == on_shift.technician.id
    assert (released.window_start, released.window_end) == (local(day, 8), local(day, 10))


async def test_a_full_window_cannot_be_booked(client: AsyncClient, session: AsyncSession, on_shift) -> None:  # noqa: ANN001
    first, second = await make_customer(session), await make_customer(session)
    when = local(day_ahead(), 10)
    assert (await _book(client, first, when)).status_code == 201
    response = await _book(client, second, when)
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/slot-unavailable"


@pytest.mark.parametrize("when,why", [
    (lambda day: local(day, 12), "break"),           # the lunch break
    (lambda day: local(day, 18), "after the shift"),
])
async def test_a_window_nobody_can_serve_is_unavailable(client: AsyncClient, session: AsyncSession, on_shift,  # noqa: ANN001
                                                        when, why: str) -> None:  # noqa: ANN001
    response = await _book(client, await make_customer(session), when(day_ahead()))
    assert response.status_code == 409, why
    assert response.json()["type"] == "/problems/slot-unavailable"


@pytest.mark.parametrize("when", [
    lambda day: local(day, 9),                          # not a window's start
    lambda day: local(day_ahead(-1), 10),               # in the past
    lambda day: local(day_ahead(40), 10),               # beyond the horizon
    lambda day: datetime.fromisoformat("9999-12-31T23:00:00-14:00"),  # beyond what UTC can hold
])
async def test_a_window_that_is_not_offered_is_refused_naming_the_field(client: AsyncClient, session: AsyncSession,
                                                                        on_shift, when) -> None:  # noqa: ANN001
    response = await _book(client, await make_customer(session), when(day_ahead()))
    assert response.status_code == 422, response.text
    assert (response.json()["type"], response.json()["field"]) == ("/problems/booking-invalid", "window_start")


async def test_a_window_without_an_offset_is_a_validation_error(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    response = await client.post("/v1/bookings", headers=customer.headers, json={
        "address_id": str(customer.address.id), "kind": "repair", "window_start": "2030-01-01T10:00:00"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "window_start"]


@pytest.mark.parametrize("kind", ["emergency_leak", "meter_fault"])
async def test_emergencies_and_urgent_work_cannot_be_booked(client: AsyncClient, session: AsyncSession,
                                                            on_shift, kind: str) -> None:  # noqa: ANN001
    response = await _book(client, await make_customer(session), local(day_ahead(), 10), kind)
    assert response.status_code == 422
    assert (response.json()["type"], response.json()["field"]) == ("/problems/on-demand-only", "kind")


async def test_a_booking_moves_to_another_available_window(client: AsyncClient, session: AsyncSession, on_shift) -> None:  # noqa: ANN001
    customer, other = await make_customer(session), await make_customer(session)
    day = day_ahead()
    order_id = (await _book(client, customer, local(day, 8))).json()["id"]
    assert (await _book(client, other, local(day, 14))).status_code == 201
    full = await client.post(f"/v1/bookings/{order_id}/reschedule", headers=customer.headers,
                             json={"window_start": local(day, 14).isoformat()})
    assert full.status_code == 409 and full.json()["type"] == "/problems/slot-unavailable"
    moved = await client.post(f"/v1/bookings/{order_id}/reschedule", headers=customer.headers,
                              json={"window_start": local(day, 16).isoformat()})
    assert moved.status_code == 200, moved.text
    order = await session.get(Order, uuid.UUID(order_id), populate_existing=True)
    assert (order.status, order.window_start, order.window_end) == ("scheduled", local(day, 16), local(day, 18))
    assert order.sla_deadline == local(day, 18)
    assert await slot_starts(client, customer.headers, customer.address.id, day) == {8: 1, 10: 1}
    actions = [e.action for e in (await session.exec(select(OrderEvent).where(OrderEvent.order_id == order.id))).all()]
    assert actions == ["create", "move_window"]


async def test_a_booking_may_be_moved_to_the_window_it_holds(
    client: AsyncClient, session: AsyncSession, on_shift,  # noqa: ANN001
) -> None:
    """Its own visit does not count against the window it moves to: moving to where it is succeeds."""
    customer = await make_customer(session)
    when = local(day_ahead(), 10)
    order_id = (await _book(client, customer, when)).json()["id"]
    response = await client.post(f"/v1/bookings/{order_id}/reschedule", headers=customer.headers,
                                 json={"window_start": when.isoformat()})
    assert response.status_code == 200, response.text


async def test_a_released_booking_no_longer_moves(client: AsyncClient, session: AsyncSession, on_shift) -> None:  # noqa: ANN001
    customer = await make_customer(session)
    day = day_ahead()
    order_id = (await _book(client, customer, local(day, 8))).json()["id"]
    await service.release_due(session, local(day, 8))
    response = await client.post(f"/v1/bookings/{order_id}/reschedule", headers=customer.headers,
                                 json={"window_start": local(day, 10).isoformat()})
    assert response.status_code == 409
    assert response.json()["current_state"] == "matching"


async def test_cancelling_a_booking_is_free_and_frees_its_window(client: AsyncClient, session: AsyncSession,
                                                                 on_shift) -> None:  # noqa: ANN001
    customer = await make_customer(session)
    day = day_ahead()
    order_id = (await _book(client, customer, local(day, 10))).json()["id"]
    quote = (await client.get(f"/v1/orders/{order_id}/cancellation-quote", headers=customer.headers)).json()
    assert (quote["fee"]["amount_minor"], quote["can_cancel"]) == (0, True)
    response = await client.post(f"/v1/orders/{order_id}/cancel", headers=customer.headers, json={"reason": "不在家"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert 10 in await slot_starts(client, customer.headers, customer.address.id, day)
    assert await service.release_due(session, local(day, 10)) == 0


async def test_only_the_owner_or_operations_see_and_move_a_booking(client: AsyncClient, session: AsyncSession,
                                                                   on_shift) -> None:  # noqa: ANN001
    owner, stranger = await make_customer(session), await make_customer(session)
    day = day_ahead()
    order_id = (await _book(client, owner, local(day, 8))).json()["id"]
    body = {"window_start": local(day, 10).isoformat()}
    assert (await client.get(f"/v1/orders/{order_id}", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"/v1/bookings/{order_id}/reschedule", headers=stranger.headers, json=body)).status_code == 404
    assert (await client.post(f"/v1/bookings/{order_id}/reschedule", headers=on_shift.headers, json=body)).status_code == 403
    assert (await client.post("/v1/bookings", headers=on_shift.headers, json={
        "address_id": str(owner.address.id), "kind": "repair", "window_start": body["window_start"]})).status_code == 403
    stolen = await client.post(
        "/v1/bookings", headers=stranger.headers,
        json={"address_id": str(owner.address.id), "kind": "repair", "window_start": body["window_start"]})
    assert stolen.status_code == 404
    _, admin = await make_staff(session, "admin")
    moved = await client.post(f"/v1/bookings/{order_id}/reschedule", headers=admin, json=body)
    assert moved.status_code == 200, moved.text
    assert (await session.get(Order, uuid.UUID(order_id), populate_existing=True)).window_start == local(day, 10)


async def test_an_on_demand_order_has_no_booking_to_move(client: AsyncClient, session: AsyncSession, on_shift) -> None:  # noqa: ANN001
    customer = await make_customer(session)
    order = (await client.post("/v1/orders", headers=customer.headers,
                               json={"kind": "repair", "address_id": str(customer.address.id)})).json()
    assert order["window_start"] is None
    response = await client.post(f"/v1/bookings/{order['id']}/reschedule", headers=customer.headers,
                                 json={"window_start": local(day_ahead(), 10).isoformat()})
    assert response.status_code == 404


async def test_a_repeated_idempotency_key_books_once(client: AsyncClient, session: AsyncSession, on_shift) -> None:  # noqa: ANN001
    customer = await make_customer(session)
    body = {"address_id": str(customer.address.id), "kind": "repair", "window_start": local(day_ahead(), 10).isoformat()}
    headers = {**customer.headers, "Idempotency-Key": "book-1"}
    first = await client.post("/v1/bookings", headers=headers, json=body)
    again = await client.post("/v1/bookings", headers=headers, json=body)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


async def test_two_customers_racing_for_a_windows_last_room_get_it_once(committed_sessions) -> None:  # noqa: ANN001
    async with committed_sessions() as s:
        technician = await make_technician(s, station=await make_station(s))
        customers = [await make_customer(s) for _ in range(3)]
        await service.put_schedule(s, technician.technician.id, ScheduleIn.model_validate({"weekly": week()}),
                                   await database_now(s))
        await s.commit()
    when = local(day_ahead(), 10)

    async def attempt(customer) -> uuid.UUID | None:  # noqa: ANN001
        async with committed_sessions() as s:
            try:
                order = await service.book(s, customer_id=customer.customer.id, address_id=customer.address.id,
                                           kind="repair", window_start=when, now=await database_now(s),
                                           actor=Actor("customer", str(customer.account.id)))
            except SlotUnavailable:
                return None
            await s.commit()
            return order.id

    booked = [o for o in await asyncio.gather(*(attempt(c) for c in customers)) if o is not None]
    assert len(booked) == 1
    async with committed_sessions() as s:
        holders = (await s.exec(select(Booking.technician_id).join(Order, Order.id == Booking.order_id)
                                .where(Order.window_start == when))).all()
    assert holders == [technician.technician.id]
