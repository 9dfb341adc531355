"""Look-ahead values (issue #17 item 2): the TD solution on a toy history worked out by hand, the
moves learned from completed orders, the assignment bonus, and the per-city versions with
`gasdispatch matching train-values` refusing bad input without touching the current values."""

import asyncio
import math
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h3
import pytest
from sqlmodel import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.service import Actor, create_order, transition
from matching.model import MatchingConfig, PlannedVisit, TechnicianView
from matching.models import CellValue, ValueVersion
from matching.scoring import eta_s, haversine_m
from matching.values import (
    DISCOUNT_PER_S, HINT_MIN_GAIN_S, RESOLUTION, Job, Trip, ValuesInputError, ValueTable, current_values, demand_hints,
    next_jobs, train, train_and_store,
)
from tests.factories import make_customer, make_technician

ROOT = Path(__file__).resolve().parents[2]
A = (116.40, 39.90)  # two H3 cells of resolution 7, 8.5 km apart
B = (116.50, 39.90)
HALF_PER_HOUR = 0.5 ** (1 / 3600)  # discount: a value an hour ahead counts half


def at(hour: float) -> datetime:
    return datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=hour)


def trip(start: tuple[float, float], t0: float, end: tuple[float, float], t1: float, reward: float) -> Trip:
    return Trip(*start, at(t0), at(t1), *end, reward)


def test_toy_history_gives_the_values_worked_out_by_hand():
    table = train([
        trip(A, 8 + 10 / 60, A, 9 + 10 / 60, -100),  # (A, 8) -> (A, 9) in 1 h
        trip(A, 9 + 20 / 60, B, 10 + 20 / 60, -200),  # (A, 9) -> (B, 10) in 1 h
        trip(B, 10.5, B, 11, -50),  # (B, 10) -> (B, 11), where nothing starts: worth 0
        trip(B, 8, B, 8.5, -60),  # (B, 8) -> itself in half an hour
        trip(B, 8 + 40 / 60, A, 10 + 40 / 60, -120),  # (B, 8) -> (A, 10), where nothing starts
    ], discount_per_s=HALF_PER_HOUR)
    b10 = -50
    a9 = -200 + 0.5 * b10
    a8 = -100 + 0.5 * a9
    # V(B,8) = ((-60 + sqrt(.5) V(B,8)) + (-120 + 0.25 * 0)) / 2
    b8 = -180 / (2 - math.sqrt(0.5))
    cell_a, cell_b = table.cell(*A), table.cell(*B)
    assert cell_a != cell_b
    assert table.values == pytest.approx({(cell_a, 8): a8, (cell_a, 9): a9, (cell_b, 10): b10, (cell_b, 8): b8})
    assert (a8, a9, b10) == (-212.5, -225, -50)
    assert table.value(*A, at(8.99)) == pytest.approx(a8)
    assert table.value(*A, at(14)) == pytest.approx((a8 + a9) / 2)  # nothing from A at 14:00: A's mean
    assert table.value(116.60, 39.90, at(8)) == pytest.approx(a9)  # a cell it never saw: the least it knows


def test_no_moves_is_an_input_error():
    with pytest.raises(ValuesInputError):
        train([])


def test_each_job_moves_its_technician_to_the_nearest_job_that_came_within_the_hour():
    config = MatchingConfig()
    east = (A[0] + 0.01, A[1])  # 850 m
    far = (A[0] + 0.05, A[1])
    jobs = [
        Job(*A, at(8), at(9), 1800),
        Job(*far, at(9.2), at(10), 1200),  # in the hour, far
        Job(*east, at(9.5), at(10.5), 2400),  # in the hour, near: taken after the first
        Job(*A, at(12), at(13), 600),  # more than an hour after anyone was free
    ]
    moves = {(m.start, m.lon): m for m in next_jobs(jobs, config)}
    drive = eta_s(haversine_m(*A, *east), config)
    assert moves[(at(9), A[0])] == Trip(*A, at(9), at(9) + timedelta(seconds=drive + 2400), *east, -drive)
    assert moves[(at(10), far[0])].end_lon == east[0]  # created before he was free: waiting for him
    # Nothing came from an hour before to an hour after 10:30 or 13:00 but themselves: they idle the hour.
    for done, place in ((at(10.5), east), (at(13), A)):
        assert moves[(done, place[0])] == Trip(*place, done, done + timedelta(hours=1), *place, -3600)
    assert len(moves) == 4


def test_bonus_is_positive_for_leaving_a_quiet_cell_for_a_busy_one_and_negative_the_other_way():
    busy, quiet = "busy", "quiet"
    table = ValueTable({(busy, 10): -100.0, (quiet, 10): -1000.0}, discount_per_s=HALF_PER_HOUR)
    table.cell = lambda lon, lat: busy if lon < 116.45 else quiet  # type: ignore[method-assign]
    to_busy = table.bonus(*B, *A, at(10), travel_s=600)
    to_quiet = table.bonus(*A, *B, at(10), travel_s=600)
    assert to_busy == pytest.approx(0.5 ** (1 / 6) * -100 + 1000)
    assert to_quiet == pytest.approx(0.5 ** (1 / 6) * -1000 + 100)
    assert to_busy > 0 > to_quiet


def idle(tech_id: str, lon: float, lat: float, now: datetime, **kw) -> TechnicianView:  # noqa: ANN003
    return TechnicianView(id=tech_id, lon=lon, lat=lat, status=kw.pop("status", "online"), certifications=(),
                          active_jobs=0, max_jobs=1, rating=0.0, last_seen_at=kw.pop("seen", now), **kw)


def test_idle_technicians_are_hinted_to_a_neighbouring_cell_only_where_the_move_pays():
    config, now = MatchingConfig(), at(10)
    here = h3.latlng_to_cell(A[1], A[0], RESOLUTION)
    busy, *others = [c for c in h3.grid_disk(here, 1) if c != here]
    quiet = {(cell, slot): -2000.0 for cell in (here, *others) for slot in range(24)}
    table = ValueTable(quiet | {(busy, slot): -200.0 for slot in range(24)})
    lat, lon = h3.cell_to_latlng(here)
    target_lat, target_lon = h3.cell_to_latlng(busy)
    distance = haversine_m(lon, lat, target_lon, target_lat)
    drive = eta_s(distance, config)
    first, second = idle("first", lon, lat, now), idle("second", lon + 0.0001, lat, now)
    # One hint: the second in the same cell is not sent to the same corner, and staying beats
    # the other neighbours.
    [hint] = demand_hints(table, [first, second], now, config)
    assert hint.technician_id == "first" and hint.cell == busy
    assert (hint.lon, hint.lat) == (target_lon, target_lat)
    assert hint.distance_m == pytest.approx(distance)
    # The move earns nothing: minus the drive, then the busy cell's value discounted by it.
    assert hint.gain_s == pytest.approx(DISCOUNT_PER_S ** drive * -200.0 - drive + 2000.0)
    # Not idle, or not free to go: nobody moves them.
    planned = PlannedVisit(lon, lat, arrival=now + timedelta(hours=1), latest=now + timedelta(hours=3))
    held = [replace(first, active_jobs=1, status="busy"), replace(first, reserved=True),
            replace(first, planned=(planned,)), replace(first, last_seen_at=now - timedelta(hours=1)),
            replace(first, status="offline")]
    assert all(demand_hints(table, [tech], now, config) == [] for tech in held)
    # Standing in the busy cell, or with a neighbour only a little better: no hint.
    assert demand_hints(table, [idle("there", target_lon, target_lat, now)], now, config) == []
    small = drive + HINT_MIN_GAIN_S / 2
    near_even = ValueTable(quiet | {(busy, slot): (-2000.0 + small) / DISCOUNT_PER_S ** drive for slot in range(24)})
    assert demand_hints(near_even, [first], now, config) == []


# Stored per city, versioned ------------------------------------------------------------------

SYSTEM = Actor.system("test")
PERIOD = (datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 3, 4, tzinfo=UTC))  # no other test's orders


async def completed(session: AsyncSession, technician, lon: float, created: datetime,  # noqa: ANN001
                    started: datetime, done: datetime) -> None:
    customer = await make_customer(session, lon=lon, lat=30.274)
    order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                               kind="repair", actor=SYSTEM, now=created)
    for step in ("start_matching", "offer", "accept", "depart", "arrive", "start_service", "complete"):
        when = done if step == "complete" else started if step == "start_service" else created
        await transition(session, order.id, step, SYSTEM, now=when,
                         set_values={"technician_id": technician.technician.id} if step == "accept" else None,
                         payload={"report_id": "test-report"} if step == "complete" else None)


async def three_jobs(session: AsyncSession) -> list[Job]:
    technician = await make_technician(session)
    t0 = PERIOD[0] + timedelta(hours=2)  # 10:00 in Hangzhou
    specs = [(120.155, t0, 10, 40), (120.165, t0 + timedelta(minutes=50), 5, 30),
             (120.160, t0 + timedelta(minutes=80), 5, 45)]
    jobs = []
    for lon, created, start_min, done_min in specs:
        started, done = created + timedelta(minutes=start_min), created + timedelta(minutes=done_min)
        await completed(session, technician, lon, created, started, done)
        jobs.append(Job(lon, 30.274, created, done, (done - started).total_seconds()))
    return jobs


async def test_train_values_stores_a_new_version_the_live_engine_reads(session: AsyncSession):
    from kit.config import get_settings

    jobs = await three_jobs(session)
    settings = get_settings()
    expected = train(next_jobs(jobs, MatchingConfig(detour_factor=settings.detour_factor,
                                                    speed_kmh=settings.speed_kmh)), timezone="Asia/Shanghai")
    first = await train_and_store(session, "demo", *PERIOD)
    assert (first.orders, first.states) == (3, len(expected.values))
    current = await current_values(session, "demo")
    assert current is not None and current.timezone == "Asia/Shanghai"
    assert current.values == pytest.approx(expected.values)
    # A later training from the first two orders only is the new current version; the first stays stored.
    second = await train_and_store(session, "demo", PERIOD[0], jobs[1].done_at + timedelta(seconds=1))
    assert second.version > first.version and second.orders == 2
    assert (await current_values(session, "demo")).values != current.values
    assert await session.get(ValueVersion, first.version) is not None


@pytest.mark.parametrize(("period", "reason"), [
    ((PERIOD[0], PERIOD[0]), "empty period"),
    ((PERIOD[1], PERIOD[0]), "inverted period"),
    ((PERIOD[1], PERIOD[1] + timedelta(days=1)), "no completed orders in demo"),
])
async def test_bad_input_stores_nothing_and_keeps_the_current_values(session: AsyncSession, period, reason):  # noqa: ANN001
    await three_jobs(session)
    kept = await train_and_store(session, "demo", *PERIOD)
    with pytest.raises(ValuesInputError, match=reason):
        await train_and_store(session, "demo", *period)
    with pytest.raises(ValuesInputError, match="no city 'atlantis'"):
        await train_and_store(session, "atlantis", *PERIOD)
    table = await current_values(session, "demo")
    assert table is not None and table.values and (await current_values(session, "demo")) is table
    newest = await train_and_store(session, "demo", *PERIOD)
    assert newest.version == kept.version + 1  # nothing was stored in between


def _train_values(*args: str) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "app", "matching", "train-values", *args], cwd=ROOT,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(("args", "reason"), [
    (["--from", "2025-03-03", "--to", "2025-03-03"], "error: empty period"),
    (["--from", "2025-03-04", "--to", "2025-03-03"], "error: inverted period"),
    (["--from", "2001-01-01", "--to", "2001-01-02", "--city", "demo"], "error: no completed orders in demo"),
])
async def test_train_values_command_exits_2_on_bad_input_and_the_current_values_stay(committed_sessions, args,  # noqa: ANN001
                                                                                      reason):
    async with committed_sessions() as s:
        version = ValueVersion(city_id="demo", period_start=PERIOD[0], period_end=PERIOD[1], orders=1,
                               resolution=7, slot_s=3600, discount_per_s=0.99)
        s.add(version)
        await s.flush()
        s.add(CellValue(version_id=version.id, cell="8731aa428ffffff", slot=10, value_s=-300.0))
        await s.commit()
    try:
        code, out, err = await asyncio.to_thread(_train_values, *args)
        assert code == 2, (out, err)
        assert err.startswith(reason), err
        assert out == ""
        async with committed_sessions() as s:
            table = await current_values(s, "demo")
        assert table is not None and table.values == {("8731aa428ffffff", 10): -300.0}
    finally:
        async with committed_sessions() as s:
            await s.exec(delete(ValueVersion).where(ValueVersion.city_id == "demo"))  # type: ignore[call-overload]
            await s.commit()
