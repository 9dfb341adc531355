"""Look-ahead values: what a technician standing in an H3 cell at a time of day is worth.

As in DiDi's learning-and-planning dispatch (Xu et al., KDD 2018): a state is (H3 cell, slot of
the local day); a move takes a technician from one state to another, earning a reward,
discounted by the time it took; the value of a state is the mean return of the moves made from
it, V(s) = mean[r + g^dt V(s')] (a move to a state no move starts from ends the return there),
solved exactly as one sparse linear system. The batch adds to an assignment the technician's
discounted value where the job leaves him minus his value where he stands (`bonus`), so it
prefers assignments that leave technicians where demand will be; only in rounds without a
backlog (matching/assign.py says why).

The moves come from completed orders (`next_jobs`): a technician free at an order's place when
it was done drives to the nearest order that came within an hour of that moment (the greedy
choice), serves it, and is free again there (where the next job's move starts); with none, he
idles the hour there. The reward is minus the drive (or the idle hour) in seconds: V is minus
the discounted time lost ahead, in seconds like the assignment's cost, so no conversion. DiDi's
reward is the fare; measured here, each order's work as the reward sent technicians after busy
places at the remote orders' expense (README, Performance).

Training and the per-city versions in PostgreSQL are here too (`train_and_store`,
`current_values`); the pure part (`next_jobs`, `train`, `ValueTable`) is what the simulator uses.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import h3
import numpy as np
from scipy.sparse import csr_matrix, identity
from scipy.sparse.linalg import spsolve
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import queries
from kit.config import get_settings
from kit.geo import lonlat
from matching.eligibility import technician_reason
from matching.model import MatchingConfig, TechnicianView
from matching.models import CellValue, ValueVersion
from matching.scoring import eta_s, haversine_m

RESOLUTION = 7  # H3 cells of ~5 km² (1.4 km edge): a few minutes' drive across
SLOT_S = 3600  # slots of one hour of the local day
DISCOUNT_PER_S = 0.9 ** (1 / 600)  # the paper's 0.9 per 10-minute step
NEXT_JOB_WINDOW_S = 3600  # a technician's next job came at most this long before or after he was free
DAY_S = 86_400
# A demand hint promises at least this much less time lost ahead: below it the values' noise
# would send technicians to and fro.
HINT_MIN_GAIN_S = 120.0


class ValuesInputError(ValueError):
    """Nothing to train on: an empty or inverted period, an unknown city, no completed orders."""


@dataclass(frozen=True, slots=True)
class Job:
    """A completed order: its place, when it came, when its technician was free again, and how
    long the visit itself took."""

    lon: float
    lat: float
    created_at: datetime
    done_at: datetime
    service_s: float


@dataclass(frozen=True, slots=True)
class Trip:
    """A technician's move: from (lon, lat) at `start` to (end_lon, end_lat) at `end`, earning
    `reward_s`."""

    lon: float
    lat: float
    start: datetime
    end: datetime
    end_lon: float
    end_lat: float
    reward_s: float


class ValueTable:
    """V per (cell, slot). Where the history says nothing for the slot, a cell is worth its mean
    over the slots it has (the simulator's first half trains the second); a cell it never saw is
    worth the least it knows: rewards are costs here, and 0 would make the unknown the best."""

    def __init__(self, values: dict[tuple[str, int], float], *, timezone: str = "UTC",
                 resolution: int = RESOLUTION, slot_s: int = SLOT_S, discount_per_s: float = DISCOUNT_PER_S):
        self.values, self.timezone, self.resolution = values, timezone, resolution
        self.slot_s, self.discount_per_s = slot_s, discount_per_s
        self._zone = ZoneInfo(timezone)
        self.floor = min(values.values(), default=0.0)
        sums: dict[str, list[float]] = {}
        for (cell, _), v in values.items():
            sums.setdefault(cell, []).append(v)
        self.cell_mean = {cell: sum(vs) / len(vs) for cell, vs in sums.items()}

    def cell(self, lon: float, lat: float) -> str:
        return h3.latlng_to_cell(lat, lon, self.resolution)

    def slot(self, at: datetime) -> int:
        local = at.astimezone(self._zone)
        return (local.hour * 3600 + local.minute * 60 + local.second) // self.slot_s

    def cell_value(self, cell: str, slot: int) -> float:
        known = self.values.get((cell, slot))
        if known is not None:
            return known
        return self.cell_mean.get(cell, self.floor)

    def value(self, lon: float, lat: float, at: datetime) -> float:
        return self.cell_value(self.cell(lon, lat), self.slot(at))

    def bonus(self, tech_lon: float, tech_lat: float, order_lon: float, order_lat: float, at: datetime,
              travel_s: float) -> float:
        """Seconds: his value where the job leaves him `travel_s` from now, discounted, minus
        his value where he stands now. Higher is better (the batch subtracts it from cost)."""
        there = self.value(order_lon, order_lat, at + timedelta(seconds=travel_s))
        return self.discount_per_s ** travel_s * there - self.value(tech_lon, tech_lat, at)

    def bonuses(self, tech_points: Sequence[tuple[float, float]], order_points: Sequence[tuple[float, float]],
                tech_idx: np.ndarray, order_idx: np.ndarray, at: datetime, travel_s: np.ndarray) -> np.ndarray:
        """`bonus` for many (tech_points[tech_idx[i]], order_points[order_idx[i]]) pairs, each
        point's cell found once."""
        tech_cells = [self.cell(lon, lat) for lon, lat in tech_points]
        order_cells = [self.cell(lon, lat) for lon, lat in order_points]
        now_slot = self.slot(at)
        here = np.array([self.cell_value(c, now_slot) for c in tech_cells])
        local = at.astimezone(self._zone)
        # Each arrival's slot: the local time of day moves on with the travel, wrapping at midnight.
        slots = ((local.hour * 3600 + local.minute * 60 + local.second + travel_s) % DAY_S) // self.slot_s
        # A round's arrivals fall in a few slots: look each order's cell up once per slot.
        unique, which = np.unique(slots.astype(int), return_inverse=True)
        by_order = np.array([[self.cell_value(c, s) for s in unique.tolist()] for c in order_cells])
        by_order = by_order.reshape(-1, unique.size)
        there = by_order[order_idx, which] if order_idx.size else np.zeros(0)
        return self.discount_per_s ** travel_s * there - here[tech_idx]


@dataclass(frozen=True, slots=True)
class DemandHint:
    """Move to (lon, lat), the centre of `cell`, `distance_m` away: `gain_s` less time lost ahead."""

    technician_id: str
    cell: str
    lon: float
    lat: float
    distance_m: float
    gain_s: float


def demand_hints(table: ValueTable, techs: Sequence[TechnicianView], at: datetime, config: MatchingConfig,
                 min_gain_s: float = HINT_MIN_GAIN_S) -> list[DemandHint]:
    """Idle technicians towards a neighbouring cell worth more: his value there when he would
    arrive, discounted, less the drive, against his value where he stands (the paper's
    repositioning, a move that earns nothing). Only the free and idle (no job, no booked visit
    ahead, not held in an emergency reserve); each cell is hinted to one technician, the largest
    gain first, so a busy corner does not draw the whole district."""
    options = []
    for tech in techs:
        if tech.active_jobs or tech.planned or tech.reserved or technician_reason(tech, at, config) is not None:
            continue
        here = table.cell(tech.lon, tech.lat)
        stay = table.cell_value(here, table.slot(at))
        for cell in h3.grid_disk(here, 1):
            if cell == here:
                continue
            lat, lon = h3.cell_to_latlng(cell)
            distance = haversine_m(tech.lon, tech.lat, lon, lat)
            drive = eta_s(distance, config)
            there = table.cell_value(cell, table.slot(at + timedelta(seconds=drive)))
            gain = table.discount_per_s ** drive * there - drive - stay
            if gain >= min_gain_s:
                options.append((-gain, tech.id, cell, lon, lat, distance))
    hints, hinted, taken = [], set(), set()
    for negative_gain, tech_id, cell, lon, lat, distance in sorted(options):
        if tech_id in hinted or cell in taken:
            continue
        hinted.add(tech_id)
        taken.add(cell)
        hints.append(DemandHint(tech_id, cell, lon, lat, distance, -negative_gain))
    return hints


def next_jobs(jobs: Sequence[Job], config: MatchingConfig) -> list[Trip]:
    """From each job's place when it was done, the drive to the nearest other job that came
    within NEXT_JOB_WINDOW_S of that moment, and its visit: reward minus the drive's seconds.
    A job with none near it in time leaves its technician idle there for the window: reward
    minus the window."""
    by_time = sorted(jobs, key=lambda j: j.created_at)
    created = [j.created_at for j in by_time]
    window = timedelta(seconds=NEXT_JOB_WINDOW_S)
    out = []
    for job in by_time:
        lo = bisect_left(created, job.done_at - window)
        hi = bisect_right(created, job.done_at + window)
        options = [(haversine_m(job.lon, job.lat, n.lon, n.lat), i) for i, n in enumerate(by_time[lo:hi], lo)
                   if n is not job]
        if not options:
            out.append(Trip(job.lon, job.lat, job.done_at, job.done_at + window, job.lon, job.lat,
                            -float(NEXT_JOB_WINDOW_S)))
            continue
        distance, i = min(options)
        nxt, drive = by_time[i], eta_s(distance, config)
        out.append(Trip(job.lon, job.lat, job.done_at, job.done_at + timedelta(seconds=drive + nxt.service_s),
                        nxt.lon, nxt.lat, -drive))
    return out


def train(trips: Iterable[Trip], *, timezone: str = "UTC", resolution: int = RESOLUTION, slot_s: int = SLOT_S,
          discount_per_s: float = DISCOUNT_PER_S) -> ValueTable:
    """Solve V = R + P V over the states trips start from: R the mean reward of a state's trips,
    P[s, s'] the mean discount g^dt of its trips to s' (none to a state nothing starts from).
    Every trip takes time, so each row of P sums below 1 and the solution is unique. Raises
    ValuesInputError without trips."""
    table = ValueTable({}, timezone=timezone, resolution=resolution, slot_s=slot_s, discount_per_s=discount_per_s)
    moves = []
    for trip in trips:
        dt = max(1.0, (trip.end - trip.start).total_seconds())  # a trip takes time: no free loops
        moves.append(((table.cell(trip.lon, trip.lat), table.slot(trip.start)),
                      (table.cell(trip.end_lon, trip.end_lat), table.slot(trip.end)),
                      trip.reward_s, discount_per_s ** dt))
    if not moves:
        raise ValuesInputError("no completed orders to learn from")
    states = sorted({s for s, _, _, _ in moves})
    index = {s: i for i, s in enumerate(states)}
    count = np.bincount([index[s] for s, _, _, _ in moves], minlength=len(states)).astype(float)
    reward = np.bincount([index[s] for s, _, _, _ in moves], weights=[r for _, _, r, _ in moves],
                         minlength=len(states)) / count
    rows, cols, data = [], [], []
    for s, s2, _, d in moves:
        if s2 in index:
            rows.append(index[s])
            cols.append(index[s2])
            data.append(d / count[index[s]])
    n = len(states)
    p = csr_matrix((data, (rows, cols)), shape=(n, n))  # duplicates add up
    v = np.atleast_1d(spsolve((identity(n, format="csc") - p).tocsc(), reward))
    return ValueTable({s: float(x) for s, x in zip(states, v)}, timezone=timezone, resolution=resolution,
                      slot_s=slot_s, discount_per_s=discount_per_s)


# Stored per city, versioned --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Training:
    version: int
    orders: int
    states: int


async def train_and_store(session: AsyncSession, city: str, start: datetime, end: datetime) -> Training:
    """Learn from the city's orders completed in [start, end) and store a new version, which
    becomes the current one. Raises ValuesInputError (nothing stored) on bad input."""
    if end == start:
        raise ValuesInputError(f"empty period: --from and --to are both {start.isoformat()}")
    if end < start:
        raise ValuesInputError(f"inverted period: --from {start.isoformat()} is after --to {end.isoformat()}")
    found = await queries.find_city(session, city)
    if found is None:
        raise ValuesInputError(f"no city {city!r}")
    jobs = []
    for row in await queries.completed_in(session, city, start, end):
        lon, lat = lonlat(row.location) or (0.0, 0.0)
        service_s = (row.completed_at - row.started_at).total_seconds() if row.started_at else 0.0
        jobs.append(Job(lon, lat, row.created_at, row.completed_at, max(0.0, service_s)))
    if not jobs:
        raise ValuesInputError(f"no completed orders in {city} from {start.isoformat()} to {end.isoformat()}")
    settings = get_settings()
    trips = next_jobs(jobs, MatchingConfig(detour_factor=settings.detour_factor, speed_kmh=settings.speed_kmh))
    table = train(trips, timezone=found.timezone)
    version = ValueVersion(city_id=city, period_start=start, period_end=end, orders=len(jobs),
                           resolution=table.resolution, slot_s=table.slot_s, discount_per_s=table.discount_per_s)
    session.add(version)
    await session.flush()
    session.add_all([CellValue(version_id=version.id, cell=cell, slot=slot, value_s=v)
                     for (cell, slot), v in table.values.items()])
    await session.flush()
    return Training(version.id, len(jobs), len(table.values))  # type: ignore[arg-type]


_loaded: dict[str, tuple[int, ValueTable]] = {}  # city -> (version, its table), per process


async def current_values(session: AsyncSession, city: str) -> ValueTable | None:
    """The city's newest values (None before the first training), read from PostgreSQL only
    when a newer version than the one this process holds was stored."""
    newest = (await session.exec(select(func.max(ValueVersion.id)).where(ValueVersion.city_id == city))).one()
    if newest is None:
        return None
    held = _loaded.get(city)
    if held is None or held[0] != newest:
        version = await session.get(ValueVersion, newest)
        city_row = await queries.find_city(session, city)
        rows = (await session.exec(select(CellValue.cell, CellValue.slot, CellValue.value_s)
                                   .where(CellValue.version_id == newest))).all()
        table = ValueTable({(c, s): v for c, s, v in rows}, timezone=city_row.timezone if city_row else "UTC",
                           resolution=version.resolution, slot_s=version.slot_s,  # type: ignore[union-attr]
                           discount_per_s=version.discount_per_s)  # type: ignore[union-attr]
        held = _loaded[city] = (newest, table)
    return held[1]
