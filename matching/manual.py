"""Matching's side of an operator's direct assignment: may this technician take this order now
(the same eligibility rules as automatic matching, except distance, which the operator judges),
and the open offers an assignment withdraws."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.events import publish_event
from kit.fanout import presence_key
from kit.geo import lonlat
from dispatch import queries
from dispatch.models import Order, Technician
from matching.eligibility import EXCLUDED, OFFLINE, SUSPENDED, certification_reason
from matching.events import OfferWithdrawn
from matching.model import CertificationView, TechnicianView
from matching.models import Offer
from matching.scoring import eta_s, haversine_m
from matching.service import geo_index, matching_config

NOT_ACTIVE = "not_active"
AT_CAPACITY = "at_capacity"


@dataclass(frozen=True)
class Assignability:
    """One technician as the operator's picker shows him: None as reason means he may take it."""

    technician: Technician
    reason: str | None
    certification: str | None
    active_jobs: int
    distance_m: float | None
    eta_s: float | None
    seen_at: datetime | None


async def assignability(session: AsyncSession, redis: Redis, order: Order, technicians: list[Technician],
                        now: datetime) -> list[Assignability]:
    """Why each technician may or may not take `order` now, in the order of the rules: account
    state, reachable (online with his phone connected or a fresh position), blocked by the
    customer, certification, capacity (jobs other than this order)."""
    ids = [t.id for t in technicians]
    certs = await queries.certifications_by_technician(session, ids)
    blocked = set((await session.exec(queries.blocked_technicians_query(order.customer_id))).all())
    jobs = await queries.jobs_in_hand(session, ids, other_than=order.id)
    index = geo_index(redis)
    stale_after = timedelta(seconds=get_settings().stale_after_s)
    order_lon, order_lat = lonlat(order.location) or (0.0, 0.0)
    out = []
    for tech in technicians:
        live = await index.get(str(tech.id), tech.city_id)
        fresh = live is not None and now - live.seen_at <= stale_after
        connected = bool(await redis.exists(presence_key(tech.id)))
        view = TechnicianView(
            id=str(tech.id), lon=live.lon if live else 0.0, lat=live.lat if live else 0.0, status="online",
            certifications=tuple(CertificationView(c.kind, c.status == "verified", c.valid_from, c.valid_until)
                                 for c in certs.get(tech.id, ())),
            active_jobs=jobs.get(tech.id, 0), max_jobs=tech.max_jobs, rating=0.0, last_seen_at=now)
        certification = certification_reason(order.required_certification, view, now)
        if tech.status == "suspended":
            reason: str | None = SUSPENDED
        elif tech.onboarding != "active":
            reason = NOT_ACTIVE
        elif tech.status == "offline" or not (connected or fresh):
            reason = OFFLINE
        elif tech.id in blocked:
            reason = EXCLUDED
        elif certification is not None:
            reason = certification
        elif view.active_jobs >= tech.max_jobs:
            reason = AT_CAPACITY
        else:
            reason = None
        distance = haversine_m(live.lon, live.lat, order_lon, order_lat) if live else None
        out.append(Assignability(
            technician=tech, reason=reason, certification=certification, active_jobs=view.active_jobs,
            distance_m=round(distance, 1) if distance is not None else None,
            eta_s=round(eta_s(distance, matching_config()), 1) if distance is not None else None,
            seen_at=live.seen_at if live else None))
    return out


async def withdraw_open_offers(session: AsyncSession, order_id: uuid.UUID, now: datetime, reason: str) -> list[uuid.UUID]:
    """Withdraws the order's open offers (their technicians' phones drop them); returns who had them."""
    rows = (await session.exec(update(Offer).where(Offer.order_id == order_id, Offer.status == "offered")
                               .values(status="withdrawn", decided_at=now)
                               .returning(Offer.id, Offer.technician_id))).all()
    for offer_id, technician_id in rows:
        await publish_event(session, OfferWithdrawn(offer_id=offer_id, order_id=order_id, technician_id=technician_id,
                                                    reason=reason))
    return [technician_id for _, technician_id in rows]


async def offers_of(session: AsyncSession, order_id: uuid.UUID) -> list[Offer]:
    return list((await session.exec(select(Offer).where(Offer.order_id == order_id)
                                    .order_by(Offer.created_at, Offer.attempt))).all())
