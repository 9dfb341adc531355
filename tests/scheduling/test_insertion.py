"""On-demand work on top of the day plan (issue #15, item 4): the instant matcher weighs what a
job would make a technician's planned visits miss; an accepted insertion re-plans the rest of
his day, moving a visit it can no longer keep to the next window with room and telling its
customer; customers are reminded of a visit the day before."""

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import worker
from dispatch.alerts import OpsAlert
from dispatch.models import Notification, Order
from dispatch.service import Actor, create_order
from kit import after_commit
from kit.fanout import account_channel, order_channel
from kit.events import drain
from matching import service as engine
from matching.candidates import OfferCandidate
from matching.model import CertificationView, MatchingConfig, OrderView, PlannedVisit, TechnicianView
from matching.models import Offer
from matching.scoring import cost, plan_cost
from scheduling import planner, replan
from scheduling.models import Booking, PlanStop
from tests.factories import make_customer, make_technician, online_technician
from tests.scheduling.scheduling_factories import day_ahead, local, put_week

LON, LAT = 120.155, 30.274
KM_LON = 1 / (111.32 * 0.8638)  # degrees of longitude per km at 30.27° N
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)
CONFIG = MatchingConfig()


def _tech(tid: str, km_east: float, planned: tuple[PlannedVisit, ...] = ()) -> TechnicianView:
    return TechnicianView(tid, LON + km_east * KM_LON, LAT, "online",
                          (CertificationView("repair", True), CertificationView("emergency", True)),
                          active_jobs=0, max_jobs=1, rating=4.5, last_seen_at=NOW, planned=planned)


def _order(priority: str, service_min: int = 60) -> OrderView:
    skill = "emergency" if priority == "emergency" else "repair"
    return OrderView("o", LON, LAT, skill, priority, NOW, NOW + timedelta(hours=1),  # type: ignore[arg-type]
                     service_s=service_min * 60.0)


# A booked visit 1 km west, planned at +20 min, its window closing at +30 min.
TIGHT = (PlannedVisit(LON - KM_LON, LAT, NOW + timedelta(minutes=20), NOW + timedelta(minutes=30)),)
# One in the afternoon: an hour's job now leaves it untouched.
LATER = (PlannedVisit(LON - KM_LON, LAT, NOW + timedelta(hours=5), NOW + timedelta(hours=6)),)


def test_a_job_that_would_make_a_planned_visit_late_costs_it_and_the_free_technician_wins() -> None:
    order = _order("urgent")
    planned, free = _tech("planned", 0.6, TIGHT), _tech("free", 0.8)
    assert plan_cost(order, planned, NOW, CONFIG) > CONFIG.slip_visit_s  # a visit missed, and its minutes late
    assert cost(order, planned, NOW, CONFIG) > cost(order, free, NOW, CONFIG)
    # the same technician whose visit is hours away pays only for the extra way there
    relaxed = replace(planned, planned=LATER)
    assert 0 < plan_cost(order, relaxed, NOW, CONFIG) < 300
    assert cost(order, relaxed, NOW, CONFIG) < cost(order, free, NOW, CONFIG)


def test_an_emergency_outranks_the_plan_unless_a_free_technician_is_nearly_as_close() -> None:
    order = _order("emergency")
    planned = _tech("planned", 0.3, TIGHT)
    assert cost(order, planned, NOW, CONFIG) < cost(order, _tech("far", 3.0), NOW, CONFIG)
    assert cost(_order("emergency"), _tech("planned", 0.6, TIGHT), NOW, CONFIG) > cost(order, _tech("near", 0.8), NOW, CONFIG)
    # emergencies weigh the plan a tenth as much as other work does
    assert plan_cost(order, planned, NOW, CONFIG) < plan_cost(_order("urgent"), planned, NOW, CONFIG) / 5


@pytest.fixture
def index(redis):  # noqa: ANN001, ANN201
    return engine.geo_index(redis)


async def _online(session: AsyncSession, index, km_east: float, **kw):  # noqa: ANN001, ANN003, ANN202
    return await online_technician(session, index, LON + km_east * KM_LON, LAT, **kw)


async def _accept_job_next_to(session: AsyncSession, index, fitter, kind: str) -> None:  # noqa: ANN001
    """A customer 8 km east (next to the fitter) orders `kind` now; the fitter accepts it."""
    neighbour = await make_customer(session, lon=LON + 8 * KM_LON, lat=LAT)
    job = await create_order(session, customer_id=neighbour.customer.id, address_id=neighbour.address.id,
                             kind=kind, actor=Actor("customer", str(neighbour.account.id)))
    await drain(session)
    await engine.run_batch(session, index)
    offer = (await session.exec(select(Offer).where(Offer.order_id == job.id))).one()
    assert offer.technician_id == fitter.technician.id
    await engine.accept_offer(session, offer.id, fitter.technician.id)
    await drain(session)  # order accepted -> scheduling re-plans


async def test_the_live_matcher_sends_an_urgent_job_past_a_technician_whose_next_visit_it_would_make_late(
    session: AsyncSession, index,  # noqa: ANN001
) -> None:
    planned = await _online(session, index, 0.6)
    free = await _online(session, index, 0.8)
    now = await engine.database_now(session)
    # his next visit, 1 km west: planned in 20 minutes, its window closing in 30
    neighbour = await make_customer(session, lon=LON - KM_LON, lat=LAT)
    booked = await create_order(session, customer_id=neighbour.customer.id, address_id=neighbour.address.id,
                                kind="repair", actor=Actor("customer", str(neighbour.account.id)),
                                window=(now + timedelta(minutes=10), now + timedelta(minutes=30)), now=now)
    session.add(Booking(order_id=booked.id, technician_id=planned.technician.id, created_at=now))
    session.add(PlanStop(order_id=booked.id, city_id=booked.city_id, day=now.date(), technician_id=planned.technician.id,
                         sequence=1, planned_arrival_at=now + timedelta(minutes=20),
                         planned_departure_at=now + timedelta(minutes=80), planned_at=now))
    customer = await make_customer(session)
    urgent = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                kind="meter_fault", actor=Actor("customer", str(customer.account.id)))
    await drain(session)
    await engine.run_batch(session, index)

    offer = (await session.exec(select(Offer).where(Offer.order_id == urgent.id))).one()
    assert offer.technician_id == free.technician.id
    # the round records whom it weighed: the planned one with what his plan would lose
    rows = {c.technician_id: c for c in (await session.exec(select(OfferCandidate).where(
        OfferCandidate.order_id == urgent.id))).all()}
    assert rows[planned.technician.id].details["plan_cost_s"] > CONFIG.slip_visit_s
    assert "plan_cost_s" not in rows[free.technician.id].details


@pytest.fixture
async def planned_day(client: AsyncClient, session: AsyncSession, index):  # noqa: ANN001, ANN201
    """A technician working 08:00-14:00 (no lunch) three days ahead, online 8 km east, with a
    repair booked at the centre for 12:00-14:00 and planned at 12:00."""
    fitter = await _online(session, index, 8.0, kinds=("repair", "installation"))
    await put_week(client, fitter.headers, start="08:00", end="14:00", breaks=[])
    day = day_ahead()
    household = await make_customer(session)
    response = await client.post("/v1/bookings", headers=household.headers, json={
        "address_id": str(household.address.id), "kind": "repair", "window_start": local(day, 12).isoformat()})
    assert response.status_code == 201, response.text
    booked = uuid.UUID(response.json()["id"])
    city_id = (await session.get(Order, booked)).city_id
    result = await planner.plan_day(session, city_id=city_id, day=day, now=local(day, 8), time_limit=1.0)
    assert [s.order_id for s in result.stops] == [booked]
    return fitter, household, booked, day


async def test_an_accepted_insertion_replans_his_day_and_moves_the_visit_it_makes_him_miss(
    session: AsyncSession, index, planned_day, monkeypatch, redis,  # noqa: ANN001
) -> None:
    fitter, household, booked, day = planned_day
    # That day at 11:15 he accepts a 90-minute installation next to him: done 12:45, 8 km from
    # the booked repair, which could then end only after his shift.
    monkeypatch.setattr(replan, "database_now", _clock(local(day, 11) + timedelta(minutes=15)))
    listener = redis.pubsub()
    await listener.subscribe(account_channel(fitter.account.id))
    await _accept_job_next_to(session, index, fitter, "installation")
    await session.commit()
    await after_commit.run(session)
    heard = []
    for _ in range(40):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            heard.append(json.loads(message["data"]))
    assert {"type": "plan_changed", "day": day.isoformat()} in [
        {k: v for k, v in m.items() if k in ("type", "day")} for m in heard]  # his day screen reloads

    moved = await session.get(Order, booked, populate_existing=True)
    assert moved.status == "scheduled"
    assert moved.window_start == local(day + timedelta(days=1), 8)  # the next window with room
    told = (await session.exec(select(Notification).where(
        Notification.account_id == household.account.id, Notification.kind == "booking_moved"))).all()
    assert [n.payload["window_start"] for n in told] == [moved.window_start.isoformat()]
    assert (await session.exec(select(PlanStop).where(PlanStop.order_id == booked))).first() is None
    assert (await session.exec(select(OpsAlert).where(OpsAlert.order_id == booked))).all() == []


async def test_an_insertion_that_leaves_room_keeps_the_visit_planned_after_the_job(
    session: AsyncSession, index, planned_day, monkeypatch,  # noqa: ANN001
) -> None:
    fitter, household, booked, day = planned_day
    now = local(day, 10)
    monkeypatch.setattr(replan, "database_now", _clock(now))
    await _accept_job_next_to(session, index, fitter, "repair")

    stop = await session.get(PlanStop, booked, populate_existing=True)
    assert stop.planned_at == now  # planned again at the insertion
    assert stop.planned_arrival_at == local(day, 12)  # done 11:00, there well inside the window
    assert (await session.get(Order, booked)).window_start == local(day, 12)
    assert (await session.exec(select(Notification).where(Notification.account_id == household.account.id,
                                                          Notification.kind == "booking_moved"))).all() == []


async def test_a_visit_moved_to_a_later_window_of_the_same_day_keeps_its_place_in_the_plan(
    client: AsyncClient, session: AsyncSession, index, monkeypatch, redis,  # noqa: ANN001
) -> None:
    fitter = await _online(session, index, 8.0, kinds=("repair", "installation"), max_jobs=2)
    await put_week(client, fitter.headers, start="08:00", end="18:00", breaks=[])
    day = day_ahead()
    household = await make_customer(session)
    response = await client.post("/v1/bookings", headers=household.headers, json={
        "address_id": str(household.address.id), "kind": "repair", "window_start": local(day, 10).isoformat()})
    assert response.status_code == 201, response.text
    booked = uuid.UUID(response.json()["id"])
    city_id = (await session.get(Order, booked)).city_id
    await planner.plan_day(session, city_id=city_id, day=day, now=local(day, 8), time_limit=1.0)
    # At 09:15 he takes two 90-minute installations 8 km away: done 12:15, at the door 12:40,
    # after the 10:00-12:00 window; 12:00-14:00 has room that day.
    monkeypatch.setattr(replan, "database_now", _clock(local(day, 9) + timedelta(minutes=15)))
    listener = redis.pubsub()
    await listener.subscribe(order_channel(booked))
    for _ in range(2):
        await _accept_job_next_to(session, index, fitter, "installation")

    moved = await session.get(Order, booked, populate_existing=True)
    assert moved.window_start == local(day, 12)
    stop = (await session.exec(select(PlanStop).where(PlanStop.order_id == booked)
                               .execution_options(populate_existing=True))).one()
    assert stop.technician_id == fitter.technician.id
    assert local(day, 12) + timedelta(minutes=30) <= stop.planned_arrival_at <= local(day, 14)
    # his open order page hears the notice and the move on the order's socket
    await session.commit()
    await after_commit.run(session)
    heard = []
    for _ in range(40):
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            heard.append(json.loads(message["data"]))
    assert {m["type"] for m in heard} >= {"notification", "status"}
    notice = next(m["notification"] for m in heard if m["type"] == "notification")
    assert (notice["kind"], notice["payload"]["window_start"]) == ("booking_moved", moved.window_start.isoformat())
    assert any(m["type"] == "status" and m.get("action") == "move_window" for m in heard)


async def test_a_replan_plans_the_rest_of_his_day_after_a_released_visit_he_still_has_to_make(
    client: AsyncClient, session: AsyncSession,
) -> None:
    from scheduling import service as bookings

    fitter = await make_technician(session, kinds=("repair",))
    await put_week(client, fitter.headers, start="08:00", end="18:00", breaks=[])
    day = day_ahead()
    ids = []
    for hour, km in ((10, 0.0), (12, 2.0)):
        household = await make_customer(session, lon=LON + km * KM_LON, lat=LAT)
        response = await client.post("/v1/bookings", headers=household.headers, json={
            "address_id": str(household.address.id), "kind": "repair", "window_start": local(day, hour).isoformat()})
        assert response.status_code == 201, response.text
        ids.append(uuid.UUID(response.json()["id"]))
    first, second = ids
    city_id = (await session.get(Order, first)).city_id
    await planner.plan_day(session, city_id=city_id, day=day, now=local(day, 8), time_limit=1.0)
    # The 10:00 visit, planned late in its window (11:20-12:20), is released into matching.
    kept = await session.get(PlanStop, first)
    kept.planned_arrival_at, kept.planned_departure_at = local(day, 11) + timedelta(minutes=20), local(day, 12) + timedelta(minutes=20)
    assert await bookings.release_due(session, local(day, 9) + timedelta(minutes=35)) == 1

    result = await replan.replan_day(session, city_id, day, now=local(day, 9) + timedelta(minutes=40), time_limit=1.0)
    [stop] = result.stops
    assert stop.order_id == second and stop.sequence == 2
    assert stop.planned_arrival_at >= kept.planned_departure_at  # not while he is at the first door
    assert (await session.get(PlanStop, first)).planned_arrival_at == kept.planned_arrival_at  # kept as it was


async def test_customers_are_reminded_the_day_before_once_per_window(
    client: AsyncClient, session: AsyncSession, planned_day,  # noqa: ANN001
) -> None:
    _, household, booked, day = planned_day
    window_start = local(day, 12)
    assert await replan.remind_due(session, window_start - timedelta(hours=30)) == 0  # not yet
    assert await replan.remind_due(session, window_start - timedelta(hours=20)) == 1
    assert await replan.remind_due(session, window_start - timedelta(hours=19)) == 0  # once
    reminders = (await session.exec(select(Notification).where(
        Notification.account_id == household.account.id, Notification.kind == "booking_reminder"))).all()
    assert [(n.payload["order_id"], n.payload["timezone"]) for n in reminders] == [(str(booked), "Asia/Shanghai")]
    # a booking made less than a day ahead was confirmed at booking time: no reminder
    late = await make_customer(session)
    response = await client.post("/v1/bookings", headers=late.headers, json={
        "address_id": str(late.address.id), "kind": "repair", "window_start": local(day, 8).isoformat()})
    assert response.status_code == 201, response.text
    late_order = uuid.UUID(response.json()["id"])
    (await session.get(Booking, late_order)).created_at = local(day, 8) - timedelta(hours=2)
    await session.flush()
    assert await replan.remind_due(session, local(day, 8) - timedelta(hours=1)) == 0
    assert {"scheduling.remind"} <= set(worker.PERIODIC) and "scheduling.replan" in worker.cron_jobs()


def _clock(at: datetime):  # noqa: ANN202
    async def now(session: AsyncSession) -> datetime:
        return at
    return now
