"""May this technician be offered this order? Pure; the reasons are stable strings."""

from __future__ import annotations

from datetime import datetime

from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView
from matching.scoring import haversine_m

SUSPENDED = "suspended"
OFFLINE = "offline"
BUSY = "busy"
STALE_POSITION = "stale_position"
EXCLUDED = "excluded_by_customer"
NO_CERTIFICATION = "no_certification"
CERTIFICATION_UNVERIFIED = "certification_unverified"
CERTIFICATION_NOT_YET_VALID = "certification_not_yet_valid"
CERTIFICATION_EXPIRED = "certification_expired"
AT_CAPACITY = "at_capacity"
OUT_OF_RANGE = "out_of_range"
RESERVED = "reserved_for_emergencies"


def radius_m(order: OrderView, tech: TechnicianView, config: MatchingConfig) -> float:
    """The order's radius wins over the station's, which wins over the default."""
    if order.service_radius_m is not None:
        return order.service_radius_m
    if tech.service_radius_m is not None:
        return tech.service_radius_m
    return config.default_radius_m


def _valid(cert: CertificationView, now: datetime) -> bool:
    return (
        cert.verified
        and (cert.valid_from is None or cert.valid_from <= now)
        and (cert.valid_until is None or now < cert.valid_until)
    )


def certified_kinds(tech: TechnicianView, now: datetime) -> frozenset[str]:
    """The kinds `tech` may work on at `now`."""
    return frozenset(c.kind for c in tech.certifications if _valid(c, now))


def certification_reason(skill: str, tech: TechnicianView, now: datetime) -> str | None:
    """None if `tech` holds a verified certification of `skill` valid at `now`."""
    certs = [c for c in tech.certifications if c.kind == skill]
    if not certs:
        return NO_CERTIFICATION
    verified = [c for c in certs if c.verified]
    if not verified:
        return CERTIFICATION_UNVERIFIED
    if any(_valid(c, now) for c in verified):
        return None
    # Report the most hopeful failure: a certificate about to start beats an expired one.
    if any(c.valid_from is not None and now < c.valid_from for c in verified):
        return CERTIFICATION_NOT_YET_VALID
    return CERTIFICATION_EXPIRED


def technician_reason(tech: TechnicianView, now: datetime, config: MatchingConfig) -> str | None:
    """The checks that do not depend on the order: status and position freshness."""
    if tech.status == "suspended":
        return SUSPENDED
    if tech.status == "offline":
        return OFFLINE
    if tech.status != "online":
        return BUSY
    if (now - tech.last_seen_at).total_seconds() > config.stale_after_s:
        return STALE_POSITION
    return None


def ineligibility_reason(
    order: OrderView, tech: TechnicianView, now: datetime, config: MatchingConfig
) -> str | None:
    """None if `tech` may be offered `order` at `now`, else the first failing rule."""
    reason = technician_reason(tech, now, config)
    if reason is not None:
        return reason
    if tech.id in order.excluded_technicians:
        return EXCLUDED
    reason = certification_reason(order.skill, tech, now)
    if reason is not None:
        return reason
    if tech.active_jobs >= tech.max_jobs:
        return AT_CAPACITY
    if tech.reserved and order.priority != "emergency":
        return RESERVED
    if haversine_m(tech.lon, tech.lat, order.lon, order.lat) > radius_m(order, tech, config):
        return OUT_OF_RANGE
    return None


def is_eligible(
    order: OrderView, tech: TechnicianView, now: datetime, config: MatchingConfig
) -> bool:
    return ineligibility_reason(order, tech, now, config) is None
