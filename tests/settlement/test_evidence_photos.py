"""The auditor's evidence bundle carries the job's photos: those its report and hazards name, by
hash, with what each shows and where to fetch it; the archive holds their bytes."""

import hashlib
import io
import json
import uuid
import zipfile

import pytest
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.models import Order
from kit.events import drain
from settlement.models import AuditAccess
from tests.factories import make_customer, make_staff
from tests.field.support import CENTER, in_service_job, png, report, upload_photo
from tests.settlement.support import finalize_review

pytestmark = pytest.mark.usefixtures("settlement_handlers")


async def test_the_evidence_bundle_names_the_jobs_photos_and_the_archive_holds_their_bytes(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    customer = await make_customer(session, lon=CENTER[0], lat=CENTER[1])
    placed = await client.post("/v1/orders", headers=customer.headers,
                               json={"kind": "repair", "address_id": str(customer.address.id)})
    assert placed.status_code == 201, placed.text
    await drain(session)
    order = await session.get(Order, uuid.UUID(placed.json()["id"]))
    job = await in_service_job(session, redis, order=order, customer=customer)
    work, hazard, fix, _unused = [await upload_photo(client, job, shade) for shade in (10, 20, 30, 40)]
    fixed = {"category": "leaking_connector", "severity": "major", "resolution": "fixed_on_site", "photo_refs": [hazard],
             "fix": {"work_done": "new connector", "photo_refs": [fix, work]}}
    done = await client.post(f"/v1/jobs/{order.id}/complete", headers=job.technician.headers,
                             json=report(8000, photo_refs=[work], hazards=[fixed]))
    assert done.status_code == 200, done.text
    await drain(session)
    await finalize_review(session, order, stars=5)

    account, auditor = await make_staff(session, "auditor")
    settlement = next(s for s in (await client.get("/v1/settlements", headers=auditor)).json()["data"]
                      if s["order_id"] == str(order.id))
    bundle = (await client.get(f"/v1/settlements/{settlement['id']}/evidence", headers=auditor)).json()
    hazard_id = next(p for p in bundle["photos"] if p["sha256"] == hazard)["shows"][0]["hazard_id"]
    about = {"hazard_id": hazard_id, "category": "leaking_connector", "severity": "major"}
    assert [(p["sha256"], p["shows"]) for p in bundle["photos"]] == [
        (work, [{"what": "work"}, {"what": "hazard_fix", **about}]),
        (hazard, [{"what": "hazard", **about}]),
        (fix, [{"what": "hazard_fix", **about}]),
    ]  # `unused` was uploaded but never named: no evidence of anything
    first = bundle["photos"][0]
    assert (first["media_type"], first["size_bytes"], first["file"]) == ("image/png", len(png(10)), f"photos/{work}.png")
    fetched = await client.get(first["href"], headers=auditor)
    assert hashlib.sha256(fetched.content).hexdigest() == work

    archive = await client.get(f"/v1/settlements/{settlement['id']}/evidence.zip", headers=auditor)
    assert (archive.status_code, archive.headers["content-type"]) == (200, "application/zip")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == sorted(["evidence.json", *(p["file"] for p in bundle["photos"])])
        assert json.loads(z.read("evidence.json"))["photos"] == bundle["photos"]
        for p in bundle["photos"]:
            assert hashlib.sha256(z.read(p["file"])).hexdigest() == p["sha256"]
    logged = (await session.exec(select(AuditAccess.action).where(AuditAccess.account_id == account.id)
                                 .order_by(AuditAccess.id))).all()
    assert logged == ["list_settlements", "evidence", "job_photo", "evidence_archive"]


async def test_the_evidence_archive_is_for_auditors_and_operations_only(
    client: AsyncClient, session: AsyncSession,
) -> None:
    customer = await make_customer(session)
    response = await client.get(f"/v1/settlements/{uuid.uuid4()}/evidence.zip", headers=customer.headers)
    assert response.status_code == 403
    _, auditor = await make_staff(session, "auditor")
    assert (await client.get(f"/v1/settlements/{uuid.uuid4()}/evidence.zip", headers=auditor)).status_code == 404
