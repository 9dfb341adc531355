"""A hybrid genetic search (HGS, Vidal et al. 2012) on PyVRP's local search.

PyVRP up to 0.12 shipped HGS; 0.13 replaced it with an iterated local search, which PyVRP
reports better on large instances and long runs; here it lost on 100 jobs in 10 s and, where
routes are short, on 200 jobs in 30 s (see `solver._searches`). On Solomon's hardest long-route
instances (R203, R208, R210, R211, RC203, RC206, RC207; seeds 1-4, 10 s, single searches) this
search gave 0.35 % mean gap against 0.94 % for the tuned iterated local search (PyVRP 0.11's own
HGS: 0.60 %). This module is PyVRP 0.12's genetic loop, survivor selection and selective route
exchange (SREX) crossover, written over 0.14's local search; its parameters are PyVRP's but for
the population's size.

Two subpopulations (feasible, infeasible) rank their members by a biased fitness: cost rank
plus diversity rank (broken-pairs distance to the closest members), so a good plan that adds
nothing new is the first to go. Each generation crosses two parents picked by binary tournament
(kept apart enough in diversity), educates the child by local search, and repairs an infeasible
child with boosted penalties most of the time. Children are educated on as many threads as
the caller has cores (PyVRP's local search releases the GIL): one population breeding twice as
fast beat two populations side by side (see `solver._searches`).
"""

from __future__ import annotations

import bisect
import math
import operator
import queue
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np
from pyvrp import (
    CostEvaluator,
    PenaltyManager,
    PenaltyParams,
    ProblemData,
    RandomNumberGenerator,
    Route,
    Solution,
)
from pyvrp.constants import MAX_VALUE
from pyvrp.search import (
    OPERATORS,
    LocalSearch,
    NeighbourhoodParams,
    PerturbationManager,
    PerturbationParams,
    compute_neighbours,
)

from matching.planning.exchange import Exchange

# Per subpopulation, after survivor selection. PyVRP's 25 gave, on the seven instances above,
# 0.47 % (10: 1.49 %, 60: 0.37 %), and on ten tight-fleet ones (R101, R104, R107, R109-R112,
# RC103, RC107, C104) 0.56 % with 3 of 40 searches short of the fleet, against 0.28 % and none.
MIN_POPULATION = 40
GENERATION = 40  # children a subpopulation takes before survivor selection
ELITE = 4  # best plans whose fitness is their cost rank alone
CLOSEST = 5  # members whose mean distance is a plan's diversity
PARENT_DIVERSITY = (0.1, 0.5)  # wanted broken-pairs distance between two parents
REPAIR_PROBABILITY = 0.8
REPAIR_BOOSTER = 12  # penalties times this when repairing an infeasible child
RESTART_AFTER = 20_000  # generations without a better plan before a fresh population
NEIGHBOURS = 40
# Penalties start at the price of travel and are revised every 50 children toward 43 % feasible.
# Starting at 100 found tight fleets (R103, RC105) about half the time, and lost elsewhere.
START_PENALTY = 1.0
PENALTIES = PenaltyParams(
    solutions_between_updates=50, penalty_increase=1.34, penalty_decrease=0.32, target_feasible=0.43
)


def local_search(
    data: ProblemData,
    rng: RandomNumberGenerator,
    perturbation: PerturbationManager,
    neighbours: dict | None = None,
) -> LocalSearch:
    """PyVRP's local search with every operator that applies to `data` (both searches use it);
    `neighbours` defaults to PyVRP's granular neighbourhood."""
    if neighbours is None:
        neighbours = compute_neighbours(data, NeighbourhoodParams())
    search = LocalSearch(data, rng, neighbours, perturbation)
    for operator in OPERATORS:
        if operator.supports(data):
            search.add_operator(operator(data))
    return search


def _planar(data: ProblemData) -> np.ndarray:
    """A point per location reproducing the travel matrix as well as two dimensions can
    (classical scaling): SREX orders routes by their angle around the jobs' centre, and a
    problem here is a matrix, not a map."""
    travel = np.minimum.reduce(data.distance_matrices()).astype(float)  # each profile bars some jobs
    travel[travel >= MAX_VALUE] = np.nan
    travel = (travel + travel.T) / 2
    travel = np.nan_to_num(travel, nan=float(np.nanmax(travel)) if np.isfinite(travel).any() else 0.0)
    n = len(travel)
    centring = np.eye(n) - 1 / n
    gram = -0.5 * centring @ (travel**2) @ centring
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:2]
    return vectors[:, top] * np.sqrt(np.maximum(values[top], 0))


def _visits(route: Route) -> list[int]:
    """A route's client indices. PyVRP prints a route as "C12 C7 ..." (clients) and "D0"
    (depots): reading that is some forty times faster than walking its scheduled activities,
    and the genetic loop reads every child (tests pin the format)."""
    return [int(token[1:]) for token in str(route).split() if token[0] == "C"]


class _Member:
    __slots__ = ("solution", "routes", "edges", "num_edges", "closest", "diversity", "fitness", "cost", "by_angle")

    def __init__(self, solution: Solution, num_clients: int):
        self.solution = solution
        # (client indices, vehicle type) per route
        self.routes = [(_visits(r), r.vehicle_type()) for r in solution.routes()]
        # Each undirected edge one bit (the depot is 0, client c is c + 1): counting shared
        # edges is then an AND and a popcount, the survivor selection's inner loop.
        width = num_clients + 1
        bits = bytearray((width * width + 7) // 8)
        for visits, _ in self.routes:
            stops = [0, *(c + 1 for c in visits), 0]
            for a, b in zip(stops, stops[1:]):
                edge = a * width + b if a < b else b * width + a
                bits[edge >> 3] |= 1 << (edge & 7)
        self.edges = int.from_bytes(bits, "little")
        self.num_edges = self.edges.bit_count()
        self.closest: list[tuple[float, _Member]] = []  # (distance, member), nearest first
        self.diversity: float | None = None  # mean distance to the CLOSEST nearest; None: stale
        self.fitness = 0.0
        self.cost: tuple[tuple, int] | None = None  # (penalties, penalised cost) last computed
        self.by_angle: list[tuple[list[int], int]] | None = None  # routes, as SREX orders them

    def penalised_cost(self, costs: CostEvaluator, penalties: tuple) -> int:
        if self.cost is None or self.cost[0] != penalties:
            self.cost = (penalties, costs.penalised_cost(self.solution))
        return self.cost[1]


def _distance(first: _Member, second: _Member, num_clients: int) -> float:
    """Broken-pairs distance: the share of `first`'s edges that `second` lacks."""
    return (first.num_edges - (first.edges & second.edges).bit_count()) / max(num_clients, 1)


_by_distance = operator.itemgetter(0)  # of a (distance, member) pair


class _Subpopulation:
    def __init__(self, num_clients: int):
        self.members: list[_Member] = []
        self._num_clients = num_clients
        self._ranked_under: tuple | None = None  # penalties the fitness is for; None: stale

    def add(self, member: _Member, costs: CostEvaluator, penalties: tuple) -> None:
        for other in self.members:
            distance = _distance(member, other, self._num_clients)
            index = bisect.bisect_right(other.closest, distance, key=_by_distance)
            other.closest.insert(index, (distance, member))
            if index < CLOSEST:
                other.diversity = None
            member.closest.append((distance, other))
        member.closest.sort(key=_by_distance)
        self.members.append(member)
        self._ranked_under = None
        if len(self.members) > MIN_POPULATION + GENERATION:
            self._select_survivors(costs, penalties)

    def clear(self) -> None:
        self.members.clear()
        self._ranked_under = None

    def _remove(self, member: _Member) -> None:
        self.members.remove(member)
        self._ranked_under = None
        for distance, other in member.closest:  # in `other.closest` at the same distance
            near = other.closest
            index = bisect.bisect_left(near, distance, key=_by_distance)
            while near[index][1] is not member:
                index += 1
            del near[index]
            if index < CLOSEST:
                other.diversity = None

    def _select_survivors(self, costs: CostEvaluator, penalties: tuple) -> None:
        while len(self.members) > MIN_POPULATION:
            clone = next((m for m in self.members if m.closest and m.closest[0][1].solution == m.solution), None)
            if clone is None:
                break
            self._remove(clone)
        while len(self.members) > MIN_POPULATION:
            self.update_fitness(costs, penalties)
            self._remove(max(self.members, key=lambda m: m.fitness))

    def update_fitness(self, costs: CostEvaluator, penalties: tuple) -> None:
        """Rank the members; a no-op while neither they nor the penalties have changed."""
        size = len(self.members)
        if not size or self._ranked_under == penalties:
            return
        by_cost = sorted(self.members, key=lambda m: m.penalised_cost(costs, penalties))

        def diversity(member: _Member) -> float:
            if member.diversity is None:
                near = member.closest[:CLOSEST]
                member.diversity = sum(distance for distance, _ in near) / max(len(near), 1)
            return member.diversity

        by_diversity = sorted(range(size), key=lambda rank: -diversity(by_cost[rank]))
        weight = 1 - min(ELITE, size) / size
        for diversity_rank, cost_rank in enumerate(by_diversity):
            by_cost[cost_rank].fitness = (cost_rank + weight * diversity_rank) / (2 * size)
        self._ranked_under = penalties


def _by_angle(member: _Member, angle_of) -> list[tuple[list[int], int]]:
    if member.by_angle is None:
        member.by_angle = sorted(member.routes, key=lambda route: angle_of(route[0]))
    return member.by_angle


def _srex(
    first: _Member,
    second: _Member,
    data: ProblemData,
    costs: CostEvaluator,
    rng: RandomNumberGenerator,
    angle_of,
) -> Solution:
    """Selective route exchange (Nagata and Kobayashi 2010), as PyVRP 0.12 implements it:
    a run of adjacent routes (by angle) of `first` is replaced by a run of `second`'s, both
    runs slid to overlap most; jobs left out are for the local search to insert."""
    if not first.routes or not second.routes:
        return (first if first.routes else second).solution
    routes_a = _by_angle(first, angle_of)
    routes_b = [visits for visits, _ in _by_angle(second, angle_of)]
    count_a, count_b = len(routes_a), len(routes_b)
    start_a = rng.randint(count_a)
    start_b = start_a if start_a < count_b else 0
    moved = rng.randint(min(count_a, count_b)) + 1

    def run_a(offset: int) -> list[int]:
        return routes_a[(start_a + offset) % count_a][0]

    def run_b(offset: int) -> list[int]:
        return routes_b[(start_b + offset) % count_b]

    chosen_a = {c for offset in range(moved) for c in run_a(offset)}
    chosen_b = {c for offset in range(moved) for c in run_b(offset)}
    while True:  # slide either run one route left or right while fewer jobs need re-planning
        a_left = sum(c not in chosen_b for c in run_a(-1)) - sum(c not in chosen_b for c in run_a(moved - 1))
        a_right = sum(c not in chosen_b for c in run_a(moved)) - sum(c not in chosen_b for c in run_a(0))
        b_left = sum(c in chosen_a for c in run_b(moved - 1)) - sum(c in chosen_a for c in run_b(-1))
        b_right = sum(c in chosen_a for c in run_b(0)) - sum(c in chosen_a for c in run_b(moved))
        best = min(a_left, a_right, b_left, b_right)
        if best >= 0:
            break
        if best == a_left:
            chosen_a.difference_update(run_a(moved - 1))
            start_a = (start_a - 1) % count_a
            chosen_a.update(run_a(0))
        elif best == a_right:
            chosen_a.difference_update(run_a(0))
            start_a = (start_a + 1) % count_a
            chosen_a.update(run_a(moved - 1))
        elif best == b_left:
            chosen_b.difference_update(run_b(moved - 1))
            start_b = (start_b - 1) % count_b
            chosen_b.update(run_b(0))
        else:
            chosen_b.difference_update(run_b(0))
            start_b = (start_b + 1) % count_b
            chosen_b.update(run_b(moved - 1))

    only_b = chosen_b - chosen_a
    with_b = [[] for _ in range(count_a)]  # B's run, and A's routes less B's jobs
    with_both = [[] for _ in range(count_a)]  # B's run less what only B has, and A's routes
    for offset in range(moved):
        index = (start_a + offset) % count_a
        for c in run_b(offset):
            with_b[index].append(c)
            if c not in only_b:
                with_both[index].append(c)
    for offset in range(moved, count_a):
        index = (start_a + offset) % count_a
        for c in run_a(offset):
            if c not in only_b:
                with_b[index].append(c)
            with_both[index].append(c)
    children = [
        Solution(data, [Route(data, visits, routes_a[i][1]) for i, visits in enumerate(plan) if visits])
        for plan in (with_b, with_both)
    ]
    return min(children, key=costs.penalised_cost)


def _key(penalties: PenaltyManager) -> tuple:
    load, warp, excess = penalties.penalties()
    return (*load, warp, excess)


def genetic_search(
    data: ProblemData, deadline: float, seed: int, exchange: Exchange | None = None, threads: int = 1
) -> Solution:
    """The best plan found by `deadline` (`time.monotonic()` seconds): the cheapest feasible
    one, else the least penalised. `threads` children are educated at once (PyVRP's local
    search releases the GIL), so one population gets the work of that many cores. With
    `exchange`, the plans the searches beside it publish join the population as they come."""
    rng = RandomNumberGenerator(seed=seed)
    neighbours = compute_neighbours(data, NeighbourhoodParams(num_neighbours=NEIGHBOURS))
    # A local search (and its generator) per thread: each keeps state while it runs.
    idle_searches: queue.SimpleQueue[LocalSearch] = queue.SimpleQueue()
    for _ in range(threads):
        # No perturbation: the crossover is what moves the search.
        no_kicks = PerturbationManager(PerturbationParams(min_perturbations=0, max_perturbations=0))
        idle_searches.put(local_search(data, RandomNumberGenerator(seed=rng.randint(2**16)), no_kicks, neighbours))
    penalties = PenaltyManager(([START_PENALTY] * data.num_load_dimensions, START_PENALTY, START_PENALTY), PENALTIES)

    points = _planar(data)
    xs, ys = (points[data.num_depots :] - points[data.num_depots :].mean(axis=0)).T.tolist()

    def angle_of(visits: list[int]) -> float:  # of the route's centre around the jobs' centre
        return math.atan2(sum(ys[c] for c in visits), sum(xs[c] for c in visits))

    feasible, infeasible = _Subpopulation(data.num_clients), _Subpopulation(data.num_clients)
    best: Solution | None = None

    def better(solution: Solution) -> bool:
        if best is None:
            return True
        if solution.is_feasible() != best.is_feasible():
            return solution.is_feasible()
        costs = penalties.cost_evaluator()
        return costs.penalised_cost(solution) < costs.penalised_cost(best)

    def admit(solution: Solution) -> bool:
        nonlocal best
        penalties.register(solution)
        side = feasible if solution.is_feasible() else infeasible
        side.add(_Member(solution, data.num_clients), penalties.cost_evaluator(), _key(penalties))
        if better(solution):
            best = solution
            return True
        return False

    def educate(solution: Solution, costs: CostEvaluator, repair: CostEvaluator | None) -> tuple:
        """Run in a thread: the local search, then (with `repair`) a repair of an infeasible
        result under those boosted penalties."""
        search = idle_searches.get()
        try:
            child = search(solution, costs, exhaustive=True)
            repaired = search(child, repair, exhaustive=True) if repair is not None and not child.is_feasible() else None
        finally:
            idle_searches.put(search)
        return child, repaired

    def crossover() -> tuple:
        costs, ranked_under = penalties.cost_evaluator(), _key(penalties)
        feasible.update_fitness(costs, ranked_under)
        infeasible.update_fitness(costs, ranked_under)
        members = feasible.members + infeasible.members

        def tournament() -> _Member:
            one, other = members[rng.randint(len(members))], members[rng.randint(len(members))]
            return one if one.fitness < other.fitness else other

        first, second = tournament(), tournament()
        low, high = PARENT_DIVERSITY
        for _ in range(10):
            if low <= _distance(first, second, data.num_clients) <= high:
                break
            second = tournament()
        repair = None
        if rng.rand() < REPAIR_PROBABILITY:
            load, warp, excess = penalties.penalties()
            repair = CostEvaluator([p * REPAIR_BOOSTER for p in load], warp * REPAIR_BOOSTER, excess * REPAIR_BOOSTER)
        return _srex(first, second, data, costs, rng, angle_of), costs, repair

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="genetic")
    pending: dict[Future, bool] = {}  # educations under way -> whether a crossover child
    to_populate, stale = MIN_POPULATION, 0
    try:
        while best is None or time.monotonic() < deadline:
            if stale >= RESTART_AFTER:
                feasible.clear()
                infeasible.clear()
                to_populate, stale = MIN_POPULATION, 0
            if exchange is not None:
                for plan in exchange.arrivals():
                    admit(plan)
            while len(pending) < threads:
                if to_populate:
                    to_populate -= 1
                    pending[pool.submit(educate, Solution.make_random(data, rng), penalties.cost_evaluator(), None)] = False
                elif feasible.members or infeasible.members:
                    pending[pool.submit(educate, *crossover())] = True
                else:  # the first plans are still being educated
                    break
            timeout = None if best is None else max(deadline - time.monotonic(), 0)
            done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                is_child = pending.pop(future)
                child, repaired = future.result()
                improved = admit(child)
                if repaired is not None and repaired.is_feasible():
                    improved = admit(repaired) or improved
                if is_child:
                    stale = 0 if improved else stale + 1
    finally:
        # An education under way is not waited for: it ends within one local search.
        pool.shutdown(wait=False, cancel_futures=True)
    return best
