"""Discrete-event simulator running the live matching code on a scenario.

Orders arrive at their `t_s`; a technician drives to the order at the scenario speed (with
the detour factor), serves it for `service_min`, and then takes his next job or becomes free
where he finished. Policies:
  greedy  every arrival and every freed technician triggers `assign.greedy` at once;
  batch-v1 emergencies are offered at once, everything else waits for the next `window_s`
          tick and goes through `assign.batch`;
  batch   (v2, issue #17) adaptive batching with look-ahead: a round runs whenever demand or
          supply changes (an order arrives, a technician is freed, an offer lapses) and
          `adaptive.split`, the live engine's code, decides what it offers: with ample supply
          the orders nobody competes with at once and the contended ones once they are the
          window old; otherwise every order, in one optimal batch. The batch also sees the
          technicians finishing a job within `soon_free_s`, placed at that job and counting the time
          left: an order such a technician reaches first is kept for him instead of going to
          someone farther who is free now. Its batches add look-ahead values
          (matching/values.py; in rounds without a backlog, see `assign.batch`) learned from
          the scenario's `history`, or without one from the first half of the day's orders for
          the second half (whose figures `second_half` reports for every policy). An
          emergency nobody free reaches within its SLA waits for such a technician if he gets
          there first.
Every assignment is an offer: the technician accepts with his acceptance rate (at once), or
the offer lapses after the offer timeout, holding his slot meanwhile (as live offers do).
Escalation off is today's engine: one technician per offer, a technician who let an order's
offer lapse is never offered it again, and an order is given up after MAX_OFFER_ATTEMPTS.
Escalation on follows the ladders (matching/escalation.py): an emergency goes to the K
nearest at once in rounds that widen the radius (the first to accept wins), and a lapsed
technician may be offered the order again after the cooldown. Readiness on keeps each area's
floor of free emergency technicians out of routine work, pre-empts routine work not yet
started (the technician still driving to it) for an emergency, and sends idle emergency
technicians towards areas below their floor.
Wait is from creation to the technician's arrival. An order nobody has been assigned to
by GIVE_UP_SLA_FACTOR x its SLA leaves the queue unfulfilled (it is escalated to a human
dispatcher), so a policy cannot look good by serving only easy orders eventually.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from matching import adaptive
from matching.assign import batch, best_candidates, free_in_time, greedy, soon_free_first
from matching.escalation import FLAT, EMERGENCY_SKILL, Ladder, ladders, reserve_floor
from matching.model import PRIORITIES, Assignment, CertificationView, MatchingConfig, OrderView, TechnicianView
from matching.scenario import OrderSpec, Scenario, TechnicianSpec
from matching.scoring import eta_s, haversine_m
from matching.spatial import TechnicianIndex
from matching.values import Job, ValueTable, next_jobs, train

Policy = Literal["greedy", "batch", "batch-v1"]
POLICIES = ("greedy", "batch", "batch-v1")
GIVE_UP_SLA_FACTOR = 2.0
CANDIDATES_K = 32  # nearest free, certified technicians handed to the assigner per order
MAX_OFFER_ATTEMPTS = 5  # the live default (GASDISPATCH_MAX_OFFER_ATTEMPTS)
OFFER_TIMEOUT_S, EMERGENCY_OFFER_TIMEOUT_S = 30.0, 15.0  # the live defaults
RESERVE_COVER_PROBABILITY = 0.7  # the live default (GASDISPATCH_RESERVE_COVER_PROBABILITY)
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # scenario second 0; only differences matter

# same-time order: arrivals before dispatching
_ARRIVAL, _AT_SITE, _DONE, _LAPSE, _COOLED, _SOON, _TICK = range(7)


def _at(t: float) -> datetime:
    return EPOCH + timedelta(seconds=t)


def _order_view(o: OrderSpec) -> OrderView:
    return OrderView(o.id, o.lon, o.lat, o.skill, o.priority, _at(o.t_s),  # type: ignore[arg-type]
                     _at(o.t_s + o.sla_min * 60), service_s=o.service_min * 60)


def _values(orders: Iterable[OrderSpec], config: MatchingConfig) -> ValueTable | None:
    """Values learned from past orders, each done when its visit ended (a scenario's history
    has no waits); None without any."""
    jobs = [Job(o.lon, o.lat, _at(o.t_s), _at(o.t_s + o.service_min * 60), o.service_min * 60) for o in orders]
    return train(next_jobs(jobs, config)) if jobs else None


def second_half_from(scenario: Scenario) -> float | None:
    """Without a history, where the day is cut: the first half trains the second's values."""
    if scenario.history or not scenario.orders:
        return None
    return scenario.orders[-1].t_s / 2


def look_ahead(scenario: Scenario, config: MatchingConfig) -> tuple[ValueTable | None, float]:
    """The values and from when they apply: the history's for the whole day, else the first
    half's for the second half."""
    if scenario.history:
        return _values(scenario.history, config), 0.0
    half = second_half_from(scenario)
    if half is None:
        return None, math.inf
    return _values([o for o in scenario.orders if o.t_s < half], config), half


@dataclass
class _Tech:
    spec: TechnicianSpec
    lon: float
    lat: float
    certifications: tuple[CertificationView, ...]
    jobs: deque[OrderSpec] = field(default_factory=deque)  # assigned, not finished
    leg: tuple[float, float, float, float, float, float] | None = None  # lon0 lat0 t0 lon1 lat1 t1
    leg_id: int = 0  # an event for an older leg is stale (the leg was pre-empted)
    on_site: bool = False  # serving jobs[0], not driving to it
    offers: set[str] = field(default_factory=set)  # orders offered to him, unanswered
    idle_since: float | None = 0.0
    done_at: float = 0.0  # when the job he is serving ends (on site)

    def position(self, t: float) -> tuple[float, float]:
        if self.leg is None:
            return self.lon, self.lat
        lon0, lat0, t0, lon1, lat1, t1 = self.leg
        f = 1.0 if t1 <= t0 else min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        return lon0 + f * (lon1 - lon0), lat0 + f * (lat1 - lat0)

    def destination(self, t: float) -> tuple[float, float]:
        return (self.leg[3], self.leg[4]) if self.leg is not None else self.position(t)

    @property
    def held(self) -> int:
        """Jobs plus open offers: an offer reserves a slot until it is answered."""
        return len(self.jobs) + len(self.offers)

    def free_in_s(self, t: float) -> float | None:
        """Seconds until he is free where his only job is; None with more in hand."""
        if len(self.jobs) != 1 or self.offers:
            return None
        end = self.done_at if self.on_site else self.leg[5] + self.jobs[0].service_min * 60  # type: ignore[index]
        return max(0.0, end - t)

    def view(self, t: float) -> TechnicianView:
        lon, lat = self.position(t)
        return TechnicianView(
            id=self.spec.id, lon=lon, lat=lat,
            status="online" if self.held < self.spec.max_jobs else "busy",
            certifications=self.certifications, active_jobs=self.held,
            max_jobs=self.spec.max_jobs, rating=self.spec.rating, last_seen_at=_at(t),
            idle_since=None if self.idle_since is None else _at(self.idle_since),
        )


class _Areas:
    """Square cells small enough that anywhere in a cell is within the emergency SLA of
    anywhere else in it; each keeps a floor of free emergency technicians."""

    def __init__(self, scenario: Scenario, config: MatchingConfig):
        emergencies = [o for o in scenario.orders if o.priority == "emergency"]
        points = [(t.lon, t.lat) for t in scenario.technicians] + [(o.lon, o.lat) for o in scenario.orders]
        self.west, self.south = min(p[0] for p in points), min(p[1] for p in points)
        sla_min = min((o.sla_min for o in emergencies), default=30.0)
        reach_m = sla_min * 60 * config.speed_kmh / 3.6 / config.detour_factor
        side_m = reach_m / math.sqrt(2)
        self.dlat = side_m / 111_195
        self.dlon = self.dlat / max(0.1, math.cos(math.radians(self.south)))
        hours = max(1.0, max((o.t_s for o in scenario.orders), default=0.0) / 3600)
        count: dict[str, int] = {}
        for o in emergencies:
            count[self.of(o.lon, o.lat)] = count.get(self.of(o.lon, o.lat), 0) + 1
        self.floors = {a: reserve_floor(n / hours, sla_min, RESERVE_COVER_PROBABILITY) for a, n in count.items()}

    def of(self, lon: float, lat: float) -> str:
        return f"{int((lon - self.west) // self.dlon)},{int((lat - self.south) // self.dlat)}"

    def centre(self, area: str) -> tuple[float, float]:
        i, j = (int(v) for v in area.split(","))
        return self.west + (i + 0.5) * self.dlon, self.south + (j + 0.5) * self.dlat


class _Run:
    def __init__(self, scenario: Scenario, policy: Policy, window_s: float, config: MatchingConfig,
                 on_progress: Callable[[int, int], None] | None, ladder_by_priority: Mapping[str, Ladder] | None,
                 readiness: bool):
        self.scenario, self.policy, self.window_s, self.config = scenario, policy, window_s, config
        self.batching, self.adaptive = policy in ("batch", "batch-v1"), policy == "batch"
        self.values, self.values_from = look_ahead(scenario, config) if self.adaptive else (None, math.inf)
        self.held_until = math.inf  # when the next held (contended) order's window ends
        self.on_progress = on_progress
        self.ladders = dict(ladder_by_priority) if ladder_by_priority is not None else None
        self.techs = {
            s.id: _Tech(s, s.lon, s.lat, tuple(CertificationView(k, True) for k in s.skills))
            for s in scenario.technicians
        }
        self.orders = {o.id: o for o in scenario.orders}
        self.views = {o.id: _order_view(o) for o in scenario.orders}
        self.areas = _Areas(scenario, config) if readiness else None
        self.queue: dict[str, OrderSpec] = {}  # insertion order = arrival order
        self.events: list[tuple[float, int, int, str]] = []
        self.seq = itertools.count()
        self.waits_min: dict[str, float] = {}
        self.accepted_min: dict[str, float] = {}
        self.open_offers: dict[str, list[str]] = {}  # order -> technicians holding its offer
        self.lapsed: dict[tuple[str, str], float] = {}  # (order, technician) -> when his offer lapsed
        self.offers_made: dict[str, int] = {}
        self.rounds: dict[str, int] = {}
        self.pair_offers: dict[tuple[str, str], int] = {}
        self.counts = {"offers": 0, "lapsed_offers": 0, "preempted": 0, "repositioned": 0}
        self.unfulfilled = 0
        self.travel_m = 0.0
        self.busy_s = 0.0
        self.arrived = 0
        self.now = 0.0

    def push(self, t: float, kind: int, ref: str = "") -> None:
        heapq.heappush(self.events, (t, kind, next(self.seq), ref))

    def ladder(self, o: OrderSpec) -> Ladder:
        return FLAT if self.ladders is None else self.ladders.get(o.priority, FLAT)

    # --- offers ----------------------------------------------------------------------------

    def accepts(self, order_id: str, tech: _Tech) -> bool:
        """The technician's answer, drawn from a stream of its own per (order, technician, n-th
        offer): runs that differ in policy see the same answers to the same offers."""
        rate = self.scenario.acceptance_of(tech.spec)
        n = self.pair_offers[(order_id, tech.spec.id)] = self.pair_offers.get((order_id, tech.spec.id), 0) + 1
        if rate >= 1 or rate <= 0:
            return rate >= 1
        return random.Random(f"{self.scenario.seed}:{order_id}:{tech.spec.id}:{n}").random() < rate

    def offer(self, order_id: str, assignments: list[Assignment]) -> None:
        """Offer the order to these technicians at once: the best one who accepts takes it, the
        others are withdrawn; if nobody accepts, their slots are held until the offer lapses."""
        o = self.orders[order_id]
        self.offers_made[order_id] = self.offers_made.get(order_id, 0) + len(assignments)
        self.counts["offers"] += len(assignments)
        answers = [self.accepts(order_id, self.techs[a.technician_id]) for a in assignments]
        winner = next((a for a, yes in zip(assignments, answers) if yes), None)
        if winner is not None:
            self.accepted_min[order_id] = (self.now - o.t_s) / 60
            self.assign(winner.technician_id, order_id)
            return
        del self.queue[order_id]
        self.open_offers[order_id] = [a.technician_id for a in assignments]
        for a in assignments:
            self.techs[a.technician_id].offers.add(order_id)
        timeout = EMERGENCY_OFFER_TIMEOUT_S if o.priority == "emergency" else OFFER_TIMEOUT_S
        self.push(self.now + timeout, _LAPSE, order_id)

    def excluded(self, o: OrderSpec) -> frozenset[str]:
        ladder = self.ladder(o)
        return frozenset(t for (oid, t), at in self.lapsed.items()
                         if oid == o.id and self.now - at < ladder.cooldown_s)

    def view(self, o: OrderSpec) -> OrderView:
        excluded = self.excluded(o)
        return replace(self.views[o.id], excluded_technicians=excluded) if excluded else self.views[o.id]

    # --- dispatching -------------------------------------------------------------------

    def give_up_expired(self) -> None:
        for oid, o in list(self.queue.items()):
            if self.now - o.t_s > GIVE_UP_SLA_FACTOR * o.sla_min * 60:
                del self.queue[oid]
                self.unfulfilled += 1

    def protected(self) -> set[str]:
        """Free emergency technicians each area keeps for emergencies: its floor, less
        those it already has driving to routine work (an emergency can pre-empt them); the
        ones nearest the area's centre first."""
        if self.areas is None:
            return set()
        free: dict[str, list[tuple[float, str]]] = {}
        driving: dict[str, int] = {}
        for t in self.techs.values():
            if EMERGENCY_SKILL not in t.spec.skills:
                continue
            lon, lat = t.destination(self.now)
            area = self.areas.of(lon, lat)
            if area not in self.areas.floors:
                continue
            if t.held == 0:
                free.setdefault(area, []).append((haversine_m(lon, lat, *self.areas.centre(area)), t.spec.id))
            elif self.preemptable(t):
                driving[area] = driving.get(area, 0) + 1
        keep = set()
        for area, techs in free.items():
            keep.update(tid for _, tid in sorted(techs)[:max(0, self.areas.floors[area] - driving.get(area, 0))])
        return keep

    @staticmethod
    def preemptable(t: _Tech) -> bool:
        """Driving to his only job, a non-emergency one: routine work not yet started."""
        return (EMERGENCY_SKILL in t.spec.skills and not t.on_site and len(t.jobs) == 1 and not t.offers
                and t.jobs[0].priority != "emergency")

    def candidates(self, orders: list[OrderSpec], soon: bool = False) -> dict[str, list[TechnicianView]]:
        """The nearest free technicians of each order; with `soon`, also those finishing their only
        job within `soon_free_s`, where that job is (they can be kept for, never offered)."""
        held_back = self.protected() if any(o.priority != "emergency" for o in orders) else set()
        free = [t.view(self.now) for t in self.techs.values() if t.held < t.spec.max_jobs]
        if soon:
            for t in self.techs.values():
                left = t.free_in_s(self.now) if t.held == t.spec.max_jobs else None
                if left is not None and 0 < left <= self.config.soon_free_s:
                    job = t.jobs[0]
                    free.append(replace(t.view(self.now), lon=job.lon, lat=job.lat, status="online",
                                        active_jobs=t.spec.max_jobs - 1, idle_since=None, free_in_s=left))
        by_group: dict[tuple[str, bool], list[OrderSpec]] = {}
        for o in orders:
            by_group.setdefault((o.skill, o.priority == "emergency"), []).append(o)
        out: dict[str, list[TechnicianView]] = {}
        for (skill, emergency), group in by_group.items():
            index = TechnicianIndex([
                replace(v, reserved=True) if not emergency and v.id in held_back else v
                for v in free if skill in self.techs[v.id].spec.skills])
            out.update(index.candidates([self.view(o) for o in group], CANDIDATES_K,
                                        self.config.default_radius_m))
        return out

    def dispatch(self, orders: list[OrderSpec], how: str) -> None:
        if not orders:
            return
        now = _at(self.now)
        if how == "immediate":  # one at a time, each seeing the technicians the previous ones took
            for o in orders:
                if o.id in self.queue:
                    self.dispatch_one(o)
            return
        cands = self.candidates(orders)
        views = [self.view(o) for o in orders]
        chosen = greedy(views, cands, now, self.config) if how == "greedy" else batch(views, cands, now, self.config)
        for a in chosen:
            self.offer(a.order_id, [a])

    def dispatch_one(self, o: OrderSpec) -> None:
        """An order that cannot wait: round by round of its ladder, skipping rounds that find
        nobody; with readiness, an emergency nobody free can take pre-empts routine work."""
        ladder = self.ladder(o)
        ranked = best_candidates(self.view(o), self.candidates([o])[o.id], _at(self.now), self.config, CANDIDATES_K)
        if self.adaptive and self.kept_for_soon_free(o, ranked):
            return
        number = self.rounds.get(o.id, 1)
        while True:
            k, radius = ladder.round(number, self.config.default_radius_m)
            chosen = [a for a in ranked if a.distance_m <= radius][:k]
            last = number >= max(len(ladder.offers_per_round), len(ladder.round_radius_m))
            if chosen or last:
                break
            number += 1
        self.rounds[o.id] = number
        late = not chosen or _at(self.now) + timedelta(seconds=chosen[0].eta_s) > self.views[o.id].sla_deadline
        if late and self.areas is not None and o.priority == "emergency":
            chosen = self.preempt_for(o, chosen[0].eta_s if chosen else math.inf) or chosen
        if chosen:
            self.offer(o.id, chosen)

    def kept_for_soon_free(self, o: OrderSpec, ranked: list[Assignment]) -> bool:
        """v2: an order that cannot wait waits all the same when nobody free reaches it within its
        SLA and a technician finishing his job gets there first (`assign.soon_free_first`)."""
        view, now = self.view(o), _at(self.now)
        if free_in_time(view, ranked, now):  # the usual case, before searching the finishing ones
            return False
        soon = [t for t in self.candidates([o], soon=True)[o.id] if t.free_in_s > 0]
        return soon_free_first(view, ranked, soon, now, self.config)

    def preempt_for(self, o: OrderSpec, free_eta_s: float) -> list[Assignment]:
        """The nearest emergency technician still driving to routine work takes the emergency
        if he gets there sooner than anybody free; the routine order goes back to the queue."""
        view = self.view(o)
        best: tuple[float, _Tech] | None = None
        for t in self.techs.values():
            if not self.preemptable(t) or t.spec.id in view.excluded_technicians:
                continue
            distance = haversine_m(*t.position(self.now), o.lon, o.lat)
            if distance <= self.config.default_radius_m and (best is None or distance < best[0]):
                best = (distance, t)
        if best is None or eta_s(best[0], self.config) >= free_eta_s:
            return []
        distance, tech = best
        routine = tech.jobs.popleft()
        lon, lat = tech.position(self.now)
        lon0, lat0, t0, lon1, lat1, t1 = tech.leg  # type: ignore[misc]
        self.busy_s -= (t1 - self.now) + routine.service_min * 60
        self.travel_m -= haversine_m(lon, lat, lon1, lat1) * self.config.detour_factor
        tech.lon, tech.lat, tech.leg = lon, lat, None
        tech.leg_id += 1
        self.queue = {routine.id: routine, **self.queue}
        self.counts["preempted"] += 1
        return best_candidates(view, [tech.view(self.now)], _at(self.now), self.config, 1)

    def assign(self, tech_id: str, order_id: str) -> None:
        tech = self.techs[tech_id]
        tech.jobs.append(self.queue.pop(order_id))
        tech.idle_since = None
        if len(tech.jobs) == 1:
            self.start_leg(tech)

    def start_leg(self, tech: _Tech) -> None:
        o = tech.jobs[0]
        lon, lat = tech.position(self.now)
        tech.lon, tech.lat, tech.on_site = lon, lat, False
        distance = haversine_m(lon, lat, o.lon, o.lat)
        arrive = self.now + eta_s(distance, self.config)
        tech.leg = (lon, lat, self.now, o.lon, o.lat, arrive)
        tech.leg_id += 1
        self.travel_m += distance * self.config.detour_factor
        self.busy_s += arrive - self.now + o.service_min * 60
        self.push(arrive, _AT_SITE, f"{tech.spec.id}#{tech.leg_id}")

    def reposition(self) -> None:
        """Idle emergency technicians move towards areas below their floor."""
        if self.areas is None:
            return
        free: dict[str, int] = {}
        idle: list[tuple[_Tech, str]] = []
        for t in self.techs.values():
            if EMERGENCY_SKILL in t.spec.skills and t.held == 0:
                area = self.areas.of(*t.destination(self.now))
                free[area] = free.get(area, 0) + 1
                idle.append((t, area))
        short = {a: n - free.get(a, 0) for a, n in self.areas.floors.items() if free.get(a, 0) < n}
        for target, gap in sorted(short.items(), key=lambda x: (-x[1], x[0])):
            cx, cy = self.areas.centre(target)
            spare = sorted((haversine_m(*t.position(self.now), cx, cy), t.spec.id, t, a) for t, a in idle
                           if a != target and free[a] - 1 >= self.areas.floors.get(a, 0))
            for _, _, t, home in spare[:gap]:
                lon, lat = t.position(self.now)
                distance = haversine_m(lon, lat, cx, cy)
                t.lon, t.lat = lon, lat
                t.leg = (lon, lat, self.now, cx, cy, self.now + eta_s(distance, self.config))
                self.travel_m += distance * self.config.detour_factor
                free[home] -= 1
                free[target] = free.get(target, 0) + 1
                idle = [(x, a) for x, a in idle if x is not t]
                self.counts["repositioned"] += 1

    def dispatch_adaptive(self) -> None:
        """A v2 round, the live one (`adaptive.assign_round`); the held orders get a round when the
        first of them is the window old."""
        waiting = self.waiting(emergency=False)
        if not waiting:
            return
        values = self.values if self.now >= self.values_from else None
        chosen, part = adaptive.assign_round([self.view(o) for o in waiting], self.candidates(waiting, soon=True),
                                             _at(self.now), self.config, values)
        for a in chosen:
            self.offer(a.order_id, [a])
        if part.held:
            due = min(self.orders[v.id].t_s for v in part.held) + part.window_s
            if due < self.held_until:
                self.held_until = due
                self.push(max(due, self.now + 1e-3), _SOON)  # ages are whole microseconds in `split`

    def waiting(self, emergency: bool) -> list[OrderSpec]:
        return [o for o in self.queue.values() if (o.priority == "emergency") == emergency]

    # --- events --------------------------------------------------------------------------

    def run(self) -> None:
        for o in self.scenario.orders:
            self.push(o.t_s, _ARRIVAL, o.id)
        if self.batching and self.scenario.orders:
            self.push(self.scenario.orders[0].t_s, _TICK)
        while self.events:
            self.now, kind, _, ref = heapq.heappop(self.events)
            if kind == _ARRIVAL:
                self.on_arrival(self.orders[ref])
            elif kind == _AT_SITE:
                tid, leg_id = ref.split("#")
                if self.techs[tid].leg_id == int(leg_id):
                    self.on_at_site(self.techs[tid])
            elif kind == _DONE:
                self.on_done(self.techs[ref])
            elif kind == _LAPSE:
                self.on_lapse(self.orders[ref])
            elif kind == _COOLED:
                self.on_cooled(self.orders[ref])
            elif kind == _SOON:
                if self.now >= self.held_until:
                    self.held_until = math.inf
                    self.dispatch_adaptive()
            else:
                self.on_tick()

    def on_arrival(self, o: OrderSpec) -> None:
        self.queue[o.id] = o
        self.arrived += 1
        if self.on_progress is not None:
            self.on_progress(self.arrived, len(self.orders))
        if self.policy == "greedy":
            self.give_up_expired()
            self.dispatch(list(self.queue.values()), "greedy")
        elif o.priority == "emergency":
            self.dispatch([o], "immediate")
        elif self.adaptive:
            self.dispatch_adaptive()

    def on_at_site(self, tech: _Tech) -> None:
        o = tech.jobs[0]
        tech.lon, tech.lat, tech.leg, tech.on_site = o.lon, o.lat, None, True
        self.waits_min[o.id] = (self.now - o.t_s) / 60
        tech.done_at = self.now + o.service_min * 60
        self.push(tech.done_at, _DONE, tech.spec.id)

    def on_done(self, tech: _Tech) -> None:
        tech.jobs.popleft()
        tech.on_site = False
        if tech.jobs:
            self.start_leg(tech)
        else:
            tech.idle_since = self.now
        self.after_release()

    def on_lapse(self, o: OrderSpec) -> None:
        for tid in self.open_offers.pop(o.id):
            self.techs[tid].offers.discard(o.id)
            self.lapsed[(o.id, tid)] = self.now
        self.counts["lapsed_offers"] += 1
        if not self.ladder(o).until_deadline and self.offers_made[o.id] >= MAX_OFFER_ATTEMPTS:
            self.unfulfilled += 1
        else:
            self.queue[o.id] = o
            if self.ladders is not None:
                self.rounds[o.id] = self.rounds.get(o.id, 1) + 1
            if math.isfinite(self.ladder(o).cooldown_s):
                self.push(self.now + self.ladder(o).cooldown_s, _COOLED, o.id)
        self.after_release()

    def on_cooled(self, o: OrderSpec) -> None:
        """Who let the order's offer lapse may be asked again: an emergency at once (the live
        engine retries it every tick), other orders at the next batch."""
        if o.id in self.queue and (o.priority == "emergency" or self.policy == "greedy"):
            self.dispatch([o] if self.batching else list(self.queue.values()),
                          "immediate" if self.batching else "greedy")

    def after_release(self) -> None:
        self.give_up_expired()
        if self.policy == "greedy":
            self.dispatch(list(self.queue.values()), "greedy")
        else:
            self.dispatch(self.waiting(emergency=True), "immediate")
            if self.adaptive:
                self.dispatch_adaptive()

    def on_tick(self) -> None:
        self.give_up_expired()
        self.dispatch(self.waiting(emergency=True), "immediate")
        if self.adaptive:
            self.dispatch_adaptive()
        else:
            self.dispatch(self.waiting(emergency=False), "batch")
        self.reposition()
        if self.queue or self.open_offers or self.arrived < len(self.orders):
            self.push(self.now + self.window_s, _TICK)

    def result(self) -> dict:
        waits = np.fromiter(self.waits_min.values(), float, len(self.waits_min))
        within = sum(
            1 for oid, w in self.waits_min.items() if w <= self.orders[oid].sla_min + 1e-9
        )
        capacity_s = len(self.techs) * self.now
        by_priority = self.by_priority()
        emergency_accept = [m for oid, m in self.accepted_min.items() if self.orders[oid].priority == "emergency"]
        return {
            "policy": self.policy,
            "window_s": self.window_s if self.batching else None,
            "seed": self.scenario.seed,
            "escalation": self.ladders is not None,
            "readiness": self.areas is not None,
            "acceptance_rate": self.scenario.acceptance_rate,
            "orders": len(self.orders),
            "technicians": len(self.techs),
            "served": len(self.waits_min),
            "served_within_sla": within,
            "unfulfilled": self.unfulfilled,
            "mean_wait_min": round(float(waits.mean()), 2) if waits.size else None,
            "p90_wait_min": round(float(np.percentile(waits, 90)), 2) if waits.size else None,
            "travel_km": round(self.travel_m / 1000, 1),
            "utilization": round(self.busy_s / capacity_s, 3) if capacity_s else 0.0,
            "emergencies": by_priority["emergency"]["orders"],
            "emergency_within_sla": by_priority["emergency"]["served_within_sla"],
            "emergency_p90_accept_min": (round(float(np.percentile(emergency_accept, 90)), 2)
                                         if emergency_accept else None),
            "emergency_reachable": self.reachable_emergencies(),
            **self.counts,
            "by_priority": by_priority,
            "look_ahead": None if self.values is None else "history" if self.scenario.history else "first half",
            "second_half": self.second_half(),
        }

    def second_half(self) -> dict | None:
        """The figures of the orders from the middle of the day on, the part the look-ahead
        values trained on the first half apply to (None with a history: they apply all day)."""
        half = second_half_from(self.scenario)
        if half is None:
            return None
        ids = [o.id for o in self.orders.values() if o.t_s >= half]
        waits = np.array([self.waits_min[i] for i in ids if i in self.waits_min])
        within = [i for i in ids if self.waits_min.get(i, math.inf) <= self.orders[i].sla_min + 1e-9]
        return {
            "from_s": half,
            "orders": len(ids),
            "served": int(waits.size),
            "served_within_sla": len(within),
            "mean_wait_min": round(float(waits.mean()), 2) if waits.size else None,
            "p90_wait_min": round(float(np.percentile(waits, 90)), 2) if waits.size else None,
            "emergencies": sum(1 for i in ids if self.orders[i].priority == "emergency"),
            "emergency_within_sla": sum(1 for i in within if self.orders[i].priority == "emergency"),
        }

    def reachable_emergencies(self) -> int:
        """Emergencies with an emergency-certified technician's home within SLA travel time."""
        homes = [t for t in self.scenario.technicians if EMERGENCY_SKILL in t.skills]
        return sum(1 for o in self.orders.values() if o.priority == "emergency" and any(
            eta_s(haversine_m(t.lon, t.lat, o.lon, o.lat), self.config) <= o.sla_min * 60 for t in homes))

    def by_priority(self) -> dict[str, dict]:
        out = {}
        for p in PRIORITIES:
            ids = [o.id for o in self.orders.values() if o.priority == p]
            waits = [self.waits_min[i] for i in ids if i in self.waits_min]
            # An order never served counts as waiting until the give-up point (twice its SLA): without
            # it, serving a late order that another policy abandons counts against the one serving it.
            waits_all = [self.waits_min.get(i, GIVE_UP_SLA_FACTOR * self.orders[i].sla_min) for i in ids]
            out[p] = {
                "orders": len(ids),
                "served_within_sla": sum(
                    1 for i in ids if self.waits_min.get(i, float("inf")) <= self.orders[i].sla_min + 1e-9
                ),
                "mean_wait_min": round(sum(waits) / len(waits), 2) if waits else None,
                "mean_wait_with_unserved_min": round(sum(waits_all) / len(waits_all), 2) if waits_all else None,
            }
        return out


def simulate(
    scenario: Scenario,
    policy: Policy = "batch",
    window_s: float = 60.0,
    config: MatchingConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    escalation: bool = True,
    readiness: bool = True,
    ladder_by_priority: Mapping[str, Ladder] | None = None,
) -> dict:
    """Run the scenario to the end (every order served or given up) and return the figures.

    `config` defaults to MatchingConfig with the scenario's speed and detour factor;
    `on_progress(arrived, total)` is called as orders arrive; the ladders default to the
    settings' defaults.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    if config is None:
        config = MatchingConfig(speed_kmh=scenario.speed_kmh, detour_factor=scenario.detour_factor)
    chosen = (ladder_by_priority or ladders()) if escalation else None
    run = _Run(scenario, policy, window_s, config, on_progress, chosen, readiness)
    run.run()
    return run.result()
