"""Emergency readiness in the live engine: each station's service area keeps a floor of free
emergency-certified technicians (from its emergency rate and the emergency SLA) that routine
work may not take, and idle emergency technicians elsewhere get a
hint to move towards areas below their floor. The rules are pure, in matching/escalation.py.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from geoalchemy2.shape import to_shape
from shapely.geometry import Point
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.fanout import account_channel, push_after_commit
from dispatch import queries
from matching.eligibility import certified_kinds, technician_reason
from matching.escalation import EMERGENCY_SKILL, reposition_hints, reserve_floor
from matching.model import MatchingConfig, TechnicianView
from matching.scoring import haversine_m


@dataclass(frozen=True)
class Area:
    station_id: str
    name: str
    polygon: object  # shapely Polygon
    centre: tuple[float, float]
    floor: int


async def areas(session: AsyncSession, now: datetime, city_id: str | None = None) -> list[Area]:
    """The city's station areas with their floors (the configured city unless named); an area
    without emergencies keeps none."""
    settings = get_settings()
    since = now - timedelta(days=settings.reserve_history_days)
    stations = await queries.stations_in(session, city_id or settings.city)
    out = []
    for station in stations:
        count = await queries.emergencies_in_area(session, station.id, since)
        rate = count / (settings.reserve_history_days * 24)
        polygon = to_shape(station.service_area)
        centre = polygon.centroid
        out.append(Area(str(station.id), station.name, polygon, (centre.x, centre.y),
                        reserve_floor(rate, settings.sla_emergency_min, settings.reserve_cover_probability)))
    return out


def _free_emergency(techs: Sequence[TechnicianView], now: datetime, config: MatchingConfig) -> list[TechnicianView]:
    return [t for t in techs if t.active_jobs == 0 and technician_reason(t, now, config) is None
            and EMERGENCY_SKILL in certified_kinds(t, now)]


def area_of(zones: Sequence[Area], lon: float, lat: float) -> Area | None:
    point = Point(lon, lat)
    return next((a for a in zones if a.polygon.covers(point)), None)  # type: ignore[attr-defined]


def reserved(zones: Sequence[Area], techs: Sequence[TechnicianView], now: datetime,
             config: MatchingConfig) -> set[str]:
    """The free emergency technicians each area keeps: its floor, those nearest its centre."""
    by_area: dict[str, list[tuple[float, str]]] = {}
    for tech in _free_emergency(techs, now, config):
        area = area_of(zones, tech.lon, tech.lat)
        if area is not None and area.floor > 0:
            by_area.setdefault(area.station_id, []).append((haversine_m(tech.lon, tech.lat, *area.centre), tech.id))
    floors = {a.station_id: a.floor for a in zones}
    return {tid for station, ranked in by_area.items() for _, tid in sorted(ranked)[:floors[station]]}


def hold_reserve(techs: Sequence[TechnicianView], keep: set[str]) -> list[TechnicianView]:
    """The reserved technicians marked: routine work may not take them."""
    return [replace(t, reserved=True) if t.id in keep else t for t in techs]


async def hint_repositioning(session: AsyncSession, zones: Sequence[Area], techs: Sequence[TechnicianView],
                             now: datetime, config: MatchingConfig) -> set[str]:
    """Idle emergency technicians in areas above their floor (or outside every area) are told,
    after the commit, to move towards an area below its floor: a hint, not an offer. Returns
    the technicians hinted."""
    free = _free_emergency(techs, now, config)
    homes = [(t, area_of(zones, t.lon, t.lat)) for t in free]
    counts: dict[str, int] = {}
    for _, home in homes:
        if home is not None:
            counts[home.station_id] = counts.get(home.station_id, 0) + 1
    floors = {a.station_id: a.floor for a in zones if a.floor > 0}
    by_id = {a.station_id: a for a in zones}
    hints = reposition_hints([(t.id, home.station_id if home else None) for t, home in homes], counts, floors)
    for tech_id, station_id in hints:
        technician = await queries.find_technician(session, uuid.UUID(tech_id))
        target = by_id[station_id]
        if technician is not None:
            push_after_commit(session, account_channel(technician.account_id), "reposition", reason="emergency_cover",
                              station_id=station_id, station_name=target.name,
                              area={"type": "Point", "coordinates": [round(target.centre[0], 4), round(target.centre[1], 4)]})
    return {tech_id for tech_id, _ in hints}
