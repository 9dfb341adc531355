"""Station KPIs over seeded orders, checked against figures computed by hand."""

from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.field.models import Hazard, Visit
from dispatch.service import Actor, create_order
from tests.factories import make_customer, make_staff, make_technician
from tests.field.support import CENTER, advance, make_station

START = datetime(2026, 10, 1, tzinfo=timezone.utc)
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
DONE = ["start_matching", "offer", "accept", "depart", "arrive", "start_service", "complete"]


async def seed(session: AsyncSession, tech_id, kind: str, created: datetime, actions: list[str], *,  # noqa: ANN001
               arrival_min: int | None = None, outcome: str = "open", source: str = "customer"):  # noqa: ANN201
    c = await make_customer(session, lon=CENTER[0] + 0.0001, lat=CENTER[1])
    order = await create_order(session, customer_id=c.customer.id, address_id=c.address.id, kind=kind, source=source,
                               actor=Actor.system("test"), now=created)
    if actions:
        await advance(session, order.id, actions, created, tech_id)
    if arrival_min is not None or outcome != "open":
        session.add(Visit(order_id=order.id, technician_id=tech_id, code="000000", code_issued_at=created,
                          outcome=outcome, checked_in_at=created + timedelta(minutes=arrival_min) if arrival_min else None))
        await session.flush()
    return order


async def test_station_kpis_match_hand_computed_values(client: AsyncClient, session: AsyncSession) -> None:
    station = await make_station(session, half_side_deg=0.002)
    tech = (await make_technician(session, station=station)).technician.id
    day = START + timedelta(days=3)
    await seed(session, tech, "repair", day, DONE, arrival_min=30, outcome="done")  # fixed first time
    with_hazard = await seed(session, tech, "repair", day, DONE, arrival_min=50, outcome="done")
    await seed(session, tech, "repair", day, DONE, arrival_min=90, outcome="done", source="followup")
    await seed(session, tech, "inspection", day, DONE, arrival_min=20, outcome="done")
    for _ in range(2):
        await seed(session, tech, "inspection", day, ["start_matching", "offer", "accept", "depart", "cancel"],
                   outcome="no_access")
    await seed(session, tech, "repair", day, ["cancel"])
    await seed(session, tech, "repair", START - timedelta(days=1), DONE, arrival_min=5, outcome="done")  # before the period
    for found_days_before_end, status in ((10, "open"), (40, "open"), (20, "fixed")):
        found = END - timedelta(days=found_days_before_end)
        session.add(Hazard(order_id=with_hazard.id, customer_id=with_hazard.customer_id, address_id=with_hazard.address_id,
                           station_id=station.id, category="aged_hose", severity="minor", deadline_at=found + timedelta(days=30),
                           found_at=found, status=status, fixed_at=found + timedelta(days=1) if status == "fixed" else None))
    await session.flush()
    _, admin = await make_staff(session, "admin")

    response = await client.get(f"/v1/stations/{station.id}/kpis", headers=admin,
                                params={"from": START.isoformat(), "to": END.isoformat()})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "station_id": str(station.id), "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z",
        "orders_by_kind": {"repair": {"completed": 3, "cancelled": 1}, "inspection": {"completed": 1, "no_access": 2}},
        "home_entry_rate": 0.3333,  # 1 done of 3 attempted
        "median_arrival_min": 40.0,  # median of 20, 30, 50, 90
        "first_visit_fix_rate": 0.5,  # of the two non-follow-up repairs, one left a hazard
        "open_hazards_by_age": {"0-7d": 0, "8-30d": 1, "31-90d": 1, "over-90d": 0},
    }


async def test_kpis_refuse_a_period_that_ends_before_it_starts(client: AsyncClient, session: AsyncSession) -> None:
    station = await make_station(session)
    _, auditor = await make_staff(session, "auditor")
    url = f"/v1/stations/{station.id}/kpis"
    backwards = await client.get(url, headers=auditor, params={"from": END.isoformat(), "to": START.isoformat()})
    assert backwards.status_code == 422 and backwards.headers["content-type"] == "application/problem+json"
    assert (await client.get(url, headers=auditor, params={"from": "yesterday", "to": END.isoformat()})).status_code == 422
