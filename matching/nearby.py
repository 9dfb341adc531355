"""Technicians free for work around one of the customer's addresses, as the customer's app shows them.

Nobody may follow a technician through this list. It is asked only around the caller's own
addresses, lists only technicians free to take work (never one on a job), and shows each at a
coarse position: his cell of a grid whose offset, and the point shown inside the cell, come
from a keyed hash of (technician, time window). Within a window every query, from any address,
sees the same point, so repeated queries cannot triangulate him; the next window draws a new
grid, so cell edges cannot be learnt either. Distances, order and membership all derive from
that point alone. Callers are rate limited per customer.
"""

import hashlib
import hmac
import math
import uuid
from dataclasses import dataclass
from datetime import datetime

from limits import RateLimitItemPerMinute
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import ratelimit
from kit.config import get_settings
from kit.errors import NotFound
from kit.geo import lonlat
from dispatch import queries
from dispatch.cities import city_at
from dispatch.technicians import certifications_of, usable_kinds
from matching.index import GeoIndex
from matching.scoring import haversine_m

CELL_M = 500.0
WINDOW_S = 1800
QUERIES_PER_MINUTE = 20
_METRES_PER_DEGREE = 111_320.0
# The live index is searched this much wider than the radius: a technician just outside it may
# show inside it, as everyone is judged by his coarse point.
_CELL_DIAGONAL_M = CELL_M * (2 * math.sqrt(2))
_CANDIDATES = 100


@dataclass(frozen=True)
class NearbyTechnician:
    id: uuid.UUID
    name: str
    station: str | None
    certifications: list[str]
    lon: float
    lat: float
    distance_m: int


def _coarsening_key() -> bytes:
    """Derived from the token secret, so every API process coarsens alike and no setting is added."""
    return hmac.new(get_settings().jwt_secret.encode(), b"matching.nearby-position", hashlib.sha256).digest()


def coarse_position(technician_id: str, lon: float, lat: float, at: datetime, key: bytes) -> tuple[float, float]:
    """The point shown for the technician during the time window holding `at`."""
    window = int(at.timestamp() // WINDOW_S)
    digest = hmac.new(key, f"{technician_id}:{window}".encode(), hashlib.sha256).digest()
    grid_x, grid_y, shown_x, shown_y = (int.from_bytes(digest[i:i + 4], "big") / 2**32 for i in range(0, 16, 4))
    cell_lat = CELL_M / _METRES_PER_DEGREE
    row = math.floor(lat / cell_lat + grid_y)
    row_south = (row - grid_y) * cell_lat
    # One cell width per row, so the same row always has the same cells.
    cell_lon = CELL_M / (_METRES_PER_DEGREE * max(math.cos(math.radians(row_south)), 0.01))
    column = math.floor(lon / cell_lon + grid_x)
    shown_lon = (column - grid_x + shown_x) * cell_lon
    shown_lat = min(90.0, row_south + shown_y * cell_lat)
    return ((shown_lon + 180.0) % 360.0) - 180.0, shown_lat


async def throttle(redis: Redis, customer_id: uuid.UUID) -> None:
    await ratelimit.take(redis, [RateLimitItemPerMinute(QUERIES_PER_MINUTE)], "nearby", str(customer_id),
                         detail="too many nearby queries; try again later")


async def free_technicians_near_address(
    session: AsyncSession, index: GeoIndex, *, customer_id: uuid.UUID, address_id: uuid.UUID,
    kind: str | None, limit: int, now: datetime,
) -> list[NearbyTechnician]:
    """Certified technicians free for work around the customer's address, nearest first."""
    address = await queries.find_address(session, address_id)
    if address is None or address.customer_id != customer_id:
        raise NotFound("no such address")
    lon, lat = lonlat(address.location) or (0.0, 0.0)
    settings = get_settings()
    live = await index.nearby(await city_at(session, address.location), lon, lat, k=_CANDIDATES,
                              max_radius_m=settings.default_service_radius_m + _CELL_DIAGONAL_M)
    free = [t for t in live if t.status == "online" and t.active_jobs < t.max_jobs]
    techs = {t.id: t for t in await queries.online_technicians(session, [uuid.UUID(t.id) for t in free])}
    stations = await queries.station_names(session)
    key = _coarsening_key()
    out = []
    for item in free:
        tech = techs.get(uuid.UUID(item.id))
        if tech is None:
            continue
        # Rounded before measuring: the distance is the one of the point shown, to the metre.
        shown_lon, shown_lat = (round(v, 5) for v in coarse_position(item.id, item.lon, item.lat, now, key))
        distance = haversine_m(lon, lat, shown_lon, shown_lat)
        if distance > settings.default_service_radius_m:
            continue
        kinds = sorted(usable_kinds(await certifications_of(session, tech.id), now))
        if not kinds or (kind and kind not in kinds):
            continue
        out.append(NearbyTechnician(
            id=tech.id, name=tech.name, station=stations.get(tech.station_id) if tech.station_id else None,
            certifications=kinds, lon=shown_lon, lat=shown_lat,
            distance_m=int(round(distance / 100) * 100)))
    out.sort(key=lambda t: (t.distance_m, str(t.id)))
    return out[:limit]
