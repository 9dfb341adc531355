"""Hazards in the work report: fixed on site (no follow-up, a first-visit fix) or left for a
follow-up order that is free or waits for the customer's consent."""

from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.events import drain
from dispatch.field.models import Hazard
from dispatch.models import Order, ServiceKind
from kit.models import OutboxMessage
from matching import service as engine
from tests.factories import make_staff
from tests.field.support import in_service_job, make_station, report, upload_photo

FIX = {"work_done": "tightened the connector, leak test passed",
       "parts": [{"name": "sealing washer", "quantity": 2, "unit_price_minor": 100}],
       "photo_refs": []}


def fixed_on_site(category: str = "leaking_connector", severity: str = "critical", **extra) -> dict:  # noqa: ANN003
    return {"category": category, "severity": severity, "resolution": "fixed_on_site", "fix": FIX, **extra}


def needs_followup(category: str = "no_alarm", severity: str = "major") -> dict:
    return {"category": category, "severity": severity, "resolution": "needs_followup"}


async def followups_of(session: AsyncSession, customer_id) -> list[Order]:  # noqa: ANN001
    return list((await session.exec(select(Order).where(Order.source == "followup",
                                                        Order.customer_id == customer_id))).all())


async def test_a_hazard_fixed_on_site_creates_no_followup_and_counts_as_a_first_visit_fix(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    station = await make_station(session)
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    fixed = await in_service_job(session, redis, station=station)
    # A critical hazard removed on the spot leaves nothing that needs the supply shut.
    before, after = await upload_photo(client, fixed, 1), await upload_photo(client, fixed, 2)
    fix = {**FIX, "photo_refs": [after]}
    done = await client.post(f"/v1/jobs/{fixed.order.id}/complete", headers=fixed.technician.headers,
                             json=report(8000, hazards=[fixed_on_site(fix=fix, photo_refs=[before])]))
    assert done.status_code == 200, done.text
    hazard = (await session.exec(select(Hazard).where(Hazard.order_id == fixed.order.id))).one()
    assert (hazard.resolution, hazard.status, hazard.fixed_order_id, hazard.followup_order_id, hazard.deadline_at) == (
        "fixed_on_site", "fixed", fixed.order.id, None, None)
    assert (hazard.fix_work_done, hazard.fix_parts, hazard.fix_photo_refs, hazard.photo_refs) == (
        FIX["work_done"], FIX["parts"], [after], [before])
    assert await followups_of(session, fixed.order.customer_id) == []
    assert (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "field.hazard_found"))).all() == []
    visit = (await client.get(f"/v1/orders/{fixed.order.id}/visit", headers=fixed.customer.headers)).json()
    [shown] = visit["hazards"]
    assert (shown["category"], shown["resolution"], shown["status"], shown["deadline_at"], shown["fix"]) == (
        "leaking_connector", "fixed_on_site", "fixed", None, fix)

    await engine.go_offline(session, engine.geo_index(redis), fixed.technician.technician, datetime.now(timezone.utc))
    left = await in_service_job(session, redis, station=station)
    done = await client.post(f"/v1/jobs/{left.order.id}/complete", headers=left.technician.headers,
                             json=report(8000, hazards=[needs_followup()]))
    assert done.status_code == 200, done.text
    _, admin = await make_staff(session, "admin")
    kpis = await client.get(f"/v1/stations/{station.id}/kpis", headers=admin, params={
        "from": start.isoformat(), "to": (start + timedelta(hours=2)).isoformat()})
    assert kpis.status_code == 200, kpis.text
    assert kpis.json()["first_visit_fix_rate"] == 0.5  # the on-site fix counts; the one left open does not


async def test_an_unresolved_priced_hazard_creates_a_followup_that_waits_for_the_customers_consent(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    done = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=job.technician.headers,
                             json=report(8000, hazards=[fixed_on_site(severity="minor"), needs_followup()]))
    assert done.status_code == 200, done.text
    [followup] = await followups_of(session, job.order.customer_id)
    left = (await session.exec(select(Hazard).where(Hazard.followup_order_id == followup.id))).one()
    assert (left.category, left.resolution, left.status) == ("no_alarm", "needs_followup", "open")
    # No machine text in English: the customer's app translates the hazard's own fields.
    assert (followup.status, followup.description, followup.price_estimate_minor) == ("awaiting_consent", "", 8000)
    shown = (await client.get(f"/v1/orders/{followup.id}/visit", headers=job.customer.headers)).json()
    assert (shown["followup_for"]["id"], shown["followup_for"]["category"], shown["followup_for"]["severity"]) == (
        str(left.id), "no_alarm", "major")
    await drain(session)
    await engine.run_batch(session, engine.geo_index(redis))
    assert (await session.get(Order, followup.id, populate_existing=True)).status == "awaiting_consent"
    agreed = await client.post(f"/v1/orders/{followup.id}/consent", headers=job.customer.headers)
    assert (agreed.status_code, agreed.json()["status"]) == (200, "matching")


async def test_an_unresolved_hazard_the_catalogue_makes_free_is_matched_at_once(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    kind = await session.get(ServiceKind, "repair")
    kind.base_price_minor = 0
    session.add(kind)
    await session.flush()
    done = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=job.technician.headers,
                             json=report(8000, hazards=[needs_followup("aged_hose", "minor")]))
    assert done.status_code == 200, done.text
    [followup] = await followups_of(session, job.order.customer_id)
    assert followup.status == "created"
    await drain(session)
    offers = await engine.run_batch(session, engine.geo_index(redis))
    assert [o.order_id for o in offers] == [followup.id]
    assert (await session.get(Order, followup.id, populate_existing=True)).status == "offered"


async def test_a_hazard_fixed_on_site_without_what_was_done_is_422_naming_the_field(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    url = f"/v1/jobs/{job.order.id}/complete"
    for hazard, field in (
        ({"category": "aged_hose", "severity": "minor", "resolution": "fixed_on_site"}, "fix"),
        (fixed_on_site(fix={**FIX, "work_done": "  "}), "work_done"),
        (fixed_on_site(deadline_at=(datetime.now(timezone.utc) + timedelta(days=3)).isoformat()), "deadline_at"),
        ({**needs_followup(), "resolution": "later"}, "1"),
    ):
        refused = await client.post(url, headers=job.technician.headers,
                                    json=report(8000, hazards=[needs_followup(), hazard]))
        assert refused.status_code == 422, (hazard, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert [e["loc"][-1] for e in refused.json()["errors"]] == [field], refused.json()
    assert (await session.get(Order, job.order.id, populate_existing=True)).status == "in_service"
    assert await followups_of(session, job.order.customer_id) == []
