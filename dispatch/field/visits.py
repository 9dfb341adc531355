"""The technician's steps at a job: depart, arrive (geofenced, identity checked), start, and
`no_access` when nobody opens the door. The REST routes and the realtime socket call these."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from geoalchemy2 import functions as geo
from redis.asyncio import Redis
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.errors import Conflict, InvalidInput, NotFound
from dispatch.field import campaigns
from dispatch.field.identity import ensure_visit
from dispatch.field.models import Visit
from kit.geo import point
from dispatch.models import Order
from dispatch.reasons import NO_ACCESS
from dispatch.service import Actor, transition
from matching.index import TrackPoint
from matching.scoring import haversine_m
from matching.service import geo_index

FIELD = Actor.system("field")
# Two GPS fixes of a standing phone can differ by this much without any travel.
ARRIVAL_GPS_NOISE_M = 50.0


class NoFreshPosition(InvalidInput):
    """No recent position from the technician's device; send one and retry."""

    slug = "no-fresh-position"


class TooFarFromAddress(InvalidInput):
    """The technician's last position is not at the order's address."""

    slug = "too-far-from-address"
    fields = ("distance_m", "radius_m")

    def __init__(self, distance_m: float, radius_m: float) -> None:
        super().__init__(f"{round(distance_m)} m from the address; check-in needs {round(radius_m)} m or less")
        self.extra = {"distance_m": round(distance_m), "radius_m": round(radius_m)}


class ImplausibleArrival(InvalidInput):
    """The track the server holds cannot have reached the address by now (a jump at an impossible speed)."""

    slug = "implausible-arrival"
    fields = ("jump_m", "elapsed_s")

    def __init__(self, jump_m: float, elapsed_s: float) -> None:
        super().__init__(f"{round(jump_m)} m in {round(elapsed_s)} s before reaching the address")
        self.extra = {"jump_m": round(jump_m), "elapsed_s": round(elapsed_s)}


class IdentityNotVerified(Conflict):
    """The customer has not verified the technician (QR or code) nor waived the check."""

    slug = "identity-not-verified"


@dataclass(frozen=True)
class Fix:
    lon: float
    lat: float
    distance_m: float


async def held_order(session: AsyncSession, order_id: uuid.UUID, technician_id: uuid.UUID) -> Order:
    order = await session.get(Order, order_id, populate_existing=True)
    if order is None or order.technician_id != technician_id:
        raise NotFound("no such order")
    return order


def _actor(technician_id: uuid.UUID) -> Actor:
    return Actor("technician", str(technician_id))


def _check_approach(track: list[TrackPoint]) -> None:
    """Every earlier fix of the track must be able to reach the newest one in the time between
    them on the server's clock, which the phone cannot set: many small steps stamped a moment
    apart, or a fix held back and then placed at the door, add up to an impossible speed."""
    latest, max_mps = track[0], get_settings().max_speed_kmh / 3.6
    for earlier in track[1:]:
        elapsed = (latest.received_at - earlier.received_at).total_seconds()
        jump = haversine_m(earlier.lon, earlier.lat, latest.lon, latest.lat) - ARRIVAL_GPS_NOISE_M
        if jump > max(elapsed, 0.0) * max_mps:
            raise ImplausibleArrival(jump_m=jump, elapsed_s=elapsed)


async def position_at_address(session: AsyncSession, redis: Redis, order: Order, technician_id: uuid.UUID,
                              now: datetime) -> Fix:
    """The technician's newest accepted fix, from the server's own record of his track: fresh,
    within the arrival radius, and plausibly reached."""
    track = await geo_index(redis).track(str(technician_id), order.city_id)
    fresh_after = now - timedelta(seconds=get_settings().stale_after_s)
    if not track or track[0].at < fresh_after:
        raise NoFreshPosition()
    latest = track[0]
    here = point(latest.lon, latest.lat)
    radius = get_settings().field_arrival_radius_m
    within, distance = (await session.exec(select(
        geo.ST_DWithin(Order.location, here, radius), geo.ST_Distance(Order.location, here),
    ).where(Order.id == order.id))).one()
    if not within:
        raise TooFarFromAddress(distance_m=distance, radius_m=radius)
    _check_approach(track)
    return Fix(latest.lon, latest.lat, float(distance))


async def depart(session: AsyncSession, redis: Redis, order_id: uuid.UUID, technician_id: uuid.UUID,
                 now: datetime) -> Order:
    order = await held_order(session, order_id, technician_id)
    visit = await ensure_visit(session, order, now)
    order = await transition(session, order_id, "depart", _actor(technician_id), expected_status="accepted", now=now)
    visit.departed_at = now
    session.add(visit)
    await session.flush()
    return order


async def arrive(session: AsyncSession, redis: Redis, order_id: uuid.UUID, technician_id: uuid.UUID,
                 now: datetime) -> Order:
    """Check-in: only at the address (PostGIS distance on geography) and once identity is settled."""
    order = await held_order(session, order_id, technician_id)
    if order.status != "en_route":
        raise Conflict(f"order is {order.status}, not en_route")
    visit = await ensure_visit(session, order, now)
    if visit.verification is None:
        raise IdentityNotVerified()
    fix = await position_at_address(session, redis, order, technician_id, now)
    order = await transition(session, order_id, "arrive", _actor(technician_id), expected_status="en_route", now=now,
                             payload={"distance_m": round(fix.distance_m, 1), "verification": visit.verification})
    visit.checked_in_at, visit.arrival_distance_m = now, fix.distance_m
    session.add(visit)
    await session.flush()
    return order


async def start(session: AsyncSession, order_id: uuid.UUID, technician_id: uuid.UUID, now: datetime) -> Order:
    await held_order(session, order_id, technician_id)
    return await transition(session, order_id, "start_service", _actor(technician_id), expected_status="arrived", now=now)


async def no_access(session: AsyncSession, redis: Redis, order_id: uuid.UUID, technician_id: uuid.UUID,
                    photo_ref: str, now: datetime) -> Order:
    """Nobody opened the door: the outcome is kept with a photo and the position at the door,
    and the order ends (cancelled, reason `no_access`) so the campaign can plan another visit."""
    order = await held_order(session, order_id, technician_id)
    if order.status not in ("en_route", "arrived"):
        raise Conflict(f"order is {order.status}; no access is reported at the door")
    visit = await ensure_visit(session, order, now)
    fix = await position_at_address(session, redis, order, technician_id, now)
    visit.outcome, visit.no_access_photo_ref = "no_access", photo_ref
    visit.no_access_location, visit.checked_out_at = point(fix.lon, fix.lat), now
    session.add(visit)
    order = await transition(session, order_id, "cancel", FIELD, reason=NO_ACCESS, expected_status=order.status,
                             now=now, payload={"technician_id": str(technician_id), "photo_ref": photo_ref,
                                               "distance_m": round(fix.distance_m, 1)})
    await campaigns.record_outcome(session, order_id, "no_access", now)
    await session.flush()
    return order


async def visit_of(session: AsyncSession, order_id: uuid.UUID) -> Visit | None:
    return await session.get(Visit, order_id)
