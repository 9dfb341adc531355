"""The day planner (issue #15, item 3): who visits which booked order of a city's local day, in
what order, at what time. It builds a `matching.planning.Problem` from the day's rows and calls
the same `plan_routes` as `gasdispatch plan`; the plan is stored (scheduling_plan_stop, one plan
per city-day, replaced whole) and each booking then holds the capacity of its planned technician.

The problem, in seconds since the day's local midnight:
- a job per order still `scheduled` whose window starts that day: service may start inside the
  booking's window (the technician arrives inside it; early, he waits), takes the service kind's
  typical duration, and needs the certification kind of the work plus `fits:<order>`;
- a vehicle per technician who works that day (a weekly shift, no day off, active, of the city):
  from his shift's start (or now, planning today) to its end, from and back to his roster's
  start/end place, else his station, else nowhere (no travel to his first visit, none back);
  his skills are his verified certification kinds and `fits:<order>` for each order he may take
  under the capacity rule (scheduling/slots.py): he covers the address, the window lies inside
  his shift and touches none of his breaks, his certification for the work is valid over it.
  The solver has no breaks; they are honoured as the capacity rule honours them (no visit whose
  window touches one), so a visit may run on into a break as a booked one may.
- travel: great-circle distance x the detour factor / the speed (the settings matching uses).
- planning today (scheduling/replan.py re-plans as on-demand work arrives): a technician on a
  job starts from its address once it should be done; the stops of visits already released
  into matching stay as they were, the new ones after them (from the last one's place, once
  its planned departure has passed).

Orders no technician may take, and any the solver could not fit (a late arrival or a late
return), are not planned: returned, logged and raised as an ops alert; their booking is kept.
Services flush, never commit.
"""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import structlog
from sqlalchemy import and_, delete, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import queries
from dispatch.alerts import raise_alert
from dispatch.states import OPEN_STATES
from kit.config import get_settings
from kit.errors import NotFound
from kit.fanout import account_channel, push_after_commit
from kit.geo import lonlat
from matching.planning import Job, Plan, Problem, Vehicle, evaluate, plan_routes
from matching.planning.problem import TOLERANCE
from matching.scoring import haversine_m_np
from scheduling import slots as grid
from scheduling.models import Booking, DayOff, PlanStop, Roster, WeeklyShift
from scheduling.service import city_timezone

log = structlog.get_logger(__name__)

TIME_LIMIT_S = 10.0  # default search time per city-day
UNPLANNED_ALERT = "booking_unplanned"
NOWHERE = 0  # location 0: no travel to or from it (a technician without a known place)


@dataclass(frozen=True, slots=True)
class Unplanned:
    order_id: uuid.UUID
    reason: str  # "no_technician": nobody working may take it; "no_room": the solver could not fit it


@dataclass(frozen=True, slots=True)
class DayPlanResult:
    city_id: str
    day: date
    timezone: str
    stops: list[PlanStop]  # by technician, then sequence
    unplanned: list[Unplanned]
    travel_s: float
    seconds: float


@dataclass(frozen=True, slots=True)
class _Shift:
    technician_id: uuid.UUID
    shift: grid.Interval
    breaks: tuple[grid.Interval, ...]


async def _working(session: AsyncSession, city_id: str, day: date, tz: ZoneInfo) -> list[_Shift]:
    """The city's technicians who work that day: a shift for the weekday, no day off."""
    rows = (await session.exec(select(WeeklyShift).where(
        WeeklyShift.weekday == day.weekday(),
        ~select(DayOff.id).where(DayOff.technician_id == WeeklyShift.technician_id, DayOff.first_day <= day,
                                 DayOff.last_day >= day).exists()))).all()
    active = await queries.bookable_technicians(session, city_id, [r.technician_id for r in rows])
    return [_Shift(r.technician_id, grid.local_interval(day, r.starts, r.ends, tz),
                   tuple(grid.local_interval(day, time.fromisoformat(a), time.fromisoformat(b), tz) for a, b in r.breaks))
            for r in sorted(rows, key=lambda r: str(r.technician_id)) if r.technician_id in active]


def travel_matrix(points: list[tuple[float, float] | None]) -> np.ndarray:
    """Seconds between places (lon, lat); None is nowhere: no travel to or from it."""
    settings = get_settings()
    xy = np.array([p if p is not None else (0.0, 0.0) for p in points], dtype=np.float64)
    metres = haversine_m_np(xy[:, None, 0], xy[:, None, 1], xy[None, :, 0], xy[None, :, 1])
    seconds = metres * settings.detour_factor / (settings.speed_kmh / 3.6)
    nowhere = [i for i, p in enumerate(points) if p is None]
    seconds[nowhere, :] = 0.0
    seconds[:, nowhere] = 0.0
    return seconds


def _repair(problem: Problem, plan: Plan) -> tuple[Plan, list[str]]:
    """The plan without the stops it cannot keep (a service start after its window, a return
    after the shift, a job the vehicle may not do), dropped one at a time, and those jobs."""
    jobs = {job.id: job for job in problem.jobs}
    vehicles = {vehicle.id: vehicle for vehicle in problem.vehicles}
    assignment = {route.vehicle: list(route.jobs) for route in plan.routes}
    dropped = [str(job) for job in plan.unassigned]
    while True:
        checked = evaluate(problem, assignment, seconds=plan.seconds)
        bad = None
        for route in checked.routes:
            vehicle = vehicles[route.vehicle]
            late = [s.job for s in route.stops
                    if s.start > jobs[s.job].latest + TOLERANCE or not vehicle.can_do(jobs[s.job])]
            if late:
                bad = (route.vehicle, late[0])
            elif route.arrival > vehicle.latest + TOLERANCE:
                bad = (route.vehicle, route.stops[-1].job)
            if bad:
                break
        if bad is None:
            return checked, dropped
        assignment[bad[0]].remove(bad[1])
        dropped.append(str(bad[1]))


async def _busy_until(session: AsyncSession, ids: list[uuid.UUID],
                      now: datetime) -> dict[uuid.UUID, tuple[datetime, tuple[float, float]]]:
    """Technicians on jobs now -> when and where their last one should end: each job's typical
    duration (counted from its last step once he is there), with the travel between his jobs;
    the way to the first is not known here (his live position is matching's) and counts nothing."""
    out: dict[uuid.UUID, tuple[datetime, tuple[float, float]]] = {}
    for job in await queries.jobs_underway(session, ids):
        where = lonlat(job.location)
        if where is None:
            continue
        duration = timedelta(minutes=job.duration_min)
        if job.technician_id in out:
            free_at, last = out[job.technician_id]
            free_at += timedelta(seconds=float(travel_matrix([last, where])[0, 1])) + duration
        else:
            free_at = job.ends_at(now)
        out[job.technician_id] = (free_at, where)
    return out


async def _kept_stops(session: AsyncSession, city_id: str,
                      day: date) -> list[tuple[PlanStop, tuple[float, float] | None]]:
    """The day's stops whose visits left the plan for matching (released, offered, under way),
    with their places: a new plan keeps them as they are and plans the rest after them."""
    stops = (await session.exec(select(PlanStop).where(PlanStop.city_id == city_id, PlanStop.day == day))).all()
    visits = await queries.visits_of(session, [s.order_id for s in stops]) if stops else {}
    return [(s, lonlat(visits[s.order_id].location)) for s in stops
            if s.order_id in visits and visits[s.order_id].status != "scheduled"
            and visits[s.order_id].status in OPEN_STATES]


async def _lock_day(session: AsyncSession, city_id: str, day: date) -> None:
    """The bookings' own lock of a city's day (scheduling.service): no booking or move of that
    day runs while it is planned, and two plans of it run one after the other."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"scheduling:day:{city_id}:{day.isoformat()}"})


async def plan_day(session: AsyncSession, *, city_id: str, day: date, now: datetime,
                   time_limit: float = TIME_LIMIT_S, alert_unplanned: bool = True) -> DayPlanResult:
    """Plan the city's booked orders of its local `day` and store the plan in place of the last.
    `alert_unplanned` False: the caller deals with what could not be planned."""
    if await queries.find_city(session, city_id) is None:
        raise NotFound("no such city")
    tz = await city_timezone(session, city_id)
    await _lock_day(session, city_id, day)
    midnight = datetime.combine(day, time(0), tz)
    visits = await queries.scheduled_visits(session, city_id, midnight,
                                            datetime.combine(day + timedelta(days=1), time(0), tz))
    shifts = await _working(session, city_id, day, tz)
    ids = [s.technician_id for s in shifts]
    stations = await queries.bookable_technicians(session, city_id, ids)
    rosters = {r.technician_id: r for r in (await session.exec(
        select(Roster).where(col(Roster.technician_id).in_(ids)))).all()} if ids else {}
    certs = await queries.certifications_by_technician(session, ids) if ids else {}
    covered = await queries.covering(session, ids, [v.order_id for v in visits]) if ids and visits else set()
    today = midnight <= now < datetime.combine(day + timedelta(days=1), time(0), tz)
    busy = await _busy_until(session, ids, now) if today and ids else {}
    kept = await _kept_stops(session, city_id, day)

    def secs(at: datetime) -> float:
        return (at - midnight).total_seconds()

    points: list[tuple[float, float] | None] = [None]  # NOWHERE
    vehicles = []
    for s in shifts:
        roster = rosters.get(s.technician_id)
        station = lonlat(stations.get(s.technician_id))
        places = []
        for place in (roster.start_location if roster else None, roster.end_location if roster else None):
            where = lonlat(place) or station
            if where is None:
                places.append(NOWHERE)
            else:
                points.append(where)
                places.append(len(points) - 1)
        # On a job now, or a kept visit still ahead: his day goes on from there once it is done.
        free_at, start = busy.get(s.technician_id, (now, None))
        for stop, where in kept:
            if stop.technician_id == s.technician_id and stop.planned_departure_at > free_at and where:
                free_at, start = stop.planned_departure_at, where
        if start is not None:
            points.append(start)
            places[0] = len(points) - 1
        verified = [c for c in certs.get(s.technician_id, []) if c.status == "verified"]
        fits = {f"fits:{v.order_id}" for v in visits
                if (s.technician_id, v.order_id) in covered
                and (window := grid.Interval(v.window_start, v.window_end)).within(s.shift)
                and not any(window.overlaps(b) for b in s.breaks)
                and any(c.kind == v.certification and window.within(grid.Interval(c.valid_from, c.valid_until))
                        for c in verified)}
        kinds = {c.kind for c in verified if c.valid_from < s.shift.end and c.valid_until > s.shift.start}
        vehicles.append(Vehicle(id=str(s.technician_id), start=places[0], end=places[1],
                                earliest=max(secs(s.shift.start), secs(free_at)), latest=secs(s.shift.end),
                                skills=frozenset(kinds | fits)))
    vehicles = [v for v in vehicles if v.earliest <= v.latest]  # planning today: his shift is not over
    takers: set[str] = set().union(*(v.skills for v in vehicles))
    jobs, unplanned = [], []
    for v in visits:
        if f"fits:{v.order_id}" not in takers:
            unplanned.append(Unplanned(v.order_id, "no_technician"))
            continue
        points.append(lonlat(v.location))
        jobs.append(Job(id=str(v.order_id), location=len(points) - 1, service=v.duration_min * 60.0,
                        earliest=secs(v.window_start), latest=secs(v.window_end),
                        skills=frozenset({v.certification, f"fits:{v.order_id}"})))
    problem = Problem(name=f"{city_id}:{day.isoformat()}", travel=travel_matrix(points), jobs=tuple(jobs),
                      vehicles=tuple(vehicles))
    solved = await asyncio.to_thread(plan_routes, problem, time_limit)
    plan, dropped = _repair(problem, solved)
    unplanned += [Unplanned(uuid.UUID(job), "no_room") for job in dropped]

    after = {}  # the visits already released from the plan keep their places in front
    for stop, _ in kept:
        after[stop.technician_id] = max(after.get(stop.technician_id, 0), stop.sequence)
    stops = [PlanStop(order_id=uuid.UUID(str(stop.job)), city_id=city_id, day=day,
                      technician_id=uuid.UUID(str(route.vehicle)),
                      sequence=after.get(uuid.UUID(str(route.vehicle)), 0) + n,
                      planned_arrival_at=(midnight + timedelta(seconds=stop.start)).astimezone(timezone.utc),
                      planned_departure_at=(midnight + timedelta(seconds=stop.departure)).astimezone(timezone.utc),
                      planned_at=now)
             for route in plan.routes for n, stop in enumerate(route.stops, start=1)]
    planned = [s.order_id for s in stops]
    await _tell_technicians(session, city_id, day, [*(k for k, _ in kept), *stops])
    await session.exec(delete(PlanStop).where(  # type: ignore[call-overload]
        or_(and_(PlanStop.city_id == city_id, PlanStop.day == day,
                 col(PlanStop.order_id).not_in([k.order_id for k, _ in kept])),
            col(PlanStop.order_id).in_(planned))))
    session.add_all(stops)
    bookings = {b.order_id: b for b in (await session.exec(
        select(Booking).where(col(Booking.order_id).in_(planned)).with_for_update())).all()} if planned else {}
    for stop in stops:
        booking = bookings.get(stop.order_id)
        if booking is not None and booking.technician_id != stop.technician_id:
            booking.technician_id = stop.technician_id
            session.add(booking)
    for missing in unplanned:
        log.warning("scheduling.unplanned", city=city_id, day=day.isoformat(), order_id=str(missing.order_id),
                    reason=missing.reason)
        if alert_unplanned:
            await alert(session, missing, day, now)
    await session.flush()
    log.info("scheduling.day_planned", city=city_id, day=day.isoformat(), stops=len(stops),
             unplanned=len(unplanned), travel_s=round(plan.travel), seconds=round(solved.seconds, 2))
    return DayPlanResult(city_id, day, tz.key, stops, unplanned, plan.travel, solved.seconds)


async def _tell_technicians(session: AsyncSession, city_id: str, day: date, stops: list[PlanStop]) -> None:
    """Each technician whose stops of the day change (in order, technician or time) hears it on
    his socket once the plan commits: his day screen reloads."""
    def route(rows) -> dict[uuid.UUID, list[tuple[uuid.UUID, datetime]]]:  # noqa: ANN001
        out: dict[uuid.UUID, list[tuple[uuid.UUID, datetime]]] = {}
        for row in sorted(rows, key=lambda r: (str(r.technician_id), r.sequence)):
            out.setdefault(row.technician_id, []).append((row.order_id, row.planned_arrival_at))
        return out

    before = route((await session.exec(select(PlanStop).where(PlanStop.city_id == city_id, PlanStop.day == day))).all())
    after = route(stops)
    changed = [t for t in set(before) | set(after) if before.get(t) != after.get(t)]
    for account_id in (await queries.technician_accounts(session, changed)).values() if changed else ():
        push_after_commit(session, account_channel(account_id), "plan_changed", day=day.isoformat())


async def alert(session: AsyncSession, missing: Unplanned, day: date, now: datetime) -> None:
    """Operations are told of a booked visit no plan of its day could keep."""
    await raise_alert(session, kind=UNPLANNED_ALERT, level="warning", order_id=missing.order_id,
                      details={"day": day.isoformat(), "reason": missing.reason}, now=now)


async def plan_tomorrow(session: AsyncSession, now: datetime, time_limit: float = TIME_LIMIT_S) -> int:
    """Every city's next local day (the evening cron job); the count of planned stops."""
    done = 0
    for city_id in await queries.city_ids(session):
        tz = await city_timezone(session, city_id)
        result = await plan_day(session, city_id=city_id, day=now.astimezone(tz).date() + timedelta(days=1),
                                now=now, time_limit=time_limit)
        done += len(result.stops)
    return done


# -- reading the plan --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    stop: PlanStop
    visit: queries.BookedVisit


async def planned_visits(session: AsyncSession, *, city_id: str, day: date,
                         technician_id: uuid.UUID | None = None) -> list[PlannedVisit]:
    """The stored plan of a city-day (or one technician's part of it), by technician and
    sequence; stops of orders since cancelled or moved to another day are left out."""
    query = select(PlanStop).where(PlanStop.city_id == city_id, PlanStop.day == day)
    if technician_id is not None:
        query = query.where(PlanStop.technician_id == technician_id)
    stops = (await session.exec(query.order_by(PlanStop.technician_id, PlanStop.sequence))).all()
    visits = await queries.visits_of(session, [s.order_id for s in stops]) if stops else {}
    tz = await city_timezone(session, city_id)
    return [PlannedVisit(s, visits[s.order_id]) for s in stops
            if s.order_id in visits and visits[s.order_id].status in OPEN_STATES
            and visits[s.order_id].window_start.astimezone(tz).date() == day]


async def technician_day(session: AsyncSession, technician_id: uuid.UUID, day: date | None,
                         now: datetime) -> tuple[str, date, list[PlannedVisit]]:
    """His own stops of his local day (None: today on his city's calendar), in order, with his
    city's zone and the day."""
    city_id = await queries.technician_city(session, technician_id)
    if city_id is None:
        raise NotFound("no such technician")
    tz = await city_timezone(session, city_id)
    day = day or now.astimezone(tz).date()
    return tz.key, day, await planned_visits(session, city_id=city_id, day=day, technician_id=technician_id)


async def city_day(session: AsyncSession, city_id: str, day: date) -> tuple[str, list[PlannedVisit]]:
    if await queries.find_city(session, city_id) is None:
        raise NotFound("no such city")
    tz = await city_timezone(session, city_id)
    return tz.key, await planned_visits(session, city_id=city_id, day=day)
