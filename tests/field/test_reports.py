"""Completion: the work report, price above the authorisation, hazards and follow-up orders."""

from datetime import datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import InvalidInput
from kit.events import drain
from dispatch.field.models import Hazard, PriceChange
from dispatch.models import Order, OrderEvent
from kit.models import OutboxMessage
from dispatch.service import Actor, consent_order
from matching import service as engine
from tests.field.support import in_service_job, make_station, report


async def status_of(session: AsyncSession, order_id) -> str:  # noqa: ANN001
    return (await session.get(Order, order_id, populate_existing=True)).status


async def test_completion_without_a_report_is_refused(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    job = await in_service_job(session, redis)
    url = f"/v1/jobs/{job.order.id}/complete"
    for body in (None, {}, {"work_done": "", "final_price_minor": 100, "currency": "CNY"}):
        response = await client.post(url, headers=job.technician.headers, json=body)
        assert response.status_code == 422, response.text
    assert await status_of(session, job.order.id) == "in_service"
    done = await client.post(url, headers=job.technician.headers, json=report(8000))
    assert done.status_code == 200, done.text
    assert await status_of(session, job.order.id) == "completed"
    event = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == job.order.id,
                                                         OrderEvent.action == "complete"))).one()
    assert event.payload["final_price_minor"] == 8000 and event.payload["report_id"] == done.json()["report_id"]
    visit = (await client.get(f"/v1/orders/{job.order.id}/visit", headers=job.customer.headers)).json()
    assert visit["report"]["work_done"] == "replaced the hose" and visit["time_on_site_s"] is not None


async def test_final_price_above_the_authorisation_needs_the_customers_approval(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    job = await in_service_job(session, redis)
    assert job.order.price_estimate_minor == 8000
    url = f"/v1/jobs/{job.order.id}/complete"
    asked = await client.post(url, headers=job.technician.headers, json=report(9500))
    assert asked.status_code == 202, asked.text
    assert asked.json()["price_change"]["amount"] == {"amount_minor": 9500, "currency": "CNY"}
    assert await status_of(session, job.order.id) == "in_service"
    again = await client.post(url, headers=job.technician.headers, json=report(9500))
    assert again.status_code == 202  # still waiting; the same request, not a second one
    requests = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "field.price_change_requested"))).all()
    assert [r.payload for r in requests] == [{"order_id": str(job.order.id), "customer_id": str(job.customer.customer.id),
                                               "amount_minor": 9500, "currency": "CNY"}]
    seen = {"price_change_id": asked.json()["price_change"]["id"]}
    assert (await client.post(f"/v1/orders/{job.order.id}/price-change/approve",
                              headers=job.technician.headers, json=seen)).status_code == 403
    approved = await client.post(f"/v1/orders/{job.order.id}/price-change/approve", headers=job.customer.headers,
                                 json=seen)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    above_approval = await client.post(url, headers=job.technician.headers, json=report(9600))
    assert above_approval.status_code == 202  # more than the customer approved asks again
    await client.post(f"/v1/orders/{job.order.id}/price-change/reject", headers=job.customer.headers,
                      json={"price_change_id": above_approval.json()["price_change"]["id"]})
    done = await client.post(url, headers=job.technician.headers, json=report(9500))
    assert done.status_code == 200, done.text
    event = (await session.exec(select(OrderEvent).where(OrderEvent.order_id == job.order.id,
                                                         OrderEvent.action == "complete"))).one()
    assert event.payload["final_price_minor"] == 9500
    statuses = (await session.exec(select(PriceChange.status).where(PriceChange.order_id == job.order.id)
                                   .order_by(PriceChange.requested_at, PriceChange.amount_minor))).all()
    assert sorted(statuses) == ["approved", "rejected"]


async def test_critical_hazard_closes_the_valve_and_creates_a_followup_order_with_its_deadline(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    station = await make_station(session)
    job = await in_service_job(session, redis, station=station)
    deadline = datetime.now(timezone.utc) + timedelta(hours=20)
    hazard = {"category": "leaking_connector", "severity": "critical", "deadline_at": deadline.isoformat()}
    url = f"/v1/jobs/{job.order.id}/complete"
    open_valve = await client.post(url, headers=job.technician.headers, json=report(8000, hazards=[hazard]))
    assert open_valve.status_code == 422 and "valve" in open_valve.json()["detail"]
    done = await client.post(url, headers=job.technician.headers, json=report(8000, hazards=[hazard], valve_closed=True))
    assert done.status_code == 200, done.text
    found = (await session.exec(select(Hazard).where(Hazard.order_id == job.order.id))).one()
    assert (found.status, found.station_id, found.deadline_at) == ("open", station.id, deadline)
    followup = await session.get(Order, found.followup_order_id)
    assert (followup.source, followup.kind, followup.customer_id, followup.address_id, followup.status) == (
        "followup", "repair", job.order.customer_id, job.order.address_id, "awaiting_consent")
    assert followup.sla_deadline == deadline
    event = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "field.hazard_found"))).one()
    assert event.payload == {"order_id": str(job.order.id), "hazard_id": str(found.id),
                             "customer_id": str(job.customer.customer.id), "category": "leaking_connector",
                             "severity": "critical", "deadline_at": deadline.isoformat(),
                             "followup_order_id": str(followup.id)}
    _, admin = await _admin(session)
    listed = (await client.get("/v1/hazards", headers=admin, params={"station_id": str(station.id)})).json()["data"]
    assert [h["id"] for h in listed] == [str(found.id)]


async def test_the_followup_visit_records_the_hazard_fixed(session: AsyncSession, redis) -> None:  # noqa: ANN001
    from dispatch.field import reports

    job = await in_service_job(session, redis)
    now = datetime.now(timezone.utc)
    await reports.complete(session, job.order.id, job.technician.technician.id, reports.WorkReportIn.model_validate(
        report(8000, hazards=[{"category": "aged_hose", "severity": "minor"}])), now)
    hazard = (await session.exec(select(Hazard).where(Hazard.order_id == job.order.id))).one()
    assert hazard.deadline_at == now + timedelta(days=30)
    await consent_order(session, hazard.followup_order_id, Actor("customer", str(job.customer.account.id)))
    await drain(session)
    await engine.go_offline(session, engine.geo_index(redis), job.technician.technician, now)
    followup = await session.get(Order, hazard.followup_order_id, populate_existing=True)
    later = await in_service_job(session, redis, order=followup, customer=job.customer)
    elsewhere = await in_service_job(session, redis)
    with pytest.raises(InvalidInput):  # a hazard of another household cannot be closed here
        await reports.complete(session, elsewhere.order.id, elsewhere.technician.technician.id,
                               reports.WorkReportIn.model_validate(report(5000, fixed_hazard_ids=[str(hazard.id)])), now)
    assert (await session.get(Hazard, hazard.id, populate_existing=True)).status == "open"
    await reports.complete(session, later.order.id, later.technician.technician.id,
                           reports.WorkReportIn.model_validate(report(5000, fixed_hazard_ids=[str(hazard.id)])), now)
    fixed = await session.get(Hazard, hazard.id, populate_existing=True)
    assert (fixed.status, fixed.fixed_order_id) == ("fixed", followup.id)
    assert await reports.open_hazards(session, now=now) == []


async def _admin(session: AsyncSession):  # noqa: ANN202
    from tests.factories import make_staff

    return await make_staff(session, "admin")
