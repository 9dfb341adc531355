"""Plain, frozen views the matching core works on.

The live engine builds them from PostgreSQL rows and Redis positions, the simulator from a
scenario; nothing here knows where they came from. Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

TechnicianStatus = Literal["online", "busy", "offline", "suspended"]
Priority = Literal["emergency", "urgent", "routine"]
SKILLS = ("repair", "inspection", "installation", "emergency")
PRIORITIES = ("emergency", "urgent", "routine")


@dataclass(frozen=True, slots=True)
class CertificationView:
    kind: str
    verified: bool
    valid_from: datetime | None = None  # None: valid since forever
    valid_until: datetime | None = None  # None: never expires


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    """A booked visit of his day plan still ahead of him (scheduling's day planner): where, when
    he is planned to arrive, and the end of the customer's window."""

    lon: float
    lat: float
    arrival: datetime
    latest: datetime


@dataclass(frozen=True, slots=True)
class TechnicianView:
    id: str
    lon: float
    lat: float
    status: TechnicianStatus
    certifications: tuple[CertificationView, ...]
    active_jobs: int
    max_jobs: int
    rating: float  # smoothed reputation in [1, 5]; <= 0 means unrated (counts as the prior)
    last_seen_at: datetime
    idle_since: datetime | None = None  # None: not idle (or unknown)
    service_radius_m: float | None = None  # the station's radius, if it sets one
    reserved: bool = False  # held in his area's emergency reserve: only emergencies may take him
    planned: tuple[PlannedVisit, ...] = ()  # his booked visits still ahead today, by planned arrival
    # > 0: busy now, free in this many seconds where his job is (lon, lat): a batch may keep an
    # order for him (look-ahead) but never offers him one before he is free.
    free_in_s: float = 0.0

    @property
    def free_slots(self) -> int:
        return max(0, self.max_jobs - self.active_jobs)


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    lon: float
    lat: float
    skill: str  # the certification kind required
    priority: Priority
    created_at: datetime
    sla_deadline: datetime
    service_radius_m: float | None = None
    service_s: float = 0.0  # the visit's typical duration: how long it keeps a technician
    excluded_technicians: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Assignment:
    order_id: str
    technician_id: str
    cost: float  # scoring.cost of the pair, without batch waiting boosts
    eta_s: float
    distance_m: float  # great-circle, before the detour factor


@dataclass(frozen=True, slots=True)
class MatchingConfig:
    """Tunables. Cost is in seconds of ETA so every weight reads as "worth N seconds"."""

    detour_factor: float = 1.3  # road distance / great-circle distance
    speed_kmh: float = 25.0
    stale_after_s: float = 60.0  # a position older than this is not trusted
    default_radius_m: float = 15_000.0  # when neither order nor station sets one
    eta_weight: float = 1.0
    reputation_prior: float = 4.5  # a technician at the prior costs nothing extra
    reputation_weight_s: float = 300.0  # per star above / below the prior
    fairness_weight_s: float = 120.0  # credit for an idle technician, reached at the horizon
    fairness_horizon_s: float = 3600.0
    load_penalty_s: float = 1800.0  # per job a technician already holds: he must finish it first
    wait_boost: float = 0.5  # batch: seconds of ETA one second of waiting is worth
    sla_boost_s: float = 0.0  # batch: value of an order that has used up its SLA
    urgent_boost_s: float = 900.0  # batch: extra value of serving an urgent order
    emergency_boost_s: float = 3600.0
    # Look-ahead in a batch: technicians finishing their only job within this many seconds take
    # part (where that job is), so an order one of them reaches first is kept for him.
    soon_free_s: float = 1200.0
    # How much of the look-ahead values' bonus a batch adds: at full weight they lengthened waits in
    # the simulator (bench/matching_assign.py), at a tenth they help a little.
    value_weight: float = 0.1
    # Inserting an on-demand job into a planned day (scheduling): what the planned visits lose.
    slip_weight: float = 1.0  # per second a planned visit would start after its window
    slip_visit_s: float = 900.0  # per planned visit that would miss its window
    detour_weight: float = 0.5  # per second of extra travel before his next planned visit
    emergency_plan_weight: float = 0.1  # an emergency outranks the plan: its slips count a tenth
