import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import col, select

from api.deps import Admin, CurrentCustomer, CurrentTechnician, RedisDep, SessionDep
from api.routers.ops import CityFilter
from dispatch.handlers import offer_summary
from dispatch.models import CustomerBlock, Order, Technician
from dispatch.schemas import CertificationKind
from kit.errors import NotFound
from kit.fanout import publish_position
from kit.schemas import GeoPoint, Input, Page
from matching import eta
from matching import nearby as nearby_technicians
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
    sla_deadline: datetime  # when the order is due: the technician's phone counts down to it


class DeclineBody(Input):
    reason: Annotated[str, Field(max_length=200)] | None = None


class NearbyTechnician(BaseModel):
    id: uuid.UUID
    name: str
    station: str | None
    status: Literal["online"]  # technicians on a job are never listed
    certifications: list[str]
    distance_m: int  # from the coarse position, rounded to 100 m
    position: dict  # coarse: somewhere in a cell of about 500 m around him; never exact


class BlockBody(Input):
    technician_id: uuid.UUID


@router.post("/v1/technicians/me/location", status_code=status.HTTP_202_ACCEPTED)
async def post_location(body: LocationFix, technician: CurrentTechnician, session: SessionDep, redis: RedisDep) -> dict[str, str]:
    outcome = await matching.record_position(
        session, geo_index(redis), technician, lon=body.position.lon, lat=body.position.lat, at=body.at())
    if outcome == "accepted":
        await publish_position(redis, technician.id, body.position.lon, body.position.lat, body.at().isoformat())
        await eta.refresh_after_fix(redis, geo_index(redis), technician.id, session)
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
        Offer.expires_at > func.now()).order_by(Offer.created_at))).all()
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
    customer: CurrentCustomer, session: SessionDep, redis: RedisDep, address_id: uuid.UUID,
    kind: CertificationKind | None = None, limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Page[NearbyTechnician]:
    """Certified technicians free for work around one of your addresses, at coarse positions
    (a cell of about 500 m, the same for every query in a half-hour window); rate limited."""
    await nearby_technicians.throttle(redis, customer.id)
    found = await nearby_technicians.free_technicians_near_address(
        session, geo_index(redis), customer_id=customer.id, address_id=address_id, kind=kind, limit=limit,
        now=datetime.now(timezone.utc))
    return Page(data=[NearbyTechnician(
        id=t.id, name=t.name, station=t.station, status="online", certifications=t.certifications,
        distance_m=t.distance_m, position={"type": "Point", "coordinates": [t.lon, t.lat]}) for t in found])


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
async def on_duty_technicians(_: Admin, session: SessionDep, redis: RedisDep,
                              city: CityFilter = None) -> Page[OnDutyTechnician]:
    """Operations' live view: every technician on duty (of one city with `?city=`) with his last
    position and load (live positions are not an auditor's business)."""
    on_duty = select(Technician).where(col(Technician.status).in_(("online", "busy")))
    techs = (await session.exec((on_duty.where(Technician.city_id == city) if city else on_duty)
                                .order_by(Technician.name))).all()
    index = geo_index(redis)
    out = []
    for tech in techs:
        live = await index.get(str(tech.id), tech.city_id)
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
