"""Simulator scenarios: JSON in and out, validation, and a seeded generator.

Format (unknown fields are ignored):
    {"speed_kmh": 25, "detour_factor": 1.3, "seed": 7, "acceptance_rate": 1,
     "technicians": [{"id", "lon", "lat", "skills": [...], "rating", "max_jobs", "acceptance_rate"}],
     "orders": [{"id", "t_s", "lon", "lat", "skill", "priority", "service_min", "sla_min"}],
     "history": [... as orders ...]}
`rating` (default 0: unrated), `max_jobs` (default 1), `priority` (default: "emergency" for
the emergency skill, else "routine"), `speed_kmh`, `detour_factor` and `seed` are optional.
`acceptance_rate` (0-1, default 1) is the chance that a technician accepts an offer; a
technician's own value overrides the scenario's. `history` (optional) holds past orders of the
same city, their `t_s` on the same clock of the day: the look-ahead values learn from them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matching.model import PRIORITIES, SKILLS


class ScenarioError(ValueError):
    """A malformed scenario; the message names the field, e.g. `orders[3].lat: out of range`."""


@dataclass(frozen=True, slots=True)
class TechnicianSpec:
    id: str
    lon: float
    lat: float
    skills: tuple[str, ...]
    rating: float = 0.0
    max_jobs: int = 1
    acceptance_rate: float | None = None  # None: the scenario's


@dataclass(frozen=True, slots=True)
class OrderSpec:
    id: str
    t_s: float  # seconds after the start of the scenario
    lon: float
    lat: float
    skill: str
    priority: str
    service_min: float
    sla_min: float  # from creation to the technician's arrival


@dataclass(frozen=True, slots=True)
class Scenario:
    technicians: tuple[TechnicianSpec, ...]
    orders: tuple[OrderSpec, ...]
    speed_kmh: float = 25.0
    detour_factor: float = 1.3
    seed: int | None = None
    acceptance_rate: float = 1.0
    history: tuple[OrderSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.history:
            del data["history"]
        for tech in data["technicians"]:
            tech["skills"] = list(tech["skills"])
            if tech["acceptance_rate"] is None:
                del tech["acceptance_rate"]
        return data

    def acceptance_of(self, tech: TechnicianSpec) -> float:
        return self.acceptance_rate if tech.acceptance_rate is None else tech.acceptance_rate


def _number(item: dict, key: str, where: str, *, lo: float, hi: float, required: bool = True,
            default: float = 0.0) -> float:
    if key not in item:
        if required:
            raise ScenarioError(f"{where}.{key}: missing")
        return default
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}.{key}: not a number")
    if not lo <= value <= hi:
        raise ScenarioError(f"{where}.{key}: out of range [{lo}, {hi}]")
    return float(value)


def _string(item: dict, key: str, where: str, choices: tuple[str, ...] | None = None) -> str:
    if key not in item:
        raise ScenarioError(f"{where}.{key}: missing")
    value = item[key]
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}.{key}: not a non-empty string")
    if choices is not None and value not in choices:
        raise ScenarioError(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _objects(data: dict, key: str) -> list[dict]:
    items = data.get(key)
    if not isinstance(items, list):
        raise ScenarioError(f"{key}: missing or not a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ScenarioError(f"{key}[{i}]: not an object")
    return items


def _unique(ids: list[str], key: str) -> None:
    seen: set[str] = set()
    for i, id_ in enumerate(ids):
        if id_ in seen:
            raise ScenarioError(f"{key}[{i}].id: duplicate {id_!r}")
        seen.add(id_)


def _orders(data: dict, key: str) -> list[OrderSpec]:
    orders = []
    for i, item in enumerate(_objects(data, key)):
        where = f"{key}[{i}]"
        skill = _string(item, "skill", where, SKILLS)
        priority = (
            _string(item, "priority", where, PRIORITIES)
            if "priority" in item
            else ("emergency" if skill == "emergency" else "routine")
        )
        orders.append(OrderSpec(
            id=_string(item, "id", where),
            t_s=_number(item, "t_s", where, lo=0, hi=math.inf),
            lon=_number(item, "lon", where, lo=-180, hi=180),
            lat=_number(item, "lat", where, lo=-90, hi=90),
            skill=skill,
            priority=priority,
            service_min=_number(item, "service_min", where, lo=0, hi=24 * 60),
            sla_min=_number(item, "sla_min", where, lo=1, hi=7 * 24 * 60),
        ))
    _unique([o.id for o in orders], key)
    return orders


def parse(data: Any) -> Scenario:
    """Validate decoded JSON into a Scenario or raise ScenarioError."""
    if not isinstance(data, dict):
        raise ScenarioError("scenario: not a JSON object")
    techs = []
    for i, item in enumerate(_objects(data, "technicians")):
        where = f"technicians[{i}]"
        skills = item.get("skills")
        if not isinstance(skills, list) or not skills:
            raise ScenarioError(f"{where}.skills: missing or not a non-empty list")
        for skill in skills:
            if skill not in SKILLS:
                raise ScenarioError(f"{where}.skills: {skill!r} is not one of {', '.join(SKILLS)}")
        max_jobs = _number(item, "max_jobs", where, lo=1, hi=100, required=False, default=1)
        if max_jobs != int(max_jobs):
            raise ScenarioError(f"{where}.max_jobs: not an integer")
        techs.append(TechnicianSpec(
            id=_string(item, "id", where),
            lon=_number(item, "lon", where, lo=-180, hi=180),
            lat=_number(item, "lat", where, lo=-90, hi=90),
            skills=tuple(dict.fromkeys(skills)),
            rating=_number(item, "rating", where, lo=0, hi=5, required=False),
            max_jobs=int(max_jobs),
            acceptance_rate=(_number(item, "acceptance_rate", where, lo=0, hi=1)
                             if "acceptance_rate" in item else None),
        ))
    orders = _orders(data, "orders")
    history = _orders(data, "history") if "history" in data else []
    _unique([t.id for t in techs], "technicians")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ScenarioError("seed: not an integer")
    return Scenario(
        technicians=tuple(techs),
        orders=tuple(sorted(orders, key=lambda o: (o.t_s, o.id))),
        speed_kmh=_number(data, "speed_kmh", "scenario", lo=1, hi=200, required=False, default=25),
        detour_factor=_number(data, "detour_factor", "scenario", lo=1, hi=5, required=False,
                              default=1.3),
        seed=seed,
        acceptance_rate=_number(data, "acceptance_rate", "scenario", lo=0, hi=1, required=False, default=1),
        history=tuple(sorted(history, key=lambda o: (o.t_s, o.id))),
    )


def load(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    return parse(data)


# The generated city: a 26 x 26 km square around central Beijing, clock starting at 07:00.
CENTER = (116.40, 39.90)
HALF_SPAN_DEG = (0.152, 0.117)  # ~13 km each way
START_HOUR = 7.0
PEAKS = ((9.0, 1.2, 1.5), (18.5, 1.2, 1.2))  # (hour, sigma h, height over the base rate)
SKILL_MIX = {"repair": 0.45, "inspection": 0.35, "installation": 0.12, "emergency": 0.08}
SERVICE_MIN = {"repair": (30, 70), "inspection": (20, 40), "installation": (60, 120),
               "emergency": (30, 60)}
SLA_MIN = {"emergency": 45.0, "urgent": 120.0, "routine": 240.0}
URGENT_SHARE = 0.15
HOTSPOTS = 4
HOTSPOT_SHARE = 0.7  # the rest of demand is spread evenly
HOTSPOT_SIGMA_KM = 1.5


def _rate(hour_of_day: np.ndarray) -> np.ndarray:
    rate = np.ones_like(hour_of_day)
    for peak, sigma, height in PEAKS:
        rate += height * np.exp(-0.5 * ((hour_of_day - peak) / sigma) ** 2)
    return rate


def generate(technicians: int, orders: int, hours: float, seed: int, acceptance_rate: float = 1.0,
             history_days: int = 0) -> Scenario:
    """A seeded city day: demand clustered around a few hot spots (old estates, industrial
    parks) with morning and evening peaks; technicians spread evenly over the city. With
    `history_days`, as many earlier days of the same city (same hot spots, other draws) make
    the scenario's history, their order ids prefixed `h<day>-`."""
    if technicians < 1 or orders < 0 or hours <= 0 or not 0 <= acceptance_rate <= 1 or history_days < 0:
        raise ScenarioError("generate: need technicians >= 1, orders >= 0, hours > 0, 0 <= acceptance_rate <= 1,"
                            " history_days >= 0")
    rng = np.random.default_rng(seed)
    (lon0, lat0), (dlon, dlat) = CENTER, HALF_SPAN_DEG

    def uniform_points(n: int, r: np.random.Generator = rng) -> np.ndarray:
        return np.column_stack([lon0 + r.uniform(-dlon, dlon, n), lat0 + r.uniform(-dlat, dlat, n)])

    techs = []
    for i, (lon, lat) in enumerate(uniform_points(technicians)):
        skills = ["repair", "inspection"]
        if rng.random() < 0.4:
            skills.append("installation")
        if rng.random() < 0.35:
            skills.append("emergency")
        rating = float(np.clip(rng.normal(4.6, 0.25), 3.5, 5.0))
        techs.append(TechnicianSpec(f"t{i}", round(float(lon), 6), round(float(lat), 6),
                                    tuple(skills), round(rating, 2), 1))

    # Arrival times by rejection sampling from the daily rate profile.
    horizon_s = hours * 3600
    peak_rate = float(_rate(np.linspace(0, 24, 2401)).max())

    def arrival_times(r: np.random.Generator) -> list[float]:
        times: list[float] = []
        while len(times) < orders:
            t = r.uniform(0, horizon_s, 2 * orders + 16)
            keep = r.uniform(0, peak_rate, t.size) < _rate((START_HOUR + t / 3600) % 24)
            times.extend(t[keep].tolist())
        return sorted(times[:orders])

    times = arrival_times(rng)
    centres = uniform_points(HOTSPOTS)
    centres[:, 0] = lon0 + (centres[:, 0] - lon0) * 0.7  # hot spots away from the edge
    centres[:, 1] = lat0 + (centres[:, 1] - lat0) * 0.7
    weights = rng.dirichlet(np.full(HOTSPOTS, 2.0))
    km_lat = 1 / 111.2
    km_lon = km_lat / math.cos(math.radians(lat0))
    skills, shares = list(SKILL_MIX), list(SKILL_MIX.values())

    def day_orders(r: np.random.Generator, times: list[float], prefix: str) -> list[OrderSpec]:
        out = []
        for i, t in enumerate(times):
            if r.random() < HOTSPOT_SHARE:
                c = centres[r.choice(HOTSPOTS, p=weights)]
                lon = float(np.clip(c[0] + r.normal(0, HOTSPOT_SIGMA_KM) * km_lon, lon0 - dlon, lon0 + dlon))
                lat = float(np.clip(c[1] + r.normal(0, HOTSPOT_SIGMA_KM) * km_lat, lat0 - dlat, lat0 + dlat))
            else:
                lon, lat = (float(v) for v in uniform_points(1, r)[0])
            skill = str(r.choice(skills, p=shares))
            if skill == "emergency":
                priority = "emergency"
            else:
                priority = "urgent" if r.random() < URGENT_SHARE else "routine"
            lo, hi = SERVICE_MIN[skill]
            out.append(OrderSpec(f"{prefix}{i}", round(t, 1), round(lon, 6), round(lat, 6), skill, priority,
                                 round(float(r.uniform(lo, hi)), 1), SLA_MIN[priority]))
        return out

    out = day_orders(rng, times, "o")
    history = []
    for d in range(1, history_days + 1):
        r = np.random.default_rng([seed, d])  # the same city on another day
        history += day_orders(r, arrival_times(r), f"h{d}-o")
    history.sort(key=lambda o: (o.t_s, o.id))
    return Scenario(tuple(techs), tuple(out), 25.0, 1.3, seed, acceptance_rate, tuple(history))
