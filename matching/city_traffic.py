"""Drives through a simulated city, to measure travel-time models against. Pure and seeded.

Geography, demand and the clock are the simulator's (`scenario.generate`: the 26 km square
around central Beijing, demand in hot spots with morning and evening peaks, 07:00 to 21:00); each
order is reached from the home of one of the three technicians nearest to it, or, for a
technician coming from another job, from anywhere in the city. What the distance model
(distance x detour / speed) cannot see decides the time:
- districts (the ETA model's grid cells) drive at their own speed, slower towards the centre,
  and cost their own time from the kerb to the door (old estates: finding the building, stairs);
- weekday rush hours (around 08:15 and 18:00) slow every drive, a weekend afternoon a little;
- an emergency drives faster, an installation carries equipment up;
- every drive has its own detour and luck (log-normal noise).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np

from matching.eta import Trip, TripFeatures, district_of
from matching.scenario import CENTER, HALF_SPAN_DEG, START_HOUR, generate
from matching.scoring import haversine_m

BASE_SPEED_KMH = 28.0
BASE_DETOUR = 1.25
KIND_OF_SKILL = {"repair": "repair", "inspection": "inspection", "installation": "installation",
                 "emergency": "emergency_leak"}
KIND_SPEED = {"emergency_leak": 1.2}
KIND_EXTRA_S = {"installation": 120.0}
FROM_ANOTHER_JOB = 0.3
NEAREST = 3
DAY_HOURS = 14.0


class CityTraffic:
    """Per-district speed and kerb-to-door time, drawn once per seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._speed: dict[str, float] = {}
        self._door_s: dict[str, float] = {}

    def _district(self, lon: float, lat: float) -> tuple[float, float]:
        key = district_of(lon, lat)
        if key not in self._speed:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
            # 0 at the centre, 1 at the edge of the square.
            edge = min(1.0, math.hypot((lon - CENTER[0]) / HALF_SPAN_DEG[0], (lat - CENTER[1]) / HALF_SPAN_DEG[1]))
            self._speed[key] = (0.6 + 0.6 * edge) * float(rng.lognormal(0, 0.2))
            self._door_s[key] = float(rng.uniform(240, 540) if rng.random() < 0.3 else rng.uniform(60, 180))
        return self._speed[key], self._door_s[key]

    def duration_s(self, rng: np.random.Generator, start: tuple[float, float], end: tuple[float, float],
                   hour: float, weekday: int, kind: str) -> float:
        """One drive from `start` to the door at `end`, setting out at `hour` (local, fractional)."""
        start_speed, _ = self._district(*start)
        end_speed, door_s = self._district(*end)
        road_m = haversine_m(*start, *end) * BASE_DETOUR * float(rng.lognormal(0, 0.1))
        speed_kmh = BASE_SPEED_KMH * (start_speed + end_speed) / 2 * rush(hour, weekday) * KIND_SPEED.get(kind, 1.0)
        drive_s = road_m / (speed_kmh / 3.6) * float(rng.lognormal(0, 0.15))
        return drive_s + door_s * float(rng.lognormal(0, 0.25)) + KIND_EXTRA_S.get(kind, 0.0)


def rush(hour: float, weekday: int) -> float:
    """Speed as a share of free flow at a local hour."""
    if weekday >= 5:
        return 1.0 - 0.15 * math.exp(-0.5 * ((hour - 15.0) / 2.5) ** 2)
    return 1.0 - 0.45 * math.exp(-0.5 * ((hour - 8.25) / 0.75) ** 2) - 0.4 * math.exp(-0.5 * ((hour - 18.0) / 1.0) ** 2)


def generate_trips(days: int, orders_per_day: int, seed: int, *, technicians: int = 40,
                   on_day: Callable[[int], None] | None = None) -> list[Trip]:
    """`days` simulated days from a Monday, each a generated scenario of its own; every order
    becomes one drive."""
    traffic = CityTraffic(seed)
    rng = np.random.default_rng(seed)
    (lon0, lat0), (dlon, dlat) = CENTER, HALF_SPAN_DEG
    trips: list[Trip] = []
    for day in range(days):
        scenario = generate(technicians, orders_per_day, DAY_HOURS, seed * 1000 + day)
        homes = np.array([(t.lon, t.lat) for t in scenario.technicians])
        weekday = day % 7
        for order in scenario.orders:
            if rng.random() < FROM_ANOTHER_JOB:
                start = (float(lon0 + rng.uniform(-dlon, dlon)), float(lat0 + rng.uniform(-dlat, dlat)))
            else:
                nearest = np.argsort(np.hypot(homes[:, 0] - order.lon, homes[:, 1] - order.lat))[:NEAREST]
                start = tuple(float(v) for v in homes[rng.choice(nearest)])
            end = (order.lon, order.lat)
            hour = START_HOUR + order.t_s / 3600
            kind = KIND_OF_SKILL[order.skill]
            features = TripFeatures(haversine_m(*start, *end), int(hour) % 24, weekday, district_of(*end), kind)
            trips.append(Trip(features, traffic.duration_s(rng, start, end, hour, weekday, kind)))
        if on_day is not None:
            on_day(day + 1)
    return trips
