"""Bookable windows: 2-hour windows inside technicians' shifts, outside their breaks and days off,
for technicians certified for the work and covering the address, less what is already booked."""

from datetime import timedelta

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import ServiceStation
from kit.geo import point, polygon_from_geojson
from scheduling import slots as grid
from tests.factories import make_customer, make_technician
from tests.field.support import make_station
from tests.scheduling.scheduling_factories import (
    TZ,
    day_ahead,
    local,
    put_week,
    slot_starts,
)


async def test_windows_lie_inside_the_shift_and_skip_the_break(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    technician = await make_technician(session, station=await make_station(session))
    await put_week(client, technician.headers)  # 08:00-18:00, lunch 12:00-13:00
    assert await slot_starts(client, customer.headers, customer.address.id, day_ahead()) == \
        {8: 1, 10: 1, 14: 1, 16: 1}


async def test_nobody_on_shift_means_no_window(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    await make_technician(session, station=await make_station(session))  # no shifts set
    assert await slot_starts(client, customer.headers, customer.address.id, day_ahead()) == {}


async def test_capacity_adds_up_over_technicians_and_visits_per_window(client: AsyncClient, session: AsyncSession) -> None:
    """An inspection takes 30 minutes plus 30 of travel: two per window per technician."""
    customer = await make_customer(session)
    station = await make_station(session)
    for _ in range(2):
        await put_week(client, (await make_technician(session, station=station)).headers, breaks=[])
    day = day_ahead()
    assert await slot_starts(client, customer.headers, customer.address.id, day, "inspection") == \
        {h: 4 for h in (8, 10, 12, 14, 16)}
    assert await slot_starts(client, customer.headers, customer.address.id, day, "repair") == \
        {h: 2 for h in (8, 10, 12, 14, 16)}


@pytest.mark.parametrize("kinds,status", [(("inspection",), "verified"), (("repair",), "pending"),
                                          (("repair",), "revoked")])
async def test_only_a_verified_certification_for_the_work_counts(client: AsyncClient, session: AsyncSession,
                                                                 kinds: tuple[str, ...], status: str) -> None:
    customer = await make_customer(session)
    technician = await make_technician(session, station=await make_station(session), kinds=kinds, status=status)
    await put_week(client, technician.headers)
    assert await slot_starts(client, customer.headers, customer.address.id, day_ahead(), "repair") == {}


async def test_a_certification_expiring_mid_day_stops_the_windows_after_it(
    client: AsyncClient, session: AsyncSession,
) -> None:
    customer = await make_customer(session)
    day = day_ahead()
    technician = await make_technician(session, station=await make_station(session), valid_until=local(day, 11))
    await put_week(client, technician.headers)
    assert await slot_starts(client, customer.headers, customer.address.id, day) == {8: 1}


async def test_a_day_off_removes_the_day(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    technician = await make_technician(session, station=await make_station(session))
    day = day_ahead()
    await put_week(client, technician.headers, days_off=[{"first_day": day.isoformat(), "last_day": day.isoformat()}])
    assert await slot_starts(client, customer.headers, customer.address.id, day) == {}
    assert await slot_starts(client, customer.headers, customer.address.id, day + timedelta(days=1)) != {}


async def test_a_technician_whose_station_does_not_cover_the_address_is_not_counted(
    client: AsyncClient, session: AsyncSession,
) -> None:
    customer = await make_customer(session, lon=120.155, lat=30.274)
    near = await make_station(session)
    ring = [[120.6, 30.2], [120.7, 30.2], [120.7, 30.3], [120.6, 30.3], [120.6, 30.2]]  # half a degree east
    far = ServiceStation(name="远处站", location=point(120.65, 30.25),
                         service_area=polygon_from_geojson({"type": "Polygon", "coordinates": [ring]}))
    session.add(far)
    await session.flush()
    await put_week(client, (await make_technician(session, station=far)).headers)
    assert await slot_starts(client, customer.headers, customer.address.id, day_ahead()) == {}
    await put_week(client, (await make_technician(session, station=near)).headers)
    assert await slot_starts(client, customer.headers, customer.address.id, day_ahead()) == {8: 1, 10: 1, 14: 1, 16: 1}


async def test_a_technician_without_a_station_serves_his_city(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    await put_week(client, (await make_technician(session)).headers, breaks=[])
    assert await slot_starts(client, customer.headers, customer.address.id, day_ahead()) == \
        {h: 1 for h in (8, 10, 12, 14, 16)}


async def test_booked_visits_take_the_room_of_their_window(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    technician = await make_technician(session, station=await make_station(session))
    await put_week(client, technician.headers)
    day = day_ahead()
    booked = await client.post("/v1/bookings", headers=customer.headers, json={
        "address_id": str(customer.address.id), "kind": "repair", "window_start": local(day, 10).isoformat()})
    assert booked.status_code == 201, booked.text
    assert await slot_starts(client, customer.headers, customer.address.id, day) == {8: 1, 14: 1, 16: 1}
    # An inspection lasts less, but the technician's only room in that window is taken.
    assert 10 not in await slot_starts(client, customer.headers, customer.address.id, day, "inspection")


@pytest.mark.parametrize("kind,priority", [("emergency_leak", "emergency"), ("meter_fault", "urgent")])
async def test_emergencies_and_urgent_work_have_no_windows(client: AsyncClient, session: AsyncSession,
                                                           kind: str, priority: str) -> None:
    customer = await make_customer(session)
    response = await client.get("/v1/slots", headers=customer.headers, params={
        "address_id": str(customer.address.id), "kind": kind, "date": day_ahead().isoformat()})
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/on-demand-only"
    assert (response.json()["field"], response.json()["priority"]) == ("kind", priority)


@pytest.mark.parametrize("days", [-1, grid.HORIZON_DAYS + 1])
async def test_a_date_outside_the_booking_horizon_is_refused(client: AsyncClient, session: AsyncSession, days: int) -> None:
    customer = await make_customer(session)
    response = await client.get("/v1/slots", headers=customer.headers, params={
        "address_id": str(customer.address.id), "kind": "repair", "date": day_ahead(days).isoformat()})
    assert response.status_code == 422
    assert (response.json()["type"], response.json()["field"]) == ("/problems/booking-invalid", "date")


async def test_without_a_date_the_slots_are_the_citys_today_whatever_the_phones_day(
        client: AsyncClient, session: AsyncSession) -> None:
    """The app asks this first: a phone abroad cannot know which day it is in the city."""
    customer = await make_customer(session)
    response = await client.get("/v1/slots", headers=customer.headers, params={
        "address_id": str(customer.address.id), "kind": "repair"})
    assert response.status_code == 200, response.text
    assert (response.json()["date"], response.json()["timezone"]) == (day_ahead(0).isoformat(), TZ.key)


async def test_another_customers_address_is_not_found(client: AsyncClient, session: AsyncSession) -> None:
    owner, stranger = await make_customer(session), await make_customer(session)
    response = await client.get("/v1/slots", headers=stranger.headers, params={
        "address_id": str(owner.address.id), "kind": "repair", "date": day_ahead().isoformat()})
    assert response.status_code == 404


def test_the_capacity_rule() -> None:
    """Loads (duration + 30 minutes of travel) fill a 2-hour window; a longer visit fits alone."""
    assert [grid.visits_per_window(grid.load_minutes(m)) for m in (30, 60, 90, 150)] == [2, 1, 1, 1]
    day = day_ahead()
    shift = grid.Interval(local(day, 8), local(day, 12))
    certified = (grid.Interval(local(day, 0), local(day + timedelta(days=1), 0)),)
    inspection = grid.TechnicianDay("t", shift, certified=certified, booked=((grid.Interval(local(day, 8), local(day, 10)), 60),))
    windows = grid.windows_of(day, TZ)
    found = grid.slots([inspection], windows, 60, local(day, 0))
    assert [(s.window.start.hour, s.capacity) for s in found] == [(8, 1), (10, 2)]
    assert all(s.window.within(shift) and s.window.end - s.window.start == grid.WINDOW for s in found)
    assert grid.slots([inspection], windows, 60, local(day, 9)) == [found[1]]
    repair = grid.TechnicianDay("t", shift, certified=certified, booked=((grid.Interval(local(day, 8), local(day, 10)), 90),))
    assert [s.window.start.hour for s in grid.slots([repair], windows, 60, local(day, 0))] == [10]
    assert [s.capacity for s in grid.slots([repair], windows, 180, local(day, 0))] == [1]
