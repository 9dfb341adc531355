"""Solve a planning problem with PyVRP (with `genetic`, the only modules that import it).

PyVRP works in integers, so times are scaled by SCALE and travel times rounded *up*: a plan
that keeps every window in integers keeps it in double precision too. The cost it minimises is
the travel rounded to the nearest unit, and the plan returned is re-scored by `evaluate` in
double precision from the routes alone.

Where there are routes to cross, the hybrid genetic search of `matching.planning.genetic` runs
over PyVRP's local search, one population educating a child per core; on small problems with
short routes PyVRP's iterated local search takes one core and hands the genetic search its
plans. On one vehicle the iterated search alone runs, a seed per core, and the best plan wins
(see `_searches`). Vehicles that differ in nothing but their id become one PyVRP vehicle type
with that many available, which is what lets the search move jobs freely between them. Skills
become routing profiles: a profile's matrices make the jobs its vehicles may not do unreachable.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyvrp import (
    Client,
    Depot,
    IteratedLocalSearch,
    IteratedLocalSearchCallbacks,
    IteratedLocalSearchParams,
    Location,
    PenaltyManager,
    PenaltyParams,
    ProblemData,
    RandomNumberGenerator,
    Solution,
    VehicleType,
)
from pyvrp.constants import MAX_VALUE
from pyvrp.exceptions import PenaltyBoundWarning
from pyvrp.search import PerturbationManager, PerturbationParams
from pyvrp.stop import StoppingCriterion

from matching.planning.exchange import Exchange
from matching.planning.genetic import genetic_search, local_search
from matching.planning.problem import JobId, Plan, Problem, Vehicle, VehicleId, evaluate

SCALE = 1000  # integer units per time unit: milli-units of a Solomon file, ms of a day in s
_ROUNDING_SLACK = 1e-6  # so 5.000000000000001 scales to 5000, not 5001
# Jobs per vehicle from which a problem's routes are long and few (Solomon's and
# Gehring-Homberger's R2, RC2 and C2: 25 to 50 a route; their R1, RC1, C1 and a technician's day:
# about 10).
LONG_ROUTES = 20
# Each perturbation of PyVRP's iterated search removes up to so many jobs (its default: 25).
# Routes of 25-50 jobs, and small problems on their minimum fleet, need bigger kicks to leave a
# local optimum. Solomon (100 customers) at 10 s, two searches: R2 and RC2 0.71 % (seed 1) and
# 0.65 % (seed 2) with 25, 0.32 and 0.33 % with 40 (10: 2.7 %, 60: 0.54 %); R103 and R104
# feasible on their best-known fleet with 40 (seeds 1 and 2), not with 25. Where the iterated
# search runs: see `_searches`.
KICK = 40
SMALL_PROBLEM = 100  # jobs; which searches run depends on it (see `_searches`)
# PyVRP starts its penalties in the middle of their range (time warp 50,000 times the price of
# travel) and revises them every 500 candidates; bringing them down takes some 40,000 candidates,
# and a 10 s search on 100 jobs makes 5,000 to 15,000. Where routes are long, starting at par
# and revising every 100 lets the search cross late plans on its way to shorter ones. Solomon R2
# and RC2 at 10 s, two searches, best of the two, seeds 1-2 and 3-4: 0.21 and 0.14 % against
# 0.32 and 0.27 % (starting at 3: 0.14 and 0.26; 0.3: 0.26). On tight fleets (Solomon R1, RC1,
# C1) it lost, 0.21 % against 0.07 % with R104 unsolved: there the penalties must be high.
GENTLE_PENALTY = 1.0
GENTLE_PENALTY_UPDATES = 100

# The searches `search_once` runs.
GENETIC, GENTLE, REAL_FLEET = "genetic", "gentle", "real-fleet"


@dataclass(frozen=True, slots=True)
class _Model:
    data: ProblemData
    job_ids: tuple[JobId, ...]  # PyVRP client index -> our job
    type_vehicles: tuple[tuple[VehicleId, ...], ...]  # PyVRP vehicle type -> our vehicles


def _up(value: float) -> int:
    return math.ceil(value * SCALE - _ROUNDING_SLACK)


def _down(value: float) -> int:
    return math.floor(value * SCALE + _ROUNDING_SLACK)


def _fleet_key(vehicle: Vehicle, allowed: frozenset[int]) -> tuple:
    return (vehicle.start, vehicle.end, vehicle.earliest, vehicle.latest, vehicle.capacity, allowed)


def build_model(problem: Problem) -> _Model:
    """The problem in PyVRP's terms: depots first, then one location per job."""
    depot_locations = sorted({v.start for v in problem.vehicles} | {v.end for v in problem.vehicles})
    depot_index = {location: index for index, location in enumerate(depot_locations)}
    rows = depot_locations + [job.location for job in problem.jobs]
    num_depots = len(depot_locations)

    travel = problem.travel[np.ix_(rows, rows)]
    durations = np.ceil(travel * SCALE - _ROUNDING_SLACK).astype(np.int64)
    distances = np.rint(travel * SCALE).astype(np.int64)

    uses_capacity = any(v.capacity is not None for v in problem.vehicles)
    largest_load = sum(job.demand for job in problem.jobs)
    clients = [
        Client(
            location=num_depots + index,
            delivery=[job.demand] if uses_capacity else [],
            service_duration=_up(job.service),
            tw_early=_up(job.earliest),
            tw_late=_down(job.latest) if math.isfinite(job.latest) else MAX_VALUE,
        )
        for index, job in enumerate(problem.jobs)
    ]

    fleets: dict[tuple, list[Vehicle]] = {}
    for vehicle in problem.vehicles:
        allowed = frozenset(i for i, job in enumerate(problem.jobs) if vehicle.can_do(job))
        fleets.setdefault(_fleet_key(vehicle, allowed), []).append(vehicle)
    profiles: dict[frozenset[int], int] = {}
    distance_matrices, duration_matrices, vehicle_types = [], [], []
    for (start, end, earliest, latest, capacity, allowed), vehicles in fleets.items():
        if allowed not in profiles:
            profiles[allowed] = len(profiles)
            barred = [num_depots + i for i in range(len(problem.jobs)) if i not in allowed]
            profile_distances, profile_durations = distances.copy(), durations.copy()
            for matrix in (profile_distances, profile_durations):
                matrix[:, barred] = MAX_VALUE
                matrix[barred, :] = MAX_VALUE
                np.fill_diagonal(matrix, 0)
            distance_matrices.append(profile_distances)
            duration_matrices.append(profile_durations)
        vehicle_types.append(
            VehicleType(
                num_available=len(vehicles),
                capacity=[largest_load if capacity is None else capacity] if uses_capacity else [],
                start_depot=depot_index[start],
                end_depot=depot_index[end],
                tw_early=_up(earliest),
                tw_late=_down(latest) if math.isfinite(latest) else MAX_VALUE,
                profile=profiles[allowed],
            )
        )

    data = ProblemData(
        locations=[Location(0.0, 0.0) for _ in rows],
        clients=clients,
        depots=[Depot(location=index) for index in range(num_depots)],
        vehicle_types=vehicle_types,
        distance_matrices=distance_matrices,
        duration_matrices=duration_matrices,
    )
    return _Model(
        data=data,
        job_ids=tuple(job.id for job in problem.jobs),
        type_vehicles=tuple(tuple(v.id for v in vehicles) for vehicles in fleets.values()),
    )


def _assignment(model: _Model, solution: Solution) -> dict[VehicleId, list[JobId]]:
    """Hand each PyVRP route to the next unused vehicle of its type."""
    unused = [list(vehicles) for vehicles in model.type_vehicles]
    assignment: dict[VehicleId, list[JobId]] = {}
    for route in solution.routes():
        vehicle = unused[route.vehicle_type()].pop(0)
        assignment[vehicle] = [model.job_ids[act.idx] for act in route if act.is_client()]
    return assignment


class _Deadline:
    """PyVRP stopping criterion on the monotonic clock, so process start-up and PyVRP's own
    initial descent count against the caller's time limit."""

    def __init__(self, deadline: float):
        self._deadline = deadline

    def __call__(self, best_cost: int) -> bool:
        return time.monotonic() >= self._deadline


def search_once(
    data: ProblemData, deadline: float, seed: int, method: str, exchange: Path | None = None, threads: int = 1
) -> Solution:
    """One seeded search, ending at `deadline` (`time.monotonic()` seconds: Linux's monotonic
    clock is the same in every process of the machine, and a step of the wall clock must not
    cut a search short or stretch it). `method`: GENETIC (the hybrid genetic search, educating
    on `threads` threads), GENTLE (iterated local search, penalties starting at GENTLE_PENALTY)
    or REAL_FLEET (iterated local search, PyVRP's penalties). With an `exchange` folder, the
    iterated searches publish their best plans there and the genetic search takes them in (see
    `matching.planning.exchange`)."""
    with warnings.catch_warnings():
        # A tight fleet drives the penalties to their bound; that is expected, not news.
        warnings.simplefilter("ignore", PenaltyBoundWarning)
        shared = None if exchange is None else Exchange(exchange, seed)
        if method == GENETIC:
            return genetic_search(data, deadline, seed, shared, threads)
        return _search(data, _Deadline(deadline), seed, gentle_penalties=method == GENTLE, exchange=shared)


def _search(
    data: ProblemData,
    stop: StoppingCriterion,
    seed: int,
    gentle_penalties: bool = False,
    exchange: Exchange | None = None,
) -> Solution:
    """PyVRP's `solve` (its iterated local search), with our perturbation size and, where
    `gentle_penalties`, the penalties of GENTLE_PENALTY; its best plans go to `exchange`."""
    rng = RandomNumberGenerator(seed=seed)
    perturbation = PerturbationManager(PerturbationParams(max_perturbations=KICK))
    search = local_search(data, rng, perturbation)
    if gentle_penalties:
        params = PenaltyParams(solutions_between_updates=GENTLE_PENALTY_UPDATES)
        start = ([GENTLE_PENALTY] * data.num_load_dimensions, GENTLE_PENALTY, GENTLE_PENALTY)
    else:
        params = PenaltyParams()
        start = params.midpoint_penalties(data)
    penalties = PenaltyManager(start, params)
    initial_solution = search(Solution.make_random(data, rng), penalties.max_cost_evaluator(), exhaustive=True)
    params = IteratedLocalSearchParams(callbacks=_Publish(exchange)) if exchange else IteratedLocalSearchParams()
    ils = IteratedLocalSearch(data, penalties, search, initial_solution, params)
    return ils.run(stop, collect_stats=False).best


class _Publish(IteratedLocalSearchCallbacks):
    def __init__(self, exchange: Exchange):
        self._exchange = exchange

    def on_best(self, best: Solution) -> None:
        self._exchange.publish(best)


def _start_worker(
    data: ProblemData, deadline: float, seed: int, method: str, folder: Path, exchange: Path | None
) -> subprocess.Popen:
    """Another search in a fresh interpreter (its job written to `folder`): unlike fork it is
    safe in a threaded caller, and unlike multiprocessing's spawn it never re-imports the
    caller's __main__."""
    job = folder / f"seed-{seed}.pickle"
    job.write_bytes(pickle.dumps((data, deadline, seed, method, exchange)))
    return subprocess.Popen(
        [sys.executable, "-m", "matching.planning.worker", str(job)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _collect(worker: subprocess.Popen) -> Solution:
    out, err = worker.communicate()
    if worker.returncode != 0:
        raise RuntimeError(f"planning worker failed: {err.decode(errors='replace')[-2000:]}")
    return pickle.loads(out)


def _rank(plan: Plan) -> tuple:
    return (not plan.feasible, len(plan.unassigned), plan.travel)


def _long_routes(problem: Problem) -> bool:
    return len(problem.jobs) >= LONG_ROUTES * len(problem.vehicles)


def _searches(problem: Problem, workers: int) -> tuple[str, int, list[str]]:
    """(the search this process runs, its threads, the searches of other processes).

    - On one vehicle (nothing to cross), `workers` iterated searches, with gentle penalties
      where the route is long, the best plan kept.
    - Up to SMALL_PROBLEM jobs with short routes, the iterated search on PyVRP's penalties on
      one core (alone if there is one: a technician's day is such a problem) and the genetic
      search on the others, taking in its plans: on Solomon's R103 and RC105 no genetic search
      of 10 s (seeds 1-4) found a plan on the best-known fleet, the iterated search did (seeds
      1-2). Stopping the iterated search at its first plan, the genetic search then taking its
      core, left R104 and RC106 short of the fleet on seed 1.
    - Larger problems with long routes (LONG_ROUTES jobs per vehicle or more), the iterated
      search with gentle penalties on one core and the genetic search on the others, taking in
      its plans: whole Gehring-Homberger R2 and RC2 runs at 30 s, seed 1, 0.46 and 0.50 %
      against 0.91 and 0.84 % for one population on both cores.
    - Otherwise the genetic search on `workers` threads. One population on two cores against
      two searches of one core each (best kept), 30 s, seed 1, the six hardest
      Gehring-Homberger R1 and RC1 instances: 1.08 % against 2.45 %.
    """
    long_routes = _long_routes(problem)
    if len(problem.vehicles) < 2:
        method = GENTLE if long_routes else REAL_FLEET
        return method, 1, [method] * (workers - 1)
    small = len(problem.jobs) <= SMALL_PROBLEM
    if workers > 1 and long_routes != small:
        return GENETIC, workers - 1, [GENTLE if long_routes else REAL_FLEET]
    if workers == 1 and small and not long_routes:
        return REAL_FLEET, 1, []
    return GENETIC, workers, []


def plan_routes(
    problem: Problem,
    time_limit: float,
    *,
    seed: int = 1,
    workers: int = 1,
) -> Plan:
    """Plan routes serving every job, with at most the problem's vehicles, minimising travel.

    The searches (see `_searches`) use `workers` cores, seeds seed, seed+1, ..., until
    `time_limit` seconds after the call; the best plan is returned. A problem with no feasible
    plan within the limit yields the least-bad plan found, marked infeasible.
    """
    began = time.perf_counter()
    deadline = time.monotonic() + time_limit
    if not problem.jobs or not problem.vehicles:
        return evaluate(problem, {}, seconds=time.perf_counter() - began)
    model = build_model(problem)
    method, threads, other_methods = _searches(problem, workers)
    with tempfile.TemporaryDirectory(prefix="gasdispatch-plan-") as folder:
        shared = Path(folder) if method == GENETIC and other_methods else None
        others = [
            _start_worker(model.data, deadline, seed + k, other, Path(folder), shared)
            for k, other in enumerate(other_methods, start=1)
        ]
        solutions = [search_once(model.data, deadline, seed, method, shared, threads)]
        solutions += [_collect(worker) for worker in others]
    plans = [evaluate(problem, _assignment(model, solution)) for solution in solutions]
    best = min(plans, key=_rank)
    return Plan(
        name=best.name,
        routes=best.routes,
        unassigned=best.unassigned,
        travel=best.travel,
        feasible=best.feasible,
        seconds=time.perf_counter() - began,
    )
