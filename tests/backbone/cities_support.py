"""Two cities (Hangzhou and Shanghai, a station each) and technicians on duty in them, for the
tests of the city partition and of operations per city."""

import uuid
from datetime import datetime, timedelta, timezone

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import accounts
from dispatch.cities import ensure_city
from dispatch.models import Certification, ServiceStation, Technician
from dispatch.stations import create_station
from matching import service as engine
from tests.factories import PASSWORD

HANGZHOU = (120.155, 30.274)
SHANGHAI = (121.474, 31.230)


def square(lon: float, lat: float, half: float = 0.03) -> dict:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
            [lon - half, lat - half]]
    return {"type": "Polygon", "coordinates": [ring]}


async def two_cities(session: AsyncSession) -> dict[str, ServiceStation]:
    stations = {}
    for city, name, (lon, lat) in (("hangzhou", "杭州", HANGZHOU), ("shanghai", "上海", SHANGHAI)):
        await ensure_city(session, city, name=name)
        stations[city] = await create_station(session, name=f"{name}服务站", city=city, lon=lon, lat=lat,
                                              service_area=square(lon, lat), daily_capacity=40)
    return stations


async def technician_of(session: AsyncSession, station: ServiceStation,
                        kinds: tuple[str, ...] = ("repair",)) -> Technician:
    """An active technician of the station, certified for `kinds`."""
    now = datetime.now(timezone.utc)
    tech = await accounts.register_technician(session, email=f"t-{uuid.uuid4().hex[:8]}@test.local", password=PASSWORD,
                                              name="韩梅梅", phone="+86 13800000000", station_id=station.id)
    tech.onboarding = "active"
    for kind in kinds:
        session.add(Certification(technician_id=tech.id, kind=kind, number=f"T-{uuid.uuid4().hex[:12]}",
                                  issuer="test issuer", valid_from=now - timedelta(days=30),
                                  valid_until=now + timedelta(days=365), status="verified"))
    await session.flush()
    return tech


async def online_at(session: AsyncSession, index, station: ServiceStation, lon: float, lat: float) -> Technician:  # noqa: ANN001
    """A new technician of the station, online, his live position at (lon, lat)."""
    tech = await technician_of(session, station)
    await engine.go_online(session, index, tech)
    await engine.record_position(session, index, tech, lon=lon, lat=lat, at=datetime.now(timezone.utc))
    return tech
