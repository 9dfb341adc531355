"""The day planner: a city's booked orders of one local day become ordered stops per technician
(inside every window and shift, each visit by a technician with the skill), stored as one plan
that a new run replaces; what cannot be planned is reported; a technician reads only his day."""

import uuid

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.alerts import OpsAlert
from dispatch.models import Order
from kit.db import database_now
from scheduling import planner
from scheduling.models import Booking, PlanStop
from tests.factories import make_customer, make_staff, make_technician
from tests.scheduling.scheduling_factories import day_ahead, local, put_week

LON, LAT = 120.155, 30.274
KM_LON = 1 / (111.32 * 0.8638)  # degrees of longitude per km at 30.27° N


async def _booking(client: AsyncClient, session: AsyncSession, kind: str, hour: int, day,  # noqa: ANN001, ANN202
                   km_east: float = 0.0):
    """A booking by a new customer living `km_east` of the centre: (order id, customer)."""
    customer = await make_customer(session, lon=LON + km_east * KM_LON, lat=LAT)
    response = await client.post("/v1/bookings", headers=customer.headers, json={
        "address_id": str(customer.address.id), "kind": kind, "window_start": local(day, hour).isoformat()})
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"]), customer


async def _book(client: AsyncClient, session: AsyncSession, kind: str, hour: int, day,  # noqa: ANN001
                km_east: float = 0.0) -> uuid.UUID:
    return (await _booking(client, session, kind, hour, day, km_east))[0]


async def _plan(session: AsyncSession, order_id: uuid.UUID, day) -> planner.DayPlanResult:  # noqa: ANN001
    city_id = (await session.get(Order, order_id)).city_id
    return await planner.plan_day(session, city_id=city_id, day=day, now=await database_now(session), time_limit=1.0)


@pytest.fixture
async def two_technicians(client: AsyncClient, session: AsyncSession):  # noqa: ANN201
    """A repair-only technician 08:00-18:00 and one who also inspects, 09:00-17:00 (both lunch 12-13)."""
    fitter = await make_technician(session, kinds=("repair",))
    inspector = await make_technician(session, kinds=("repair", "inspection"))
    await put_week(client, fitter.headers)
    await put_week(client, inspector.headers, start="09:00", end="17:00")
    return fitter, inspector


async def test_every_stop_lies_in_its_window_and_shift_and_needs_a_skill_its_technician_has(
    client: AsyncClient, session: AsyncSession, two_technicians,  # noqa: ANN001
) -> None:
    fitter, inspector = two_technicians
    day = day_ahead()
    bookings = {await _book(client, session, kind, hour, day, km): kind for kind, hour, km in [
        ("inspection", 10, 1), ("inspection", 14, 3), ("repair", 8, 2), ("repair", 10, 4), ("repair", 14, 0.5),
        ("repair", 16, 2.5)]}
    result = await _plan(session, next(iter(bookings)), day)

    assert result.unplanned == []
    assert {s.order_id for s in result.stops} == set(bookings)
    shifts = {fitter.technician.id: (local(day, 8), local(day, 18)),
              inspector.technician.id: (local(day, 9), local(day, 17))}
    for stop in result.stops:
        order = await session.get(Order, stop.order_id)
        assert order.window_start <= stop.planned_arrival_at <= order.window_end
        start, end = shifts[stop.technician_id]
        assert start <= stop.planned_arrival_at and stop.planned_departure_at <= end
        if bookings[stop.order_id] == "inspection":
            assert stop.technician_id == inspector.technician.id
        # the booking now holds the planned technician's capacity
        assert (await session.get(Booking, stop.order_id, populate_existing=True)).technician_id == stop.technician_id
    for technician_id in shifts:
        mine = sorted((s for s in result.stops if s.technician_id == technician_id), key=lambda s: s.sequence)
        assert [s.sequence for s in mine] == list(range(1, len(mine) + 1))
        assert all(a.planned_departure_at <= b.planned_arrival_at for a, b in zip(mine, mine[1:]))


async def test_the_planned_route_travels_no_more_than_the_booking_order(client: AsyncClient,
                                                                        session: AsyncSession) -> None:
    technician = await make_technician(session, kinds=("inspection",))
    home = {"type": "Point", "coordinates": [LON, LAT]}
    response = await client.put("/v1/technicians/me/shifts", headers=technician.headers,
                                json={"weekly": [{"weekday": d, "start": "08:00", "end": "18:00", "breaks": []}
                                                 for d in range(7)], "start_location": home, "end_location": home})
    assert response.status_code == 200, response.text
    day = day_ahead()
    # Booked zig-zag: out 4 km, back to 1, out to 3, back to 2 (two visits per window).
    kms = {await _book(client, session, "inspection", hour, day, km): km for hour, km in [(8, 4), (8, 1), (10, 3), (10, 2)]}
    result = await _plan(session, next(iter(kms)), day)

    assert result.unplanned == []
    planned = [kms[s.order_id] for s in sorted(result.stops, key=lambda s: s.sequence)]

    def tour(order: list[float]) -> float:
        places = [0.0, *order, 0.0]
        return sum(abs(b - a) for a, b in zip(places, places[1:]))

    assert tour(planned) <= tour(list(kms.values()))
    assert tour(planned) == pytest.approx(8.0)  # 1, 4 then 3, 2 and home: no back and forth


async def test_planning_again_replaces_the_plan(client: AsyncClient, session: AsyncSession, two_technicians) -> None:  # noqa: ANN001
    day = day_ahead()
    first = await _book(client, session, "repair", 8, day, 1)
    second, customer = await _booking(client, session, "repair", 10, day, 2)
    result = await _plan(session, first, day)
    assert {s.order_id for s in result.stops} == {first, second}
    order = await session.get(Order, second)
    response = await client.post(f"/v1/orders/{second}/cancel", headers=customer.headers, json={"reason": "不在家"})
    assert response.status_code == 200, response.text

    again = await _plan(session, first, day)
    assert [s.order_id for s in again.stops] == [first]
    rows = (await session.exec(select(PlanStop).where(PlanStop.city_id == order.city_id, PlanStop.day == day))).all()
    assert [r.order_id for r in rows] == [first]


async def test_a_booking_nobody_working_can_take_is_reported_not_planned(
    client: AsyncClient, session: AsyncSession, two_technicians,  # noqa: ANN001
) -> None:
    fitter, inspector = two_technicians
    day = day_ahead()
    inspection = await _book(client, session, "inspection", 10, day)
    repair = await _book(client, session, "repair", 14, day)
    # The only inspector takes the day off after the booking.
    await put_week(client, inspector.headers, start="09:00", end="17:00",
                   days_off=[{"first_day": day.isoformat(), "last_day": day.isoformat(), "reason": "病假"}])
    result = await _plan(session, repair, day)

    assert [(u.order_id, u.reason) for u in result.unplanned] == [(inspection, "no_technician")]
    assert [(s.order_id, s.technician_id) for s in result.stops] == [(repair, fitter.technician.id)]
    alert = (await session.exec(select(OpsAlert).where(OpsAlert.order_id == inspection))).one()
    assert (alert.kind, alert.details["reason"]) == (planner.UNPLANNED_ALERT, "no_technician")
    assert (await session.get(Booking, inspection)).technician_id == inspector.technician.id  # kept


async def test_a_technician_reads_only_his_own_stops_in_order(client: AsyncClient, session: AsyncSession,
                                                               two_technicians) -> None:  # noqa: ANN001
    fitter, inspector = two_technicians
    day = day_ahead()
    for hour, km in [(8, 1), (10, 2), (16, 1)]:
        await _book(client, session, "repair", hour, day, km)
    inspection = await _book(client, session, "inspection", 14, day, 2)
    result = await _plan(session, inspection, day)
    assert result.unplanned == []

    for who in (fitter, inspector):
        response = await client.get("/v1/technicians/me/day", headers=who.headers, params={"date": day.isoformat()})
        assert response.status_code == 200, response.text
        body = response.json()
        mine = sorted((s for s in result.stops if s.technician_id == who.technician.id), key=lambda s: s.sequence)
        assert [s["order_id"] for s in body["data"]] == [str(s.order_id) for s in mine]
        assert [s["sequence"] for s in body["data"]] == list(range(1, len(mine) + 1))
        assert {s["technician_id"] for s in body["data"]} <= {str(who.technician.id)}
        assert all(s["window_start"] <= s["planned_arrival_at"] <= s["window_end"] and s["address"]
                   for s in body["data"])
    stranger = await make_technician(session)
    response = await client.get("/v1/technicians/me/day", headers=stranger.headers, params={"date": day.isoformat()})
    assert response.status_code == 200 and response.json()["data"] == []
    # Without a date: his city's today (his phone may be set to another zone).
    today = await client.get("/v1/technicians/me/day", headers=fitter.headers)
    assert today.status_code == 200 and today.json()["date"] == day_ahead(0).isoformat()

    city_id = (await session.get(Order, inspection)).city_id
    _, auditor = await make_staff(session, "auditor")
    whole = await client.get("/v1/ops/plans", headers=auditor, params={"city": city_id, "date": day.isoformat()})
    assert whole.status_code == 200, whole.text
    assert len(whole.json()["data"]) == len(result.stops)
    customer = await make_customer(session)
    for headers in (customer.headers, fitter.headers):
        refused = await client.get("/v1/ops/plans", headers=headers, params={"city": city_id, "date": day.isoformat()})
        assert refused.status_code == 403
    missing = await client.get("/v1/ops/plans", headers=auditor, params={"city": "atlantis", "date": day.isoformat()})
    assert missing.status_code == 404


async def test_the_evening_cron_plans_every_citys_next_day(client: AsyncClient, session: AsyncSession,
                                                           two_technicians, monkeypatch) -> None:  # noqa: ANN001
    from app import worker
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "day_plan_time_limit_s", 1.0)
    expression, job = worker.cron_jobs()["scheduling.day_plan"]
    assert expression
    day = day_ahead(1)
    order_id = await _book(client, session, "repair", 14, day)
    await job(session, local(day_ahead(0), 20))  # 20:00 local today: plans tomorrow
    stop = (await session.exec(select(PlanStop).where(PlanStop.order_id == order_id))).one()
    assert stop.day == day and stop.sequence == 1


def test_the_plan_day_command_prints_the_plan_and_fails_on_unplanned_orders(monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from app.cli import app
    from scheduling import cli

    seen = {}

    async def fake(city: str, day, time_limit: float) -> dict:  # noqa: ANN001
        seen.update(city=city, day=day.isoformat(), time_limit=time_limit)
        return {"stops": 1, "unplanned": [{"order_id": "x", "reason": "no_technician"}]}

    monkeypatch.setattr(cli, "_plan_day", fake)
    result = CliRunner().invoke(app, ["scheduling", "plan-day", "--city", "hangzhou", "--date", "2026-12-03", "--time-limit", "2"])
    assert result.exit_code == 1, result.output
    assert seen == {"city": "hangzhou", "day": "2026-12-03", "time_limit": 2.0}
    assert '"stops": 1' in result.stdout
