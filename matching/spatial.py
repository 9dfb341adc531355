"""In-memory technician search for the simulator and the bench (live: matching/index.py).

Points live on the unit sphere in 3-D, so the k-d tree's straight-line (chord) distance is
monotone in great-circle distance and one query answers "the k nearest within R metres".
That is exactly what the live engine's expanding-radius GEOSEARCH converges to, without
the rounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from matching.model import OrderView, TechnicianView
from matching.scoring import EARTH_RADIUS_M


def _unit_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _chord(distance_m: float) -> float:
    return 2 * math.sin(min(math.pi, distance_m / EARTH_RADIUS_M) / 2)


class PointIndex:
    """k-nearest-within-radius over bare coordinates; returns positions into the input."""

    def __init__(self, lon: np.ndarray, lat: np.ndarray):
        self.size = len(lon)
        self._tree = cKDTree(_unit_xyz(np.asarray(lon, float), np.asarray(lat, float))) if self.size else None

    def nearest_many(self, points: Sequence[tuple[float, float]], k: int, max_radius_m: float) -> list[list[int]]:
        """For each (lon, lat): up to k positions within max_radius_m, nearest first."""
        if self._tree is None or not points or k < 1:
            return [[] for _ in points]
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        k = min(k, self.size)
        # The tiny slack keeps a point exactly on the radius (float rounding aside).
        _, idx = self._tree.query(
            _unit_xyz(pts[:, 0], pts[:, 1]),
            k=list(range(1, k + 1)),
            distance_upper_bound=_chord(max_radius_m) * (1 + 1e-9),
        )
        n = self.size
        return [[j for j in row if j < n] for row in idx.tolist()]


class TechnicianIndex:
    def __init__(self, technicians: Sequence[TechnicianView]):
        self._techs = list(technicians)
        self._points = PointIndex(
            np.fromiter((t.lon for t in self._techs), float, len(self._techs)),
            np.fromiter((t.lat for t in self._techs), float, len(self._techs)),
        )

    def __len__(self) -> int:
        return len(self._techs)

    def nearest_many(
        self, points: Sequence[tuple[float, float]], k: int, max_radius_m: float
    ) -> list[list[TechnicianView]]:
        """For each (lon, lat): up to k technicians within max_radius_m, nearest first."""
        return [[self._techs[j] for j in row] for row in self._points.nearest_many(points, k, max_radius_m)]

    def nearest(self, lon: float, lat: float, k: int, max_radius_m: float) -> list[TechnicianView]:
        return self.nearest_many([(lon, lat)], k, max_radius_m)[0]

    def candidates(
        self, orders: Sequence[OrderView], k: int, max_radius_m: float
    ) -> dict[str, list[TechnicianView]]:
        """The `candidates_by_order` the assign functions take."""
        found = self.nearest_many([(o.lon, o.lat) for o in orders], k, max_radius_m)
        return {o.id: techs for o, techs in zip(orders, found, strict=True)}
