import uuid
from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field
from sqlmodel import select

from api import presenters
from api.deps import Admin, CurrentPrincipal, SessionDep
from dispatch import stations
from dispatch.models import Account, ServiceKind, ServiceStation
from dispatch.schemas import (
    SERVICE_KIND_CODE,
    ServiceKindCreate,
    ServiceKindPublic,
    ServiceKindUpdate,
    StationCreate,
    StationPublic,
    StationUpdate,
)
from kit.schemas import Input, Page

router = APIRouter(tags=["stations"])


@router.get("/v1/stations")
async def list_stations(_: CurrentPrincipal, session: SessionDep) -> Page[StationPublic]:
    rows = (await session.exec(select(ServiceStation).order_by(ServiceStation.name))).all()
    return Page(data=[presenters.station(s) for s in rows])


@router.post("/v1/stations", status_code=status.HTTP_201_CREATED)
async def create_station(body: StationCreate, _: Admin, session: SessionDep) -> StationPublic:
    station = await stations.create_station(
        session, name=body.name, city=body.city, lon=body.location.lon, lat=body.location.lat,
        service_area=body.service_area.model_dump(), daily_capacity=body.daily_capacity)
    return presenters.station(station)


@router.get("/v1/stations/{station_id}")
async def get_station(station_id: uuid.UUID, _: CurrentPrincipal, session: SessionDep) -> StationPublic:
    return presenters.station(await stations.get_station(session, station_id))


@router.patch("/v1/stations/{station_id}")
async def update_station(station_id: uuid.UUID, body: StationUpdate, _: Admin, session: SessionDep) -> StationPublic:
    changes = body.model_dump(exclude_unset=True)
    return presenters.station(await stations.update_station(session, station_id, changes))


class DutyStaffUpdate(Input):
    account_ids: list[uuid.UUID] = Field(max_length=50)


class DutyStaffMember(BaseModel):
    account_id: uuid.UUID
    display_name: str
    email: str


def _duty_page(staff: list[Account]) -> Page[DutyStaffMember]:
    return Page(data=[DutyStaffMember(account_id=a.id, display_name=a.display_name, email=a.email) for a in staff])


@router.get("/v1/stations/{station_id}/duty-staff")
async def get_duty_staff(station_id: uuid.UUID, _: Admin, session: SessionDep) -> Page[DutyStaffMember]:
    """The operations accounts alerted, besides the ops console, when an order in the station's
    area waits past an escalation threshold."""
    return _duty_page(await stations.duty_staff(session, station_id))


@router.put("/v1/stations/{station_id}/duty-staff", responses={422: {"description": "Not an enabled admin account"}})
async def put_duty_staff(station_id: uuid.UUID, body: DutyStaffUpdate, _: Admin, session: SessionDep) -> Page[DutyStaffMember]:
    """Replaces the station's duty staff (admin accounts; an empty list: nobody)."""
    return _duty_page(await stations.set_duty_staff(session, station_id, body.account_ids))


@router.get("/v1/service-kinds", tags=["catalogue"])
async def list_service_kinds(session: SessionDep) -> Page[ServiceKindPublic]:
    return Page(data=[presenters.service_kind(k) for k in await stations.list_service_kinds(session)])


@router.post("/v1/service-kinds", status_code=status.HTTP_201_CREATED, tags=["catalogue"])
async def create_service_kind(body: ServiceKindCreate, _: Admin, session: SessionDep) -> ServiceKindPublic:
    kind = ServiceKind(
        code=body.code, name=body.name, name_zh=body.name_zh, required_certification=body.required_certification,
        default_priority=body.default_priority, base_price_minor=body.base_price.amount_minor,
        currency=body.base_price.currency, typical_duration_min=body.typical_duration_min,
        sla_minutes=dict(body.sla_minutes))
    return presenters.service_kind(await stations.create_service_kind(session, kind))


@router.patch("/v1/service-kinds/{code}", tags=["catalogue"])
async def update_service_kind(code: Annotated[str, Path(pattern=SERVICE_KIND_CODE)], body: ServiceKindUpdate, _: Admin,
                              session: SessionDep) -> ServiceKindPublic:
    kind = await stations.get_service_kind(session, code, active_only=False)
    changes = body.model_dump(exclude_unset=True)
    if "base_price" in changes:
        price = changes.pop("base_price")
        kind.base_price_minor, kind.currency = price["amount_minor"], price["currency"]
    for field, value in changes.items():
        setattr(kind, field, value)
    session.add(kind)
    await session.flush()
    return presenters.service_kind(kind)
