from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView
import numpy as np

from matching.scoring import cost, costs_np, eta_s, haversine_m, haversine_m_np

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CONFIG = MatchingConfig()
ORDER = OrderView("o1", 116.40, 39.90, "repair", "routine", NOW, NOW + timedelta(hours=4))
TECH = TechnicianView(
    "t1", 116.40, 39.92, "online", (CertificationView("repair", True),), 0, 1, 4.5, NOW, None, None
)


def test_haversine_matches_a_known_distance():
    # Beijing Capital Airport to Tiananmen, ~25.6 km as the crow flies.
    assert haversine_m(116.5975, 40.0799, 116.3975, 39.9087) == pytest.approx(25_600, rel=0.01)
    assert haversine_m(116.4, 39.9, 116.4, 39.9) == 0.0


def test_eta_applies_the_detour_factor_and_speed():
    assert eta_s(10_000, MatchingConfig(detour_factor=1.3, speed_kmh=25)) == pytest.approx(1872.0)


def test_technician_at_the_prior_rating_idle_just_now_costs_his_eta():
    distance = haversine_m(TECH.lon, TECH.lat, ORDER.lon, ORDER.lat)
    assert cost(ORDER, TECH, NOW, CONFIG) == pytest.approx(eta_s(distance, CONFIG))


def test_higher_rating_lowers_cost():
    assert cost(ORDER, replace(TECH, rating=4.9), NOW, CONFIG) < cost(ORDER, TECH, NOW, CONFIG)
    assert cost(ORDER, replace(TECH, rating=3.9), NOW, CONFIG) > cost(ORDER, TECH, NOW, CONFIG)


def test_unrated_technician_counts_as_the_prior():
    assert cost(ORDER, replace(TECH, rating=0), NOW, CONFIG) == cost(ORDER, TECH, NOW, CONFIG)


def test_longer_idle_lowers_cost_until_the_horizon():
    def idle(minutes):
        return cost(ORDER, replace(TECH, idle_since=NOW - timedelta(minutes=minutes)), NOW, CONFIG)

    assert idle(30) < idle(5) < cost(ORDER, TECH, NOW, CONFIG)
    assert idle(60) == idle(600)


def test_jobs_in_hand_raise_cost():
    busy = replace(TECH, active_jobs=1, max_jobs=2)
    assert cost(ORDER, busy, NOW, CONFIG) == pytest.approx(
        cost(ORDER, TECH, NOW, CONFIG) + CONFIG.load_penalty_s
    )


def test_emergency_cost_ignores_reputation_and_fairness():
    emergency = replace(ORDER, priority="emergency")
    star = replace(TECH, rating=5.0, idle_since=NOW - timedelta(hours=2))
    assert cost(emergency, star, NOW, CONFIG) == cost(emergency, TECH, NOW, CONFIG)


def test_vectorised_costs_match_the_scalar_cost():
    techs = [TECH, replace(TECH, id="t2", lat=39.95, rating=4.9, idle_since=NOW - timedelta(minutes=20)),
             replace(TECH, id="t3", lon=116.5, rating=0, active_jobs=1, max_jobs=2)]
    orders = [ORDER, replace(ORDER, id="o2", priority="emergency", lon=116.45)]
    oi, ti = np.repeat([0, 1], 3), np.tile([0, 1, 2], 2)
    distance = haversine_m_np([techs[j].lon for j in ti], [techs[j].lat for j in ti],
                              [orders[i].lon for i in oi], [orders[i].lat for i in oi])
    expected = [cost(orders[i], techs[j], NOW, CONFIG) for i, j in zip(oi, ti)]
    assert costs_np(orders, techs, oi, ti, distance, NOW, CONFIG) == pytest.approx(expected)
