"""Photos of a job: uploaded by its technician on site, named by the report and its hazards only
when uploaded for that order, seen by the order's people, operations and auditors."""

import hashlib
from datetime import datetime, timezone

from httpx import AsyncClient, Response
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.field.models import JobPhoto
from tests.factories import make_customer, make_staff, make_technician
from tests.field.support import accepted_job, in_service_job, png, report, upload_photo


def slug(response: Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.json()["type"].removeprefix("/problems/")


async def test_the_technician_on_site_uploads_a_photo_and_the_same_image_again_is_the_same_photo(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    first = await upload_photo(client, job)
    again = await upload_photo(client, job)
    assert first == again == hashlib.sha256(png()).hexdigest()
    count = (await session.exec(select(func.count()).select_from(JobPhoto).where(JobPhoto.order_id == job.order.id))).one()
    assert count == 1


async def test_a_photo_before_the_technician_is_on_site_is_refused_with_the_current_state(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await accepted_job(session, redis, datetime.now(timezone.utc))
    response = await client.post(f"/v1/jobs/{job.order.id}/photos", content=png(),
                                 headers={**job.technician.headers, "Content-Type": "image/png"})
    assert response.status_code == 409
    assert (slug(response), response.json()["current_state"]) == ("illegal-transition", "accepted")


async def test_a_photo_for_another_technicians_order_is_not_found(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    other = await make_technician(session)
    response = await client.post(f"/v1/jobs/{job.order.id}/photos", content=png(),
                                 headers={**other.headers, "Content-Type": "image/png"})
    assert (response.status_code, slug(response)) == (404, "not-found")


async def test_a_body_that_is_not_an_accepted_image_is_refused_with_its_slug(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    url = f"/v1/jobs/{job.order.id}/photos"
    broken = await client.post(url, content=b"not a picture", headers={**job.technician.headers, "Content-Type": "image/png"})
    assert (broken.status_code, slug(broken)) == (422, "photo-not-an-image")
    typed = await client.post(url, content=png(), headers={**job.technician.headers, "Content-Type": "text/plain"})
    assert (typed.status_code, slug(typed)) == (415, "photo-unsupported-type")
    tiny = await client.post(url, content=png(size=(20, 20)), headers={**job.technician.headers, "Content-Type": "image/png"})
    assert (tiny.status_code, slug(tiny)) == (422, "photo-bad-dimensions")


async def test_a_report_naming_photos_not_uploaded_for_the_order_is_refused(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    ref = await upload_photo(client, job)
    unknown = hashlib.sha256(b"elsewhere").hexdigest()
    hazard = {"category": "aged_hose", "severity": "minor", "resolution": "fixed_on_site", "photo_refs": [ref],
              "fix": {"work_done": "replaced the hose", "parts": [], "photo_refs": [unknown]}}
    refused = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=job.technician.headers,
                                json=report(8000, photo_refs=[ref, "s3://photos/a.jpg"], hazards=[hazard]))
    assert (refused.status_code, slug(refused)) == (422, "unknown-photo-refs")
    assert refused.json()["unknown_refs"] == sorted([unknown, "s3://photos/a.jpg"])
    hazard["fix"]["photo_refs"] = [ref]
    done = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=job.technician.headers,
                             json=report(8000, photo_refs=[ref], hazards=[hazard]))
    assert done.status_code == 200, done.text


async def test_the_photo_is_seen_by_the_orders_people_and_staff_and_not_found_for_others(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    job = await in_service_job(session, redis)
    ref = await upload_photo(client, job)
    done = await client.post(f"/v1/jobs/{job.order.id}/complete", headers=job.technician.headers,
                             json=report(8000, photo_refs=[ref]))
    assert done.status_code == 200, done.text
    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    url = f"/v1/orders/{job.order.id}/photos/{ref}"
    for headers in (job.customer.headers, job.technician.headers, admin, auditor):
        seen = await client.get(url, headers=headers)
        assert (seen.status_code, seen.headers["content-type"], seen.content) == (200, "image/png", png())
    for headers in ((await make_customer(session)).headers, (await make_technician(session)).headers):
        hidden = await client.get(url, headers=headers)
        assert (hidden.status_code, slug(hidden)) == (404, "not-found")
    missing = await client.get(f"/v1/orders/{job.order.id}/photos/{hashlib.sha256(b'none').hexdigest()}", headers=admin)
    assert (missing.status_code, slug(missing)) == (404, "not-found")
    posted = await client.post(f"/v1/jobs/{job.order.id}/photos", content=png(1),
                               headers={**auditor, "Content-Type": "image/png"})
    assert posted.status_code == 403 and slug(posted) == "forbidden"
