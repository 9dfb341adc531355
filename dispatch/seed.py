"""The demo: two cities (the configured "demo" city, in Hangzhou, and Shanghai), each with
stations and their service areas, certified technicians and customers with addresses."""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rich.progress import Progress
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import accounts
from dispatch.cities import ensure_city
from kit.geo import lonlat, point
from dispatch.models import Account, Address, Certification, ServiceStation
from dispatch.stations import create_station

DEMO_PASSWORD = "demo-password"


@dataclass(frozen=True)
class CityPlan:
    name: str
    center: tuple[float, float]  # lon, lat
    stations: int
    technicians: int
    customers: int
    station_names: tuple[str, ...]
    hotline: str


CITIES = {
    "demo": CityPlan("杭州", (120.155, 30.274), stations=3, technicians=30, customers=40,
                     station_names=("西湖社区服务站", "拱墅社区服务站", "上城社区服务站", "滨江社区服务站", "余杭社区服务站"),
                     hotline="0571-96777"),
    "shanghai": CityPlan("上海", (121.474, 31.230), stations=3, technicians=20, customers=30,
                         station_names=("徐汇社区服务站", "静安社区服务站", "黄浦社区服务站", "浦东社区服务站"),
                         hotline="021-962777"),
}
_PREFIX = {"repair": "WX", "inspection": "AJ", "installation": "AZ", "emergency": "QX"}
_SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超"]


def _square(lon: float, lat: float, half_deg: float) -> dict:
    ring = [[lon - half_deg, lat - half_deg], [lon + half_deg, lat - half_deg],
            [lon + half_deg, lat + half_deg], [lon - half_deg, lat + half_deg], [lon - half_deg, lat - half_deg]]
    return {"type": "Polygon", "coordinates": [ring]}


async def seed_city(session: AsyncSession, city: str, seed: int = 7) -> dict[str, int | str]:
    """Idempotent: a city already seeded is left as it is."""
    plan = CITIES[city]
    marker = f"admin@{city}.gasdispatch.local"
    if (await session.exec(select(Account.id).where(Account.email == marker))).first():
        return {"city": city, "status": "already seeded"}
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    clon, clat = plan.center
    await ensure_city(session, city, name=plan.name, hotline=plan.hotline)
    await accounts.create_staff(session, role="admin", email=marker, password=DEMO_PASSWORD, name="运营管理员")
    await accounts.create_staff(session, role="auditor", email=f"auditor@{city}.gasdispatch.local",
                                password=DEMO_PASSWORD, name="审计员")
    with Progress(transient=True) as progress:
        task = progress.add_task(f"seeding {city}", total=plan.stations + plan.technicians + plan.customers)
        stations = []
        for i in range(plan.stations):
            slon, slat = clon + (i - 1) * 0.04, clat + rng.uniform(-0.01, 0.01)
            stations.append(await create_station(
                session, name=plan.station_names[i % len(plan.station_names)], city=city, lon=slon, lat=slat,
                service_area=_square(slon, slat, 0.03), daily_capacity=40))
            progress.advance(task)
        for i in range(plan.technicians):
            station = stations[i % len(stations)]
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN)
            tech = await accounts.register_technician(
                session, email=f"tech{i + 1}@{city}.gasdispatch.local", password=DEMO_PASSWORD, name=name,
                phone=f"+86 138{rng.randrange(10**8):08d}", station_id=station.id)
            tech.onboarding = "active"
            tech.max_jobs = 1 + (i % 3 == 0)
            kinds = ["repair", "inspection"] + (["emergency"] if i % 3 == 0 else []) + (["installation"] if i % 4 == 0 else [])
            for kind in kinds:
                session.add(Certification(
                    technician_id=tech.id, kind=kind, number=f"{city.upper()}-{_PREFIX[kind]}-{i + 1:04d}",
                    issuer="市燃气集团培训中心", valid_from=now - timedelta(days=200),
                    valid_until=now + timedelta(days=900), status="verified", decided_at=now))
            progress.advance(task)
        for i in range(plan.customers):
            customer = await accounts.register_customer(
                session, email=f"customer{i + 1}@{city}.gasdispatch.local", password=DEMO_PASSWORD,
                name=rng.choice(_SURNAMES) + rng.choice(_GIVEN), phone=f"+86 139{rng.randrange(10**8):08d}")
            station = stations[i % len(stations)]
            lon, lat = _lonlat_of_station(station, rng)
            session.add(Address(customer_id=customer.id, label="家", line=f"{plan.name} 幸福里 {i + 1} 号",
                                location=point(lon, lat)))
            progress.advance(task)
    await session.flush()
    return {"city": city, "stations": plan.stations, "technicians": plan.technicians, "customers": plan.customers,
            "password": DEMO_PASSWORD}


def _lonlat_of_station(station: ServiceStation, rng: random.Random) -> tuple[float, float]:
    slon, slat = lonlat(station.location) or (0.0, 0.0)
    return slon + rng.uniform(-0.02, 0.02), slat + rng.uniform(-0.02, 0.02)
