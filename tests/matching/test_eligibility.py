from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from matching import eligibility as e
from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CONFIG = MatchingConfig(default_radius_m=10_000, stale_after_s=60)
# ~0.009 degrees of latitude is 1 km.
ORDER = OrderView("o1", 116.40, 39.90, "repair", "routine", NOW, NOW + timedelta(hours=4))
CERT = CertificationView("repair", True, NOW - timedelta(days=30), NOW + timedelta(days=30))
TECH = TechnicianView("t1", 116.40, 39.91, "online", (CERT,), 0, 1, 4.7, NOW, None, None)


def reason(order=ORDER, **tech):
    return e.ineligibility_reason(order, replace(TECH, **tech), NOW, CONFIG)


def test_certified_free_nearby_technician_is_eligible():
    assert reason() is None
    assert e.is_eligible(ORDER, TECH, NOW, CONFIG)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "suspended"}, e.SUSPENDED),
        ({"status": "offline"}, e.OFFLINE),
        ({"status": "busy"}, e.BUSY),
        ({"last_seen_at": NOW - timedelta(seconds=61)}, e.STALE_POSITION),
        ({"certifications": ()}, e.NO_CERTIFICATION),
        ({"certifications": (replace(CERT, kind="inspection"),)}, e.NO_CERTIFICATION),
        ({"certifications": (replace(CERT, verified=False),)}, e.CERTIFICATION_UNVERIFIED),
        ({"certifications": (replace(CERT, valid_until=NOW - timedelta(days=1)),)},
         e.CERTIFICATION_EXPIRED),
        ({"certifications": (replace(CERT, valid_from=NOW + timedelta(days=1)),)},
         e.CERTIFICATION_NOT_YET_VALID),
        ({"active_jobs": 1}, e.AT_CAPACITY),
        ({"lat": 39.90 + 0.091}, e.OUT_OF_RANGE),  # ~10.1 km north
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_ineligible_technician_is_excluded_with_its_reason(change, expected):
    assert reason(**change) == expected
    assert not e.is_eligible(ORDER, replace(TECH, **change), NOW, CONFIG)


def test_technician_excluded_by_the_customer_is_not_offered():
    order = replace(ORDER, excluded_technicians=frozenset({"t1"}))
    assert reason(order) == e.EXCLUDED


def test_certificate_expiring_exactly_now_no_longer_counts():
    assert reason(certifications=(replace(CERT, valid_until=NOW),)) == e.CERTIFICATION_EXPIRED


def test_certificate_starting_exactly_now_counts():
    assert reason(certifications=(replace(CERT, valid_from=NOW),)) is None


def test_open_ended_certificate_counts():
    assert reason(certifications=(CertificationView("repair", True),)) is None


def test_one_valid_certificate_among_expired_ones_is_enough():
    expired = replace(CERT, valid_until=NOW - timedelta(days=1))
    assert reason(certifications=(expired, replace(CERT, verified=False), CERT)) is None


def test_position_exactly_at_the_staleness_limit_is_still_fresh():
    assert reason(last_seen_at=NOW - timedelta(seconds=60)) is None


def test_technician_with_a_free_slot_among_several_is_eligible():
    assert reason(active_jobs=1, max_jobs=2) is None


def test_station_radius_replaces_the_default():
    assert reason(lat=39.90 + 0.045, service_radius_m=4_000) == e.OUT_OF_RANGE  # ~5 km
    assert reason(lat=39.90 + 0.091, service_radius_m=12_000) is None


def test_order_radius_wins_over_the_station_radius():
    order = replace(ORDER, service_radius_m=2_000)
    assert reason(order, lat=39.90 + 0.027, service_radius_m=12_000) == e.OUT_OF_RANGE  # ~3 km


def test_a_reserved_technician_takes_emergencies_only():
    assert reason(reserved=True) == e.RESERVED
    emergency = replace(ORDER, skill="repair", priority="emergency")
    assert reason(emergency, reserved=True) is None


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_ops_console_names_every_reason_in_both_languages(language: str) -> None:
    from pathlib import Path

    from matching.candidates import RANKED_LOWER

    strings = (Path(__file__).resolve().parents[2] / "api/web/shared/i18n" / f"{language}.js").read_text(encoding="utf-8")
    slugs = [value for name, value in vars(e).items() if name.isupper() and isinstance(value, str)] + [RANKED_LOWER]
    assert [slug for slug in slugs if f'"ops.why.{slug}"' not in strings] == []
