"""The job steps and the report the phone queues while offline and sends again on reconnection:
the same Idempotency-Key is answered from the first response, so a step whose answer was lost is
not refused as an illegal transition, nor done twice."""

from datetime import UTC, datetime

from httpx import AsyncClient
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.field.models import WorkReport
from dispatch.models import OrderEvent
from tests.field.support import accepted_job, in_service_job, report


async def test_a_replayed_depart_with_its_key_gets_the_first_answer(client: AsyncClient, session: AsyncSession, redis) -> None:
    job = await accepted_job(session, redis, datetime.now(UTC))
    headers = {**job.technician.headers, "Idempotency-Key": "depart-1"}
    first = await client.post(f"/v1/jobs/{job.order.id}/depart", headers=headers)
    again = await client.post(f"/v1/jobs/{job.order.id}/depart", headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json() == {"order_id": str(job.order.id), "status": "en_route"}
    assert again.headers["Idempotent-Replayed"] == "true"
    departs = await session.exec(select(func.count()).select_from(OrderEvent).where(
        OrderEvent.order_id == job.order.id, OrderEvent.to_status == "en_route"))
    assert departs.one() == 1

    unkeyed = await client.post(f"/v1/jobs/{job.order.id}/depart", headers=job.technician.headers)
    assert unkeyed.status_code == 409  # without the key it is a second departure
    other_step = await client.post(f"/v1/jobs/{job.order.id}/arrive", headers=headers)
    assert other_step.status_code == 409
    assert other_step.json()["type"] == "/problems/idempotency-key-reused"


async def test_a_replayed_report_completes_the_job_once(client: AsyncClient, session: AsyncSession, redis) -> None:
    job = await in_service_job(session, redis)
    headers = {**job.technician.headers, "Idempotency-Key": "report-1"}
    body = report(job.order.price_estimate_minor)
    first = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=headers, json=body)
    again = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=headers, json=body)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json() and first.json()["status"] == "completed"
    reports = await session.exec(select(func.count()).select_from(WorkReport).where(WorkReport.order_id == job.order.id))
    assert reports.one() == 1
    changed = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=headers, json={**body, "work_done": "other"})
    assert changed.status_code == 409
    assert changed.json()["type"] == "/problems/idempotency-key-reused"
