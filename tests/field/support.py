"""Field test helpers: a station around the test address, and a job accepted by a technician
whose position the test controls."""

import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from PIL import Image
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.events import drain
from dispatch.field import visits
from dispatch.field.identity import waive
from kit.geo import point, polygon_from_geojson
from dispatch.models import Order, ServiceStation
from dispatch.service import Actor, create_order, transition
from matching import service as engine
from tests.factories import CustomerCtx, TechnicianCtx, make_customer, make_technician

CENTER = (120.155, 30.274)
# Degrees of longitude per metre at the test latitude (about 96.2 km per degree).
LON_PER_M = 1 / 96_200


async def make_station(session: AsyncSession, *, capacity: int = 40, name: str = "东城服务站",
                       half_side_deg: float = 0.05) -> ServiceStation:
    lon, lat = CENTER
    d = half_side_deg
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    station = ServiceStation(name=name, city="demo", location=point(lon, lat), daily_capacity=capacity,
                             service_area=polygon_from_geojson({"type": "Polygon", "coordinates": [ring]}))
    session.add(station)
    await session.flush()
    return station


@dataclass
class Job:
    customer: CustomerCtx
    technician: TechnicianCtx
    order: Order
    t0: datetime


async def place(session: AsyncSession, redis, job: Job, metres_east: float, at: datetime) -> None:  # noqa: ANN001
    """Put the technician's live position `metres_east` of the address, seen at `at`."""
    await engine.record_position(session, engine.geo_index(redis), job.technician.technician,
                                 lon=CENTER[0] + metres_east * LON_PER_M, lat=CENTER[1], at=at, now=at)


async def accepted_job(session: AsyncSession, redis, now: datetime, *, kind: str = "repair",  # noqa: ANN001
                       station: ServiceStation | None = None, start_m: float = 2000, order: Order | None = None,
                       customer: CustomerCtx | None = None) -> Job:
    """A new order (or the given one) offered to and accepted by a new technician `start_m` away."""
    index = engine.geo_index(redis)
    customer = customer or await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    technician = await make_technician(session, station=station)
    await engine.go_online(session, index, technician.technician, now)
    job = Job(customer, technician, order, now)  # type: ignore[arg-type]
    await place(session, redis, job, start_m, now)
    if order is None:
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind=kind, actor=Actor("customer", str(customer.account.id)), now=now)
        await drain(session)
    offers = [o for o in await engine.run_batch(session, index, now) if o.order_id == order.id]
    assert len(offers) == 1
    job.order = await engine.accept_offer(session, offers[0].id, technician.technician.id, now)
    return job


async def in_service_job(session: AsyncSession, redis, **kw) -> Job:  # noqa: ANN001, ANN003
    """A job whose technician is at the door, identity settled, service started."""
    now = datetime.now(timezone.utc)
    job = await accepted_job(session, redis, now, start_m=20, **kw)
    tech_id = job.technician.technician.id
    await visits.depart(session, redis, job.order.id, tech_id, now)
    await waive(session, job.order, Actor("customer", str(job.customer.account.id)), None, now)
    await visits.arrive(session, redis, job.order.id, tech_id, now)
    job.order = await visits.start(session, job.order.id, tech_id, now)
    return job


def report(price: int, **extra) -> dict:  # noqa: ANN003
    return {"work_done": "replaced the hose", "parts": [{"name": "hose 1.5 m", "quantity": 1, "unit_price_minor": 3500}],
            "final_price_minor": price, "currency": "CNY", **extra}


def png(shade: int = 0, size: tuple[int, int] = (200, 200)) -> bytes:
    """A small real image; another shade is another photo."""
    out = io.BytesIO()
    Image.new("RGB", size, (shade, 120, 60)).save(out, format="PNG")
    return out.getvalue()


async def upload_photo(client: AsyncClient, job: Job, shade: int = 0) -> str:
    """A photo of the job uploaded by its technician: its ref."""
    response = await client.post(f"/v1/jobs/{job.order.id}/photos", content=png(shade),
                                 headers={**job.technician.headers, "Content-Type": "image/png"})
    assert response.status_code == 201, response.text
    return response.json()["ref"]


async def advance(session: AsyncSession, order_id: uuid.UUID, actions: list[str], now: datetime,
                  technician_id: uuid.UUID | None = None) -> Order:
    """Drive an order through plain state-machine steps (KPI seeding, not the field rules)."""
    order = None
    for action in actions:
        values = {"technician_id": technician_id} if action == "accept" else None
        order = await transition(session, order_id, action, Actor.system("test"), set_values=values, now=now,
                                 reason="test" if action in ("cancel", "mark_unfulfilled") else None,
                                 payload={"report_id": "seeded"} if action == "complete" else None)
        now += timedelta(seconds=1)
    assert order is not None
    return order
