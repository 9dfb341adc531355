"""Cities, the marketplace's partitions. A place belongs to the city of the service station
nearest to it: every station lies in its city and cities are far apart, so the nearest
station answers even for an address just outside every service area."""

from typing import Any

from sqlalchemy import literal
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import City, ServiceStation, home_city


async def city_at(session: AsyncSession, location: Any) -> str:
    """The city of a point (a geography value); the configured city while there is no station."""
    nearest = (await session.exec(select(ServiceStation.city_id).order_by(
        ServiceStation.location.op("<->")(literal(location, ServiceStation.location.type))).limit(1))).first()
    return nearest or home_city()


async def ensure_city(session: AsyncSession, city_id: str, *, name: str, timezone: str = "Asia/Shanghai",
                      hotline: str | None = None, currency: str = "CNY") -> City:
    city = await session.get(City, city_id)
    if city is None:
        city = City(id=city_id, name=name, timezone=timezone, hotline=hotline, currency=currency)
        session.add(city)
        await session.flush()
    return city


async def timezone_of(session: AsyncSession, city_id: str) -> str:
    """The IANA zone a city's clocks show; a session keeps the city row, so a page of orders reads it once."""
    city = await session.get(City, city_id)
    return city.timezone if city is not None else City.model_fields["timezone"].default
