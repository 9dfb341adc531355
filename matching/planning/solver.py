"""Solve a planning problem with PyVRP (with `genetic`, the only modules that import it).

PyVRP works in integers, so times are scaled by SCALE and travel times rounded *up*: a plan
that keeps every window in integers keeps it in double precision too. The cost it minimises is
the travel rounded to the nearest unit, and the plan returned is re-scored by `evaluate` in
double precision from the routes alone.

Several searches run side by side, each with its own seed; the best plan wins. A search is
PyVRP's iterated local search, set up here, or on problems of up to 100 jobs the hybrid genetic
search of `matching.planning.genetic` over PyVRP's local search. Vehicles that
differ in nothing but their id become one PyVRP vehicle type with that many available, which is
what lets the search move jobs freely between them. Skills become routing profiles: a profile's
matrices make the jobs its vehicles may not do unreachable.
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
    Route,
    Solution,
    VehicleType,
)
from pyvrp.constants import MAX_VALUE
from pyvrp.exceptions import PenaltyBoundWarning
from pyvrp.search import PerturbationManager, PerturbationParams
from pyvrp.stop import FirstFeasible, StoppingCriterion

from matching.planning.exchange import Exchange
from matching.planning.genetic import genetic_search, local_search
from matching.planning.problem import JobId, Plan, Problem, Vehicle, VehicleId, evaluate

SCALE = 1000  # integer units per time unit: milli-units of a Solomon file, ms of a day in s
_ROUNDING_SLACK = 1e-6  # so 5.000000000000001 scales to 5000, not 5001
RELAXED_FLEET = 3  # the first phase may use this many times each vehicle type's count
RELAXED_SHARE = 0.25  # of the time limit, spent with the relaxed fleet
# What each vehicle of the relaxed fleet costs, in longest edges of the problem: enough that the
# relaxed search itself trades travel for fewer routes (the fleet's minimum is the hard part).
RELAXED_VEHICLE_COST = 4
# Jobs per vehicle from which a problem's routes are long and few (Solomon's and
# Gehring-Homberger's R2, RC2 and C2: 25 to 50 a route; their R1, RC1, C1 and a technician's day:
# about 10). There the relaxed start only loses time: at 30 s on six such 200-customer instances
# it lost to a search on the real fleet throughout on five (by 0.6 to 14 points of gap) and tied
# on one, so every search works on the real fleet.
LONG_ROUTES = 20
# Each perturbation of PyVRP's search removes up to so many jobs (its default: 25). Routes of
# 25-50 jobs, and small problems on their minimum fleet, need bigger kicks to leave a local
# optimum. Solomon (100 customers) at 10 s, two searches: R2 and RC2 0.71 % (seed 1) and 0.65 %
# (seed 2) with 25, 0.32 and 0.33 % with 40 (10: 2.7 %, 60: 0.54 %); R103 and R104 feasible on
# their best-known fleet with 40 (seeds 1 and 2), not with 25. Gehring-Homberger's 200-customer
# R1, RC1 and C1 at 30 s lost with 40 (2.43 % against 1.88 % on RC1), their long-route classes
# did not (0.36 % against 0.39 %).
KICK_DEFAULT = 25
KICK_LARGE = 40
# Up to SMALL_PROBLEM jobs every search takes the large kicks and none descends: with them the
# real fleet alone reaches the minimum. Solomon R1, RC1 and C1 at 10 s, two searches, best of the
# two: 0.05 and 0.09 % (seeds 1-2, 3-4), every single search feasible, against 0.07 and 0.41 %
# with the first search descending (7 and 8 of 58 single searches short of the fleet, R104
# unsolved by either on seeds 3-4).
SMALL_PROBLEM = 100
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
GENETIC, DESCEND, GENTLE, REAL_FLEET = "genetic", "descend", "gentle", "real-fleet"


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
    """PyVRP stopping criterion on the wall clock, so process start-up and PyVRP's own
    initial descent count against the caller's time limit."""

    def __init__(self, deadline: float, first_feasible: bool = False):
        self._deadline = deadline
        self._first_feasible = FirstFeasible() if first_feasible else None

    def __call__(self, best_cost: int) -> bool:
        if self._first_feasible is not None and self._first_feasible(best_cost):
            return True
        return time.time() >= self._deadline


def _with_fleet(data: ProblemData, counts: list[int], fixed_cost: int = 0) -> ProblemData:
    types = [vt.replace(num_available=n, fixed_cost=fixed_cost) for vt, n in zip(data.vehicle_types(), counts)]
    return data.replace(vehicle_types=types)


def _usage(solution: Solution, num_types: int) -> list[int]:
    usage = [0] * num_types
    for route in solution.routes():
        usage[route.vehicle_type()] += 1
    return usage


def _drop_routes(data: ProblemData, solution: Solution, counts: list[int]) -> Solution:
    """`solution` within `counts` vehicles per type: the routes with the fewest jobs go, and
    their jobs are left for the search to re-insert."""
    kept, used = [], [0] * len(counts)
    for route in sorted(solution.routes(), key=lambda r: -r.num_clients()):
        vehicle_type = route.vehicle_type()
        if used[vehicle_type] < counts[vehicle_type]:
            used[vehicle_type] += 1
            visits = [act.idx for act in route if act.is_client()]
            kept.append(Route(data, visits, vehicle_type))
    return Solution(data, kept)


def search_once(
    data: ProblemData, deadline: float, seed: int, method: str, kick: int, exchange: Path | None = None
) -> Solution:
    """One seeded search, ending at `deadline` (epoch seconds). `method`: GENETIC (the hybrid
    genetic search), DESCEND (iterated local search down from a relaxed fleet), GENTLE (on the
    real fleet, penalties starting at GENTLE_PENALTY) or REAL_FLEET (on the real fleet, PyVRP's
    penalties); the iterated searches' perturbations remove up to `kick` jobs. With an
    `exchange` folder, the iterated searches on the real fleet publish their best plans there
    and the genetic search takes them in (see `matching.planning.exchange`)."""
    with warnings.catch_warnings():
        # A tight fleet drives the penalties to their bound; that is expected, not news.
        warnings.simplefilter("ignore", PenaltyBoundWarning)
        shared = None if exchange is None else Exchange(exchange, seed)
        if method == GENETIC:
            return genetic_search(data, deadline, seed, shared)
        if method == DESCEND:
            return _descend(data, deadline, seed, kick)
        return _search(data, _Deadline(deadline), seed, kick, gentle_penalties=method == GENTLE, exchange=shared)


def _search(
    data: ProblemData,
    stop: StoppingCriterion,
    seed: int,
    kick: int,
    gentle_penalties: bool = False,
    initial_solution: Solution | None = None,
    exchange: Exchange | None = None,
) -> Solution:
    """PyVRP's `solve` (its iterated local search), with our perturbation size and, where
    `gentle_penalties`, the penalties of GENTLE_PENALTY; its best plans go to `exchange`."""
    rng = RandomNumberGenerator(seed=seed)
    perturbation = PerturbationManager(PerturbationParams(max_perturbations=kick))
    search = local_search(data, rng, perturbation)
    if gentle_penalties:
        params = PenaltyParams(solutions_between_updates=GENTLE_PENALTY_UPDATES)
        start = ([GENTLE_PENALTY] * data.num_load_dimensions, GENTLE_PENALTY, GENTLE_PENALTY)
    else:
        params = PenaltyParams()
        start = params.midpoint_penalties(data)
    penalties = PenaltyManager(start, params)
    if initial_solution is None:
        initial_solution = search(Solution.make_random(data, rng), penalties.max_cost_evaluator(), exhaustive=True)
    params = IteratedLocalSearchParams(callbacks=_Publish(exchange)) if exchange else IteratedLocalSearchParams()
    ils = IteratedLocalSearch(data, penalties, search, initial_solution, params)
    return ils.run(stop, collect_stats=False).best


class _Publish(IteratedLocalSearchCallbacks):
    def __init__(self, exchange: Exchange):
        self._exchange = exchange

    def on_best(self, best: Solution) -> None:
        self._exchange.publish(best)


def _descend(data: ProblemData, deadline: float, seed: int, kick: int) -> Solution:
    """Relax the fleet, then take vehicles away one at a time down to the real fleet.

    A search confined to a tight fleet from the start spends its time repairing time warp
    (stock PyVRP, kicks of 25, finds no feasible plan for Solomon C101 with 10 vehicles in 10 s;
    with the large kicks a small problem gets, it does, so small problems skip this); with spare
    vehicles it finds short routes fast, and removing the emptiest route and re-inserting its
    jobs is a small step each time. The spare vehicles carry a fixed cost, so the relaxed search
    already works the fleet down (on Gehring-Homberger R1/RC1 it ends a few routes nearer the
    real fleet, and the steps that follow start from plans built for it). The last step runs on
    the real fleet until the deadline.
    """
    began = time.time()
    caps = [vt.num_available for vt in data.vehicle_types()]
    relaxed = [min(data.num_clients, RELAXED_FLEET * cap) for cap in caps]
    edge = max(int(m[m < MAX_VALUE].max()) for m in data.distance_matrices())
    best = _search(
        _with_fleet(data, relaxed, fixed_cost=RELAXED_VEHICLE_COST * edge),
        _Deadline(began + RELAXED_SHARE * (deadline - began)),
        seed,
        kick,
    )
    while True:
        usage = _usage(best, len(caps))
        over = [t for t, (used, cap) in enumerate(zip(usage, caps)) if used > cap]
        if not best.is_feasible() or not over:
            break
        counts = [max(used, cap) for used, cap in zip(usage, caps)]
        counts[over[0]] -= 1
        if counts == caps:
            break
        step = _with_fleet(data, counts)
        halfway = time.time() + (deadline - time.time()) / 2
        found = _search(
            step,
            _Deadline(halfway, first_feasible=True),
            seed,
            kick,
            initial_solution=_drop_routes(step, best, counts),
        )
        if not found.is_feasible():
            break
        best = found
    return _search(data, _Deadline(deadline), seed, kick, initial_solution=_drop_routes(data, best, caps))


def _start_worker(
    data: ProblemData, deadline: float, seed: int, method: str, kick: int, folder: Path, exchange: Path | None
) -> subprocess.Popen:
    """Another search in a fresh interpreter (its job written to `folder`): unlike fork it is
    safe in a threaded caller, and unlike multiprocessing's spawn it never re-imports the
    caller's __main__."""
    job = folder / f"seed-{seed}.pickle"
    job.write_bytes(pickle.dumps((data, deadline, seed, method, kick, exchange)))
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


def _methods(problem: Problem, workers: int) -> list[str]:
    """The search each of `workers` runs.

    Up to SMALL_PROBLEM jobs on two vehicles or more, the genetic search, which is the better
    one there, except on tight fleets: on Solomon's R103 and RC105 no genetic search of 10 s
    (seeds 1-4) found a plan on the best-known fleet, where the iterated local search did
    (seeds 1-2). So where routes are short the first, third, ... search runs the latter on the
    real fleet and the others the genetic search; where routes are long (LONG_ROUTES jobs per
    vehicle or more) all run the genetic search.

    Larger problems: where routes are long every search runs the iterated local search on the
    real fleet with gentle penalties; where they are short, the first, third, ... descend from a
    relaxed fleet (best where windows are tight and the fleet near its minimum) and the others
    search the real fleet from the start (best with wide windows, as in Solomon's R2).
    """
    long_routes = _long_routes(problem)
    if len(problem.jobs) <= SMALL_PROBLEM:
        if len(problem.vehicles) < 2:  # crossing routes needs routes
            return [GENTLE if long_routes else REAL_FLEET] * workers
        if long_routes:
            return [GENETIC] * workers
        return [REAL_FLEET if k % 2 == 0 else GENETIC for k in range(workers)]
    if long_routes:
        return [GENTLE] * workers
    return [DESCEND if k % 2 == 0 else REAL_FLEET for k in range(workers)]


def plan_routes(
    problem: Problem,
    time_limit: float,
    *,
    seed: int = 1,
    workers: int = 1,
) -> Plan:
    """Plan routes serving every job, with at most the problem's vehicles, minimising travel.

    `workers` searches run side by side (this process and workers-1 others, seeds seed,
    seed+1, ...) until `time_limit` seconds after the call; the best plan is returned (see
    `_methods` for which search each runs). A problem with no feasible plan within the limit
    yields the least-bad plan found, marked infeasible.
    """
    began = time.perf_counter()
    deadline = time.time() + time_limit
    if not problem.jobs or not problem.vehicles:
        return evaluate(problem, {}, seconds=time.perf_counter() - began)
    model = build_model(problem)
    kick = KICK_LARGE if _long_routes(problem) or len(problem.jobs) <= SMALL_PROBLEM else KICK_DEFAULT
    methods = _methods(problem, workers)
    with tempfile.TemporaryDirectory(prefix="gasdispatch-plan-") as folder:
        # Only the genetic search reads the others' plans, and only the iterated ones publish.
        shared = Path(folder) if GENETIC in methods and set(methods) != {GENETIC} else None
        others = [
            _start_worker(model.data, deadline, seed + k, methods[k], kick, Path(folder), shared)
            for k in range(1, workers)
        ]
        solutions = [search_once(model.data, deadline, seed, methods[0], kick, shared)]
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
