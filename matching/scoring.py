"""Distances, ETAs and the cost of sending one technician to one order.

Cost is in seconds: the ETA (for a technician finishing a job, from when he is free: `free_in_s`
plus the drive from that job), plus or minus what reputation, fairness and current load are
worth in seconds (weights in MatchingConfig), plus what the job would cost the technician's
planned visits of the day (`plan_cost`). Lower is better.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from matching.model import MatchingConfig, OrderView, TechnicianView

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def haversine_m_np(lon1, lat1, lon2, lat2) -> np.ndarray:
    """haversine_m over arrays."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def eta_s(distance_m: float, config: MatchingConfig) -> float:
    """Travel time over roads, approximated as great-circle distance times the detour factor."""
    return distance_m * config.detour_factor / (config.speed_kmh / 3.6)


def reputation(tech: TechnicianView, config: MatchingConfig) -> float:
    if tech.rating <= 0:
        return config.reputation_prior
    return min(5.0, max(1.0, tech.rating))


def idle_s(tech: TechnicianView, now: datetime) -> float:
    if tech.idle_since is None:
        return 0.0
    return max(0.0, (now - tech.idle_since).total_seconds())


def plan_cost(order: OrderView, tech: TechnicianView, now: datetime, config: MatchingConfig,
              eta: float | None = None) -> float:
    """What taking `order` now costs his planned visits, in seconds (0 without a plan).

    He goes to the order (`eta`), serves it (`order.service_s`), then on to his next planned
    visit instead of straight there. Each planned visit pushed past its window's end costs the
    seconds late and `slip_visit_s`; the delay is carried to every later visit unabsorbed (his
    waits between visits would absorb some: an upper bound). Before an emergency those count
    `emergency_plan_weight`; other orders also pay for the extra travel (`detour_weight`).
    """
    if not tech.planned:
        return 0.0
    if eta is None:
        eta = eta_s(haversine_m(tech.lon, tech.lat, order.lon, order.lat), config)
    first = tech.planned[0]
    onward = eta_s(haversine_m(order.lon, order.lat, first.lon, first.lat), config)
    direct = eta_s(haversine_m(tech.lon, tech.lat, first.lon, first.lat), config)
    delay = (now + timedelta(seconds=eta + order.service_s + onward) - first.arrival).total_seconds()
    late_s, late = 0.0, 0
    if delay > 0:
        for visit in tech.planned:
            over = (visit.arrival - visit.latest).total_seconds() + delay
            if over > 0:
                late_s += over
                late += 1
    slips = config.slip_weight * late_s + config.slip_visit_s * late
    if order.priority == "emergency":
        return config.emergency_plan_weight * slips
    return slips + config.detour_weight * max(0.0, eta + onward - direct)


def cost(order: OrderView, tech: TechnicianView, now: datetime, config: MatchingConfig) -> float:
    """Seconds-equivalent cost of offering `order` to `tech`; lower is better.

    For an emergency only getting there (and, a little, his planned visits) counts: reputation
    and fairness are left out.
    """
    eta = eta_s(haversine_m(tech.lon, tech.lat, order.lon, order.lat), config) + tech.free_in_s
    load = config.load_penalty_s * tech.active_jobs
    plan = plan_cost(order, tech, now, config, eta)
    if order.priority == "emergency":
        return config.eta_weight * eta + load + plan
    rep = config.reputation_weight_s * (config.reputation_prior - reputation(tech, config))
    fair = config.fairness_weight_s * min(1.0, idle_s(tech, now) / config.fairness_horizon_s)
    return config.eta_weight * eta + rep - fair + load + plan


def costs_np(
    orders: list[OrderView],
    techs: list[TechnicianView],
    order_idx: np.ndarray,
    tech_idx: np.ndarray,
    distance_m: np.ndarray,
    now: datetime,
    config: MatchingConfig,
) -> np.ndarray:
    """`cost` for many (orders[order_idx[i]], techs[tech_idx[i]]) pairs at once."""
    rating, idle, jobs, free_in = np.array(
        [(reputation(t, config), idle_s(t, now), t.active_jobs, t.free_in_s) for t in techs], dtype=float
    ).reshape(-1, 4).T
    rep = config.reputation_weight_s * (config.reputation_prior - rating)
    fair = config.fairness_weight_s * np.minimum(1.0, idle / config.fairness_horizon_s)
    emergency = np.array([o.priority == "emergency" for o in orders], dtype=bool)[order_idx]
    eta = distance_m * config.detour_factor / (config.speed_kmh / 3.6) + free_in[tech_idx]
    extra = np.where(emergency, 0.0, rep[tech_idx] - fair[tech_idx])
    out = config.eta_weight * eta + extra + config.load_penalty_s * jobs[tech_idx]
    planned = [i for i, t in enumerate(techs) if t.planned]
    for k in np.flatnonzero(np.isin(tech_idx, planned)) if planned else ():
        out[k] += plan_cost(orders[order_idx[k]], techs[tech_idx[k]], now, config, float(eta[k]))
    return out
