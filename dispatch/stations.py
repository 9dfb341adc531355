"""Service stations, their service areas and their duty staff; the service catalogue."""

import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import functions as geo
from sqlalchemy import delete
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import Conflict, InvalidInput, NotFound
from kit.geo import point, polygon_from_geojson
from kit.models import timestamp_column, utcnow
from dispatch.models import Account, City, ServiceKind, ServiceStation


class StationDuty(SQLModel, table=True):
    """An operations account on duty for a station: alerted, besides the ops console, when an
    order in the station's service area waits past an escalation threshold."""

    __tablename__ = "dispatch_station_duty"

    station_id: uuid.UUID = Field(foreign_key="dispatch_service_station.id", primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="dispatch_account.id", primary_key=True, index=True)
    created_at: datetime = timestamp_column(default_factory=utcnow)


class NotDutyStaff(InvalidInput):
    """Only enabled operations (admin) accounts can be a station's duty staff."""

    slug = "not-duty-staff"
    fields = ("account_ids",)

    def __init__(self, account_ids: list[uuid.UUID]) -> None:
        super().__init__(f"not enabled admin accounts: {', '.join(str(a) for a in account_ids)}")
        self.extra = {"account_ids": [str(a) for a in account_ids]}


async def create_station(
    session: AsyncSession, *, name: str, city: str, lon: float, lat: float,
    service_area: dict[str, Any], daily_capacity: int,
) -> ServiceStation:
    if await session.get(City, city) is None:
        raise NotFound("no such city")
    station = ServiceStation(
        name=name, city_id=city, location=point(lon, lat),
        service_area=polygon_from_geojson(service_area), daily_capacity=daily_capacity,
    )
    session.add(station)
    await session.flush()
    await session.refresh(station)
    return station


async def get_station(session: AsyncSession, station_id: uuid.UUID) -> ServiceStation:
    station = await session.get(ServiceStation, station_id)
    if station is None:
        raise NotFound("no such station")
    return station


async def update_station(session: AsyncSession, station_id: uuid.UUID, changes: dict[str, Any]) -> ServiceStation:
    """Omitted fields stay as they are; every field of a station is required, so none may be null."""
    nulls = sorted(field for field, value in changes.items() if value is None)
    if nulls:
        raise InvalidInput(f"{', '.join(nulls)} may be omitted but not null")
    station = await get_station(session, station_id)
    if "service_area" in changes:
        changes["service_area"] = polygon_from_geojson(changes["service_area"])
    for field, value in changes.items():
        setattr(station, field, value)
    session.add(station)
    await session.flush()
    await session.refresh(station)
    return station


async def get_service_kind(session: AsyncSession, code: str, *, active_only: bool = True) -> ServiceKind:
    kind = await session.get(ServiceKind, code)
    if kind is None or (active_only and not kind.active):
        raise NotFound(f"unknown service kind {code!r}")
    return kind


async def create_service_kind(session: AsyncSession, kind: ServiceKind) -> ServiceKind:
    if await session.get(ServiceKind, kind.code):
        raise Conflict(f"service kind {kind.code!r} exists")
    session.add(kind)
    await session.flush()
    return kind


async def list_service_kinds(session: AsyncSession, include_inactive: bool = False) -> list[ServiceKind]:
    statement = select(ServiceKind).order_by(ServiceKind.code)
    if not include_inactive:
        statement = statement.where(ServiceKind.active)
    return list((await session.exec(statement)).all())


def _on_duty() -> Any:
    """Duty rows whose account may still act: an admin, not disabled."""
    return (select(Account).join(StationDuty, col(StationDuty.account_id) == Account.id)
            .where(Account.role == "admin", col(Account.disabled_at).is_(None)))


async def duty_staff(session: AsyncSession, station_id: uuid.UUID) -> list[Account]:
    await get_station(session, station_id)
    return list((await session.exec(_on_duty().where(StationDuty.station_id == station_id)
                                    .order_by(Account.display_name, Account.id))).all())


async def set_duty_staff(session: AsyncSession, station_id: uuid.UUID, account_ids: list[uuid.UUID]) -> list[Account]:
    """Replaces the station's duty staff with these accounts (empty: nobody); NotDutyStaff names
    the ids that are not enabled admin accounts."""
    await get_station(session, station_id)
    wanted = list(dict.fromkeys(account_ids))
    admins = set((await session.exec(select(Account.id).where(
        col(Account.id).in_(wanted), Account.role == "admin", col(Account.disabled_at).is_(None)))).all())
    refused = [a for a in wanted if a not in admins]
    if refused:
        raise NotDutyStaff(refused)
    await session.exec(delete(StationDuty).where(  # type: ignore[call-overload]
        col(StationDuty.station_id) == station_id, col(StationDuty.account_id).not_in(wanted)))
    present = set((await session.exec(select(StationDuty.account_id).where(StationDuty.station_id == station_id))).all())
    session.add_all(StationDuty(station_id=station_id, account_id=a) for a in wanted if a not in present)
    await session.flush()
    return await duty_staff(session, station_id)


async def duty_staff_at(session: AsyncSession, location: Any, city_id: str) -> list[uuid.UUID]:
    """The accounts on duty for the stations of `city_id` whose service area covers `location`."""
    statement = _on_duty().join(ServiceStation, col(ServiceStation.id) == StationDuty.station_id).where(
        ServiceStation.city_id == city_id, geo.ST_Covers(ServiceStation.service_area, location))
    return list(dict.fromkeys(a.id for a in (await session.exec(statement)).all()))
