import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import CurrentCustomer, CurrentTechnician, RedisDep, SessionDep, Staff
from dispatch.config import get_settings
from dispatch.errors import NotFound
from dispatch.fanout import publish_position
from dispatch.handlers import offer_summary
from dispatch.models import CustomerBlock, Order, ServiceStation, Technician
from dispatch.schemas import CertificationKind, GeoPoint, Input, Page
from dispatch.technicians import certifications_of, usable_kinds
from matching import service as matching
from matching.models import Offer
from matching.service import geo_index

router = APIRouter(tags=["matching"])


class LocationFix(Input):
    position: GeoPoint
    accuracy_m: float | None = Field(default=None, ge=0, le=10_000)
    heading: float | None = Field(default=None, ge=0, lt=360)
    speed_mps: float | None = Field(default=None, ge=0, le=100)
    ts: datetime

    def at(self) -> datetime:
        return self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=timezone.utc)


class Availability(BaseModel):
    status: str


class OfferPublic(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    kind: str
    priority: str
    description: str
    area: dict  # the address rounded to ~100 m until the offer is accepted
    distance_m: int
    eta_min: int
    expires_at: datetime


class DeclineBody(Input):
    reason: Annotated[str, Field(max_length=200)] | None = None


class NearbyTechnician(BaseModel):
    id: uuid.UUID
    name: str
    station: str | None
    status: Literal["online", "busy"]
    certifications: list[str]
    distance_m: int  # rounded to 100 m
    position: dict  # rounded to ~100 m; never exact


class BlockBody(Input):
    technician_id: uuid.UUID


def _round_point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [round(lon, 3), round(lat, 3)]}


@router.post("/v1/technicians/me/location", status_code=status.HTTP_202_ACCEPTED)
async def post_location(body: LocationFix, technician: CurrentTechnician, session: SessionDep, redis: RedisDep) -> dict[str, str]:
    outcome = await matching.record_position(
        session, geo_index(redis), technician, lon=body.position.lon, lat=body.position.lat, at=body.at())
    if outcome == "accepted":
        await publish_position(redis, technician.id, body.position.lon, body.position.lat, body.at().isoformat())
    return {"outcome": outcome}


@router.post("/v1/technicians/me/online")
async def go_online(technician: CurrentTechnician, session: SessionDep, redis: RedisDep) -> Availability:
    return Availability(status=(await matching.go_online(session, geo_index(redis), technician)).status)


@router.post("/v1/technicians/me/offline")
async def go_offline(technician: CurrentTechnician, session: SessionDep, redis: RedisDep) -> Availability:
    return Availability(status=(await matching.go_offline(session, geo_index(redis), technician)).status)


async def offer_public(session: SessionDep, offer: Offer) -> OfferPublic:
    order = await session.get(Order, offer.order_id)
    assert order is not None
    # The same summary the socket pushes, so REST and the phone never disagree.
    summary = offer_summary(order, str(offer.id), offer.distance_m, offer.eta_s, offer.expires_at.isoformat())
    return OfferPublic(id=summary.pop("offer_id"), status=offer.status, **summary)


@router.get("/v1/offers")
async def my_offers(technician: CurrentTechnician, session: SessionDep) -> Page[OfferPublic]:
    rows = (await session.exec(select(Offer).where(
        Offer.technician_id == technician.id, Offer.status == "offered",
        Offer.expires_at > datetime.now(timezone.utc)).order_by(Offer.created_at))).all()
    return Page(data=[await offer_public(session, o) for o in rows])


@router.post("/v1/offers/{offer_id}/accept")
async def accept(offer_id: uuid.UUID, technician: CurrentTechnician, session: SessionDep) -> dict[str, str]:
    order = await matching.accept_offer(session, offer_id, technician.id)
    return {"order_id": str(order.id), "status": order.status}


@router.post("/v1/offers/{offer_id}/decline")
async def decline(offer_id: uuid.UUID, body: DeclineBody, technician: CurrentTechnician, session: SessionDep,
                  redis: RedisDep) -> OfferPublic:
    offer = await matching.decline_offer(session, geo_index(redis), offer_id, technician.id, body.reason)
    return await offer_public(session, offer)


@router.get("/v1/technicians/nearby")
async def nearby(
    customer: CurrentCustomer, session: SessionDep, redis: RedisDep,
    lon: Annotated[float, Query(ge=-180, le=180)], lat: Annotated[float, Query(ge=-90, le=90)],
    kind: CertificationKind | None = None, limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Page[NearbyTechnician]:
    """Certified technicians on duty near a point. Off-duty technicians never appear."""
    live = await geo_index(redis).nearby(get_settings().city, lon, lat, k=limit,
                                         max_radius_m=get_settings().default_service_radius_m)
    ids = [uuid.UUID(t.id) for t in live]
    techs = {t.id: t for t in (await session.exec(select(Technician).where(col(Technician.id).in_(ids)))).all()}
    stations = {s.id: s.name for s in (await session.exec(select(ServiceStation))).all()}
    out = []
    for item in live:
        tech = techs.get(uuid.UUID(item.id))
        if tech is None or tech.status not in ("online", "busy"):
            continue
        kinds = sorted(usable_kinds(await certifications_of(session, tech.id)))
        if not kinds or (kind and kind not in kinds):
            continue
        out.append(NearbyTechnician(
            id=tech.id, name=tech.name, station=stations.get(tech.station_id) if tech.station_id else None,
            status=tech.status, certifications=kinds, distance_m=int(round(item.distance_m / 100) * 100),
            position=_round_point(item.lon, item.lat)))
    return Page(data=out)


class OnDutyTechnician(BaseModel):
    id: uuid.UUID
    name: str
    station_id: uuid.UUID | None
    status: str
    active_jobs: int
    max_jobs: int
    position: dict | None
    seen_at: datetime | None


@router.get("/v1/operations/technicians")
async def on_duty_technicians(_: Staff, session: SessionDep, redis: RedisDep) -> Page[OnDutyTechnician]:
    """Operations' live view: every technician on duty with his last position and load."""
    techs = (await session.exec(select(Technician).where(col(Technician.status).in_(("online", "busy")))
                                .order_by(Technician.name))).all()
    index = geo_index(redis)
    out = []
    for tech in techs:
        live = await index.get(str(tech.id))
        out.append(OnDutyTechnician(
            id=tech.id, name=tech.name, station_id=tech.station_id, status=tech.status,
            active_jobs=live.active_jobs if live else 0, max_jobs=tech.max_jobs,
            position={"type": "Point", "coordinates": [live.lon, live.lat]} if live else None,
            seen_at=live.seen_at if live else None))
    return Page(data=out)


@router.post("/v1/customers/me/blocked-technicians", status_code=status.HTTP_201_CREATED)
async def block(body: BlockBody, customer: CurrentCustomer, session: SessionDep) -> dict[str, str]:
    if await session.get(Technician, body.technician_id) is None:
        raise NotFound("no such technician")
    if await session.get(CustomerBlock, (customer.id, body.technician_id)) is None:
        session.add(CustomerBlock(customer_id=customer.id, technician_id=body.technician_id))
        await session.flush()
    return {"technician_id": str(body.technician_id)}
