"""Service stations and their service areas; the service catalogue."""

import uuid
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import Conflict, InvalidInput, NotFound
from kit.geo import point, polygon_from_geojson
from dispatch.models import City, ServiceKind, ServiceStation


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
