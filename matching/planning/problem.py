"""The planning problem as plain data, and its double-precision evaluation.

A problem is a travel-time matrix over numbered locations, jobs (a location, a window for the
start of service, a service duration, a demand, the skills it needs) and vehicles (start and end
locations, a shift, an optional capacity, the skills they have). The same shapes carry a Solomon
file (one depot, identical vehicles, Euclidean travel) and a technician's day (a home start and
end, a shift, booked appointment windows in seconds since midnight, a road travel-time matrix).

`evaluate` is the referee: it rebuilds every schedule in double precision from the routes alone,
whichever solver produced them, so a plan's figures never depend on a solver's integer rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

JobId = int | str
VehicleId = int | str

# Summing a route's legs in double precision reorders rounding errors; a start this close to a
# bound is on it.
TOLERANCE = 1e-6


class PlanningError(ValueError):
    """The problem is malformed (not merely unsolvable)."""


@dataclass(frozen=True, slots=True)
class Job:
    id: JobId
    location: int
    service: float = 0.0
    earliest: float = 0.0  # service may not start before this
    latest: float = math.inf  # nor after this
    demand: int = 0
    skills: frozenset[str] = field(default_factory=frozenset)  # all of them are needed


@dataclass(frozen=True, slots=True)
class Vehicle:
    id: VehicleId
    start: int
    end: int
    earliest: float = 0.0  # leaves its start no earlier
    latest: float = math.inf  # back at its end no later
    capacity: int | None = None  # None: unlimited
    skills: frozenset[str] = field(default_factory=frozenset)

    def can_do(self, job: Job) -> bool:
        return job.skills <= self.skills


@dataclass(frozen=True, slots=True, eq=False)
class Problem:
    name: str
    travel: np.ndarray  # travel[i, j]: time from location i to j, also the cost minimised
    jobs: tuple[Job, ...]
    vehicles: tuple[Vehicle, ...]

    def __post_init__(self) -> None:
        travel = np.asarray(self.travel, dtype=np.float64)
        if travel.ndim != 2 or travel.shape[0] != travel.shape[1]:
            raise PlanningError("the travel matrix must be square")
        if not np.all(np.isfinite(travel)) or np.any(travel < 0):
            raise PlanningError("travel times must be finite and non-negative")
        object.__setattr__(self, "travel", travel)
        size = travel.shape[0]
        job_ids = [job.id for job in self.jobs]
        if len(set(job_ids)) != len(job_ids):
            raise PlanningError("job ids must be unique")
        vehicle_ids = [vehicle.id for vehicle in self.vehicles]
        if len(set(vehicle_ids)) != len(vehicle_ids):
            raise PlanningError("vehicle ids must be unique")
        for job in self.jobs:
            if not 0 <= job.location < size:
                raise PlanningError(f"job {job.id}: location {job.location} is not in the matrix")
            if job.service < 0 or job.demand < 0:
                raise PlanningError(f"job {job.id}: service and demand must be non-negative")
            if not job.earliest <= job.latest:
                raise PlanningError(f"job {job.id}: its window ends before it starts")
        for vehicle in self.vehicles:
            if not (0 <= vehicle.start < size and 0 <= vehicle.end < size):
                raise PlanningError(f"vehicle {vehicle.id}: start or end is not in the matrix")
            if not vehicle.earliest <= vehicle.latest:
                raise PlanningError(f"vehicle {vehicle.id}: its shift ends before it starts")
            if vehicle.capacity is not None and vehicle.capacity < 0:
                raise PlanningError(f"vehicle {vehicle.id}: capacity must be non-negative")

    @staticmethod
    def euclidean(points: Sequence[tuple[float, float]]) -> np.ndarray:
        """Travel times as straight-line distances in double precision, unrounded."""
        xy = np.asarray(points, dtype=np.float64)
        return np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1))


@dataclass(frozen=True, slots=True)
class Stop:
    job: JobId
    arrival: float
    start: float  # service start: the arrival, or the window's opening if that is later
    departure: float


@dataclass(frozen=True, slots=True)
class Route:
    vehicle: VehicleId
    departure: float  # from the start location; as late as keeps every service start
    stops: tuple[Stop, ...]
    arrival: float  # back at the end location
    travel: float

    @property
    def jobs(self) -> list[JobId]:
        return [stop.job for stop in self.stops]


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    routes: tuple[Route, ...]  # one per vehicle used, in the problem's vehicle order
    unassigned: tuple[JobId, ...]
    travel: float
    feasible: bool  # every job served once, in its window, by a vehicle able and big enough
    seconds: float = 0.0


def evaluate(
    problem: Problem, assignment: Mapping[VehicleId, Sequence[JobId]], seconds: float = 0.0
) -> Plan:
    """Schedule each vehicle's jobs in order, as early as allowed, and judge the whole plan."""
    jobs = {job.id: job for job in problem.jobs}
    travel = problem.travel
    feasible = True
    served: set[JobId] = set()
    routes = []
    unknown = set(assignment) - {vehicle.id for vehicle in problem.vehicles}
    if unknown:
        raise PlanningError(f"unknown vehicles {sorted(map(str, unknown))}")
    for vehicle in problem.vehicles:
        sequence = list(assignment.get(vehicle.id, ()))
        if not sequence:
            continue
        stops = []
        place, clock, load, distance = vehicle.start, vehicle.earliest, 0, 0.0
        for job_id in sequence:
            job = jobs.get(job_id)
            if job is None:
                raise PlanningError(f"vehicle {vehicle.id}: unknown job {job_id}")
            if job_id in served or not vehicle.can_do(job):
                feasible = False
            served.add(job_id)
            leg = float(travel[place, job.location])
            arrival = clock + leg
            start = max(arrival, job.earliest)
            if start > job.latest + TOLERANCE:
                feasible = False
            clock = start + job.service
            stops.append(Stop(job_id, arrival, start, clock))
            distance += leg
            load += job.demand
            place = job.location
        leg = float(travel[place, vehicle.end])
        distance += leg
        back = clock + leg
        if back > vehicle.latest + TOLERANCE:
            feasible = False
        if vehicle.capacity is not None and load > vehicle.capacity:
            feasible = False
        # Leaving later keeps every service start and spares the wait before the first job.
        first_leg = float(travel[vehicle.start, jobs[sequence[0]].location])
        departure = max(vehicle.earliest, stops[0].start - first_leg)
        stops[0] = Stop(stops[0].job, departure + first_leg, stops[0].start, stops[0].departure)
        routes.append(Route(vehicle.id, departure, tuple(stops), back, distance))
    unassigned = tuple(job.id for job in problem.jobs if job.id not in served)
    return Plan(
        name=problem.name,
        routes=tuple(routes),
        unassigned=unassigned,
        travel=math.fsum(route.travel for route in routes),
        feasible=feasible and not unassigned,
        seconds=seconds,
    )
