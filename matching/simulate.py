"""Discrete-event simulator running the live matching code on a scenario.

Orders arrive at their `t_s`; a technician drives to the order at the scenario speed (with
the detour factor), serves it for `service_min`, and then takes his next job or becomes free
where he finished. Policies:
  greedy  every arrival and every freed technician triggers `assign.greedy` at once;
  batch   emergencies get `assign.best_candidate` at once, everything else waits for the
          next `window_s` tick and goes through `assign.batch`.
Wait is from creation to the technician's arrival. An order nobody has been assigned to
by GIVE_UP_SLA_FACTOR x its SLA leaves the queue unfulfilled (it is escalated to a human
dispatcher), so a policy cannot look good by serving only easy orders eventually.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from matching.assign import batch, best_candidate, greedy
from matching.model import PRIORITIES, CertificationView, MatchingConfig, OrderView, TechnicianView
from matching.scenario import OrderSpec, Scenario, TechnicianSpec
from matching.scoring import eta_s, haversine_m
from matching.spatial import TechnicianIndex

Policy = Literal["greedy", "batch"]
GIVE_UP_SLA_FACTOR = 2.0
CANDIDATES_K = 32  # nearest free, certified technicians handed to the assigner per order
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # scenario second 0; only differences matter

_ARRIVAL, _AT_SITE, _DONE, _TICK = range(4)  # same-time order: arrivals before dispatching


def _at(t: float) -> datetime:
    return EPOCH + timedelta(seconds=t)


def _order_view(o: OrderSpec) -> OrderView:
    return OrderView(o.id, o.lon, o.lat, o.skill, o.priority, _at(o.t_s),  # type: ignore[arg-type]
                     _at(o.t_s + o.sla_min * 60))


@dataclass
class _Tech:
    spec: TechnicianSpec
    lon: float
    lat: float
    certifications: tuple[CertificationView, ...]
    jobs: deque[OrderSpec] = field(default_factory=deque)  # assigned, not finished
    leg: tuple[float, float, float, float, float, float] | None = None  # lon0 lat0 t0 lon1 lat1 t1
    idle_since: float | None = 0.0

    def position(self, t: float) -> tuple[float, float]:
        if self.leg is None:
            return self.lon, self.lat
        lon0, lat0, t0, lon1, lat1, t1 = self.leg
        f = 1.0 if t1 <= t0 else min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        return lon0 + f * (lon1 - lon0), lat0 + f * (lat1 - lat0)

    def view(self, t: float) -> TechnicianView:
        lon, lat = self.position(t)
        return TechnicianView(
            id=self.spec.id, lon=lon, lat=lat,
            status="online" if len(self.jobs) < self.spec.max_jobs else "busy",
            certifications=self.certifications, active_jobs=len(self.jobs),
            max_jobs=self.spec.max_jobs, rating=self.spec.rating, last_seen_at=_at(t),
            idle_since=None if self.idle_since is None else _at(self.idle_since),
        )


class _Run:
    def __init__(self, scenario: Scenario, policy: Policy, window_s: float,
                 config: MatchingConfig, on_progress: Callable[[int, int], None] | None):
        self.scenario, self.policy, self.window_s, self.config = scenario, policy, window_s, config
        self.on_progress = on_progress
        self.techs = {
            s.id: _Tech(s, s.lon, s.lat, tuple(CertificationView(k, True) for k in s.skills))
            for s in scenario.technicians
        }
        self.orders = {o.id: o for o in scenario.orders}
        self.views = {o.id: _order_view(o) for o in scenario.orders}
        self.queue: dict[str, OrderSpec] = {}  # insertion order = arrival order
        self.events: list[tuple[float, int, int, str]] = []
        self.seq = itertools.count()
        self.waits_min: dict[str, float] = {}
        self.unfulfilled = 0
        self.travel_m = 0.0
        self.busy_s = 0.0
        self.arrived = 0
        self.now = 0.0

    def push(self, t: float, kind: int, ref: str = "") -> None:
        heapq.heappush(self.events, (t, kind, next(self.seq), ref))

    # --- dispatching -------------------------------------------------------------------

    def give_up_expired(self) -> None:
        for oid, o in list(self.queue.items()):
            if self.now - o.t_s > GIVE_UP_SLA_FACTOR * o.sla_min * 60:
                del self.queue[oid]
                self.unfulfilled += 1

    def candidates(self, orders: list[OrderSpec]) -> dict[str, list[TechnicianView]]:
        free = [t.view(self.now) for t in self.techs.values() if len(t.jobs) < t.spec.max_jobs]
        by_skill: dict[str, list[OrderSpec]] = {}
        for o in orders:
            by_skill.setdefault(o.skill, []).append(o)
        out: dict[str, list[TechnicianView]] = {}
        for skill, group in by_skill.items():
            index = TechnicianIndex([v for v in free if skill in self.techs[v.id].spec.skills])
            out.update(index.candidates([self.views[o.id] for o in group], CANDIDATES_K,
                                        self.config.default_radius_m))
        return out

    def dispatch(self, orders: list[OrderSpec], how: str) -> None:
        if not orders:
            return
        cands = self.candidates(orders)
        now = _at(self.now)
        views = [self.views[o.id] for o in orders]
        if how == "greedy":
            assignments = greedy(views, cands, now, self.config)
        elif how == "batch":
            assignments = batch(views, cands, now, self.config)
        else:  # one at a time, each seeing the technicians the previous ones took
            assignments = []
            for v in views:
                a = best_candidate(v, self.candidates([self.orders[v.id]])[v.id], now, self.config)
                if a is not None:
                    assignments.append(a)
                    self.assign(a.technician_id, a.order_id)
            return
        for a in assignments:
            self.assign(a.technician_id, a.order_id)

    def assign(self, tech_id: str, order_id: str) -> None:
        tech = self.techs[tech_id]
        tech.jobs.append(self.queue.pop(order_id))
        tech.idle_since = None
        if tech.leg is None and len(tech.jobs) == 1:
            self.start_leg(tech)

    def start_leg(self, tech: _Tech) -> None:
        o = tech.jobs[0]
        lon, lat = tech.position(self.now)
        distance = haversine_m(lon, lat, o.lon, o.lat)
        arrive = self.now + eta_s(distance, self.config)
        tech.leg = (lon, lat, self.now, o.lon, o.lat, arrive)
        self.travel_m += distance * self.config.detour_factor
        self.busy_s += arrive - self.now + o.service_min * 60
        self.push(arrive, _AT_SITE, tech.spec.id)

    def emergencies(self) -> list[OrderSpec]:
        return [o for o in self.queue.values() if o.priority == "emergency"]

    # --- events --------------------------------------------------------------------------

    def run(self) -> None:
        for o in self.scenario.orders:
            self.push(o.t_s, _ARRIVAL, o.id)
        if self.policy == "batch" and self.scenario.orders:
            self.push(self.scenario.orders[0].t_s, _TICK)
        while self.events:
            self.now, kind, _, ref = heapq.heappop(self.events)
            if kind == _ARRIVAL:
                self.on_arrival(self.orders[ref])
            elif kind == _AT_SITE:
                self.on_at_site(self.techs[ref])
            elif kind == _DONE:
                self.on_done(self.techs[ref])
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
            self.dispatch([o], "one_by_one")

    def on_at_site(self, tech: _Tech) -> None:
        o = tech.jobs[0]
        tech.lon, tech.lat, tech.leg = o.lon, o.lat, None
        self.waits_min[o.id] = (self.now - o.t_s) / 60
        self.push(self.now + o.service_min * 60, _DONE, tech.spec.id)

    def on_done(self, tech: _Tech) -> None:
        tech.jobs.popleft()
        if tech.jobs:
            self.start_leg(tech)
        else:
            tech.idle_since = self.now
        self.give_up_expired()
        if self.policy == "greedy":
            self.dispatch(list(self.queue.values()), "greedy")
        else:
            self.dispatch(self.emergencies(), "one_by_one")

    def on_tick(self) -> None:
        self.give_up_expired()
        self.dispatch(list(self.queue.values()), "batch")
        if self.queue or self.arrived < len(self.orders):
            self.push(self.now + self.window_s, _TICK)

    def result(self) -> dict:
        waits = np.fromiter(self.waits_min.values(), float, len(self.waits_min))
        within = sum(
            1 for oid, w in self.waits_min.items() if w <= self.orders[oid].sla_min + 1e-9
        )
        capacity_s = len(self.techs) * self.now
        return {
            "policy": self.policy,
            "window_s": self.window_s if self.policy == "batch" else None,
            "seed": self.scenario.seed,
            "orders": len(self.orders),
            "technicians": len(self.techs),
            "served": len(self.waits_min),
            "served_within_sla": within,
            "unfulfilled": self.unfulfilled,
            "mean_wait_min": round(float(waits.mean()), 2) if waits.size else None,
            "p90_wait_min": round(float(np.percentile(waits, 90)), 2) if waits.size else None,
            "travel_km": round(self.travel_m / 1000, 1),
            "utilization": round(self.busy_s / capacity_s, 3) if capacity_s else 0.0,
            "by_priority": self.by_priority(),
        }

    def by_priority(self) -> dict[str, dict]:
        out = {}
        for p in PRIORITIES:
            ids = [o.id for o in self.orders.values() if o.priority == p]
            waits = [self.waits_min[i] for i in ids if i in self.waits_min]
            out[p] = {
                "orders": len(ids),
                "served_within_sla": sum(
                    1 for i in ids if self.waits_min.get(i, float("inf")) <= self.orders[i].sla_min + 1e-9
                ),
                "mean_wait_min": round(sum(waits) / len(waits), 2) if waits else None,
            }
        return out


def simulate(
    scenario: Scenario,
    policy: Policy = "batch",
    window_s: float = 60.0,
    config: MatchingConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the scenario to the end (every order served or given up) and return the figures.

    `config` defaults to MatchingConfig with the scenario's speed and detour factor;
    `on_progress(arrived, total)` is called as orders arrive.
    """
    if policy not in ("greedy", "batch"):
        raise ValueError(f"unknown policy {policy!r}")
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    if config is None:
        config = MatchingConfig(speed_kmh=scenario.speed_kmh, detour_factor=scenario.detour_factor)
    run = _Run(scenario, policy, window_s, config, on_progress)
    run.run()
    return run.result()
