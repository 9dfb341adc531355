"""Who goes where: the immediate offer, the greedy baseline and the optimal batch.

All three take `candidates_by_order: {order_id: [TechnicianView, ...]}` from a spatial
search (Redis GEO live, matching.spatial in the simulator) and check eligibility themselves,
so a stale or over-wide candidate list is harmless. They return one Assignment per assigned
order; an order without one stays open. None of them mutates its inputs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from matching.eligibility import certification_reason, certified_kinds, is_eligible, technician_reason
from matching.model import Assignment, MatchingConfig, OrderView, TechnicianView
from matching.scoring import cost, costs_np, eta_s, haversine_m, haversine_m_np, plan_cost

if TYPE_CHECKING:
    from matching.values import ValueTable

Candidates = Mapping[str, Sequence[TechnicianView]]


def _eligible(
    order: OrderView, techs: Iterable[TechnicianView], now: datetime, config: MatchingConfig
) -> list[TechnicianView]:
    seen: set[str] = set()
    out = []
    for tech in techs:
        if tech.id not in seen and tech.free_in_s <= 0 and is_eligible(order, tech, now, config):
            seen.add(tech.id)
            out.append(tech)
    return out


def assignment(
    order: OrderView, tech: TechnicianView, now: datetime, config: MatchingConfig
) -> Assignment:
    distance = haversine_m(tech.lon, tech.lat, order.lon, order.lat)
    return Assignment(
        order.id, tech.id, cost(order, tech, now, config), eta_s(distance, config), distance
    )


def best_candidate(
    order: OrderView,
    candidates: Sequence[TechnicianView],
    now: datetime,
    config: MatchingConfig,
) -> Assignment | None:
    """The lowest-cost eligible technician, for an offer that cannot wait for a batch."""
    options = [assignment(order, t, now, config) for t in _eligible(order, candidates, now, config)]
    return min(options, key=lambda a: (a.cost, a.technician_id), default=None)


def best_candidates(
    order: OrderView,
    candidates: Sequence[TechnicianView],
    now: datetime,
    config: MatchingConfig,
    k: int,
    radius_m: float | None = None,
) -> list[Assignment]:
    """Up to k eligible technicians, lowest cost first, within `radius_m` if given: the
    technicians one round of an escalating offer goes to at once."""
    options = [assignment(order, t, now, config) for t in _eligible(order, candidates, now, config)]
    if radius_m is not None:
        options = [a for a in options if a.distance_m <= radius_m]
    return sorted(options, key=lambda a: (a.cost, a.technician_id))[:k]


def free_in_time(order: OrderView, ranked: Sequence[Assignment], now: datetime) -> bool:
    """Whether the best free technician (`ranked`, best first) reaches the order within its SLA."""
    return bool(ranked) and now + timedelta(seconds=ranked[0].eta_s) <= order.sla_deadline


def soon_free_first(order: OrderView, ranked: Sequence[Assignment], finishing: Sequence[TechnicianView],
                    now: datetime, config: MatchingConfig) -> bool:
    """Whether an order that cannot wait is better left for a technician finishing a job
    (`free_in_s` > 0): only when nobody free (`ranked`, best first) reaches it within its SLA
    and one of them, certified for it, gets there first (time left plus the drive)."""
    if free_in_time(order, ranked, now):
        return False
    best_free = ranked[0].eta_s if ranked else math.inf
    arrivals = [t.free_in_s + eta_s(haversine_m(t.lon, t.lat, order.lon, order.lat), config) for t in finishing
                if t.free_in_s > 0 and t.id not in order.excluded_technicians
                and certification_reason(order.skill, t, now) is None]
    return bool(arrivals) and min(arrivals) < best_free


def _free_pairs(
    orders: Sequence[OrderView], candidates_by_order: Candidates, now: datetime, config: MatchingConfig,
    pairs: Pairs | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[TechnicianView], np.ndarray, np.ndarray]:
    """The eligible pairs with a free technician (none finishing a job), their costs, and each
    technician's rank by id (the last tie-break, as `best_candidates` has it)."""
    pairs = pairs or eligible_pairs(orders, candidates_by_order, now, config)
    techs = pairs.techs
    free = np.array([t.free_in_s <= 0 for t in techs], dtype=bool)
    keep = free[pairs.ti] if techs else np.zeros(0, dtype=bool)
    oi, ti, distance = pairs.oi[keep], pairs.ti[keep], pairs.distance[keep]
    pair_cost = costs_np(list(orders), techs, oi, ti, distance, now, config)
    id_rank = np.argsort(np.argsort(np.array([t.id for t in techs])))
    return oi, ti, distance, techs, pair_cost, id_rank


def by_arrival(
    orders: Sequence[OrderView], candidates_by_order: Candidates, now: datetime, config: MatchingConfig,
    pairs: Pairs | None = None,
) -> dict[str, list[TechnicianView]]:
    """Each order's eligible free technicians, who gets there first first: the drive plus what the
    order would cost his booked visits (`plan_cost`: other customers' windows), the cost breaking
    ties. Reputation and fairness do not count: where supply is ample they would send someone who
    arrives later for an order nobody competes for. Nor do technicians finishing a job: a free one
    is sure, the end of a job is a guess (keeping orders for them there made waits longer than
    greedy's in bench/matching_assign.py). Vectorised like `uncontended`."""
    out: dict[str, list[TechnicianView]] = {o.id: [] for o in orders}
    if not orders:
        return out
    oi, ti, distance, techs, pair_cost, id_rank = _free_pairs(orders, candidates_by_order, now, config, pairs)
    arrival = distance * config.detour_factor / (config.speed_kmh / 3.6)
    for k in np.flatnonzero([bool(techs[j].planned) for j in ti]) if any(t.planned for t in techs) else ():
        arrival[k] += plan_cost(orders[oi[k]], techs[ti[k]], now, config, float(arrival[k]))
    for k in np.lexsort((id_rank[ti], pair_cost, arrival, oi)):
        out[orders[oi[k]].id].append(techs[ti[k]])
    return out


def uncontended(
    orders: Sequence[OrderView],
    candidates_by_order: Candidates,
    now: datetime,
    config: MatchingConfig,
    depth: int = 2,
    pairs: Pairs | None = None,
) -> list[str]:
    """The orders no other order competes with: none of their `depth` best eligible free
    technicians (by cost, then id, as `best_candidates` ranks them) is among another order's
    `depth` best. Offered at once, they lose nothing a batch could win for them (adaptive
    batching: only contended orders wait for the window). Vectorised: a city's round has
    thousands of orders."""
    if not orders:
        return []
    oi, ti, _, techs, pair_cost, id_rank = _free_pairs(orders, candidates_by_order, now, config, pairs)
    by_rank = np.lexsort((id_rank[ti], pair_cost, oi))
    oi, ti = oi[by_rank], ti[by_rank]
    top = np.arange(oi.size) - np.searchsorted(oi, oi) < depth
    wanted = np.bincount(ti[top], minlength=len(techs))
    contended = np.zeros(len(orders), dtype=bool)
    np.logical_or.at(contended, oi[top], wanted[ti[top]] > 1)
    listed = np.zeros(len(orders), dtype=bool)
    listed[oi] = True
    return [o.id for i, o in enumerate(orders) if listed[i] and not contended[i]]


def greedy(
    orders: Sequence[OrderView],
    candidates_by_order: Candidates,
    now: datetime,
    config: MatchingConfig,
) -> list[Assignment]:
    """Baseline: emergencies first, then first come first served; each order takes the
    nearest eligible technician that still has a free slot."""
    used: dict[str, int] = defaultdict(int)
    out = []
    for order in sorted(orders, key=lambda o: (o.priority != "emergency", o.created_at, o.id)):
        free = [
            t
            for t in _eligible(order, candidates_by_order.get(order.id, ()), now, config)
            if used[t.id] < t.free_slots
        ]
        if not free:
            continue
        tech = min(free, key=lambda t: (haversine_m(t.lon, t.lat, order.lon, order.lat), t.id))
        used[tech.id] += 1
        out.append(assignment(order, tech, now, config))
    return out


def order_boost_s(order: OrderView, now: datetime, config: MatchingConfig) -> float:
    """What serving this order now is worth in seconds of ETA: grows with waiting, so no
    order starves behind a stream of closer ones."""
    waited = max(0.0, (now - order.created_at).total_seconds())
    sla = max(1.0, (order.sla_deadline - order.created_at).total_seconds())
    boost = config.wait_boost * waited + config.sla_boost_s * min(waited / sla, 2.0)
    if order.priority == "emergency":
        boost += config.emergency_boost_s
    elif order.priority == "urgent":
        boost += config.urgent_boost_s
    return boost


@dataclass(frozen=True)
class Pairs:
    """Every eligible (order, technician) pair of a round: `oi` indexes its orders, `ti` `techs`.
    Built once per round (`eligible_pairs`: a city's round has tens of thousands) and shared by
    the adaptive split, the first-arrival offers and the batch."""

    oi: np.ndarray
    ti: np.ndarray
    distance: np.ndarray
    techs: list[TechnicianView]
    orders: int

    def of(self, picked: Sequence[int]) -> Pairs:
        """The pairs of the orders at these indices, renumbered in the order given."""
        renumber = np.full(self.orders, -1, dtype=np.intp)
        renumber[np.asarray(picked, dtype=np.intp)] = np.arange(len(picked))
        keep = renumber[self.oi] >= 0
        return Pairs(renumber[self.oi[keep]], self.ti[keep], self.distance[keep], self.techs, len(picked))

    def less(self, taken: Mapping[str, int]) -> Pairs:
        """Without the slots `taken` by earlier offers of the round: a full technician drops out."""
        techs = [replace(t, active_jobs=t.active_jobs + taken[t.id]) if taken.get(t.id) else t for t in self.techs]
        open_ = np.array([t.free_slots > 0 for t in techs], dtype=bool)
        keep = open_[self.ti] if techs else np.zeros(0, dtype=bool)
        return Pairs(self.oi[keep], self.ti[keep], self.distance[keep], techs, self.orders)


def eligible_pairs(
    orders: Sequence[OrderView], candidates_by_order: Candidates, now: datetime,
    config: MatchingConfig,
) -> Pairs:
    """Every eligible (order index, technician index) pair with its distance, and the
    technicians indexed. Same rules as `is_eligible`, with the order-independent checks done
    once per technician and the range check vectorised.
    """
    techs: list[TechnicianView] = []
    index: dict[str, int] = {}
    kinds: list[frozenset[str]] = []  # empty when busy, offline, stale or full
    order_idx, tech_idx = [], []
    for i, order in enumerate(orders):
        seen: set[int] = set()
        for tech in candidates_by_order.get(order.id, ()):
            j = index.get(tech.id)
            if j is None:
                j = index[tech.id] = len(techs)
                techs.append(tech)
                available = technician_reason(tech, now, config) is None and tech.free_slots > 0
                kinds.append(certified_kinds(tech, now) if available else frozenset())
            if (order.skill in kinds[j] and j not in seen and tech.id not in order.excluded_technicians
                    and not (tech.reserved and order.priority != "emergency")):
                seen.add(j)
                order_idx.append(i)
                tech_idx.append(j)
    oi, ti = np.asarray(order_idx, dtype=np.intp), np.asarray(tech_idx, dtype=np.intp)
    tlon, tlat, tradius = (np.array([getattr(t, f) for t in techs], dtype=float).reshape(-1)
                           for f in ("lon", "lat", "service_radius_m"))
    olon, olat, oradius = (np.array([getattr(o, f) for o in orders], dtype=float)
                           for f in ("lon", "lat", "service_radius_m"))
    distance = haversine_m_np(tlon[ti], tlat[ti], olon[oi], olat[oi])
    # None became NaN: the order's radius, else the station's, else the default.
    radius = np.where(np.isnan(oradius[oi]),
                      np.where(np.isnan(tradius[ti]), config.default_radius_m, tradius[ti]),
                      oradius[oi])
    keep = distance <= radius
    return Pairs(oi[keep], ti[keep], distance[keep], techs, len(orders))


def batch(
    orders: Sequence[OrderView],
    candidates_by_order: Candidates,
    now: datetime,
    config: MatchingConfig,
    values: ValueTable | None = None,
    pairs: Pairs | None = None,
) -> list[Assignment]:
    """Minimum-cost assignment over the sparse order x technician-slot graph.

    A technician with c free slots becomes c columns (the k-th costs k more jobs of load),
    so he never gets more than c orders. Every order also has a private "unassigned" column
    so a full matching always exists; its cost exceeds any gain from a real edge, so the
    matching assigns as many orders as possible and, among those, minimises
    sum(cost - order_boost_s - look-ahead bonus), the bonus (with `values`) being where the job
    leaves the technician against where he stands (matching/values.py, seconds like the cost).
    Technicians finishing a job (`free_in_s` > 0) take part so that an order he will reach
    first is kept for him, but no assignment to them is returned.
    """
    if not orders:
        return []
    pairs = pairs or eligible_pairs(orders, candidates_by_order, now, config)
    oi, ti, distance, techs = pairs.oi, pairs.ti, pairs.distance, pairs.techs
    pair_cost = costs_np(list(orders), techs, oi, ti, distance, now, config)
    # A technician cannot use more slots than orders list him.
    degree = np.bincount(ti, minlength=len(techs))
    slots = np.minimum(np.array([t.free_slots for t in techs], dtype=np.intp), degree)
    # Look-ahead only without a backlog: the values are learned as if each job were served as it
    # came; with more orders waiting than free slots every technician has work wherever he ends,
    # and his place is worth only his next drive, which the next round weighs itself.
    if values is not None and slots.sum() >= len(orders):
        service_s = np.array([o.service_s for o in orders])
        busy_s = distance * config.detour_factor / (config.speed_kmh / 3.6) + service_s[oi]
        pair_cost = pair_cost - config.value_weight * values.bonuses([(t.lon, t.lat) for t in techs], [(o.lon, o.lat) for o in orders],
                                               ti, oi, now, busy_s)

    first_col = np.cumsum(slots) - slots
    n_slots = int(slots.sum())
    reps = slots[ti]
    edge = np.repeat(np.arange(ti.size), reps)
    k = np.arange(edge.size) - np.repeat(np.cumsum(reps) - reps, reps)  # slot number
    rows, cols = oi[edge], first_col[ti[edge]] + k
    boost = np.array([order_boost_s(o, now, config) for o in orders])
    w = pair_cost[edge] + k * config.load_penalty_s - boost[rows]

    n = len(orders)
    if w.size:
        w -= w.min()
    spread = float(w.max()) if w.size else 0.0
    # One more assigned order saves at least `unassigned - (n + 1) * spread` > 0.
    unassigned = (n + 1) * spread + 1.0
    data = np.concatenate([w + 1.0, np.full(n, unassigned + 1.0)])  # > 0: zeros are not edges
    row_ind = np.concatenate([rows, np.arange(n)])
    col_ind = np.concatenate([cols, n_slots + np.arange(n)])
    graph = csr_matrix((data, (row_ind, col_ind)), shape=(n, n_slots + n))
    matched_rows, matched_cols = min_weight_full_bipartite_matching(graph)

    tech_of_col = np.repeat(np.arange(len(techs)), slots)
    # An order matched to a technician not yet free waits for him: nobody else takes it this round.
    return [
        assignment(orders[i], techs[tech_of_col[j]], now, config)
        for i, j in sorted(zip(matched_rows.tolist(), matched_cols.tolist()))
        if j < n_slots and techs[tech_of_col[j]].free_in_s <= 0
    ]
