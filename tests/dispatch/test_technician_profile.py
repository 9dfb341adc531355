"""The technician as his customer sees him on the order (photo, rating, usable certifications,
never the phone), his portrait upload, and his own onboarding records."""

import io
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from PIL import Image
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch import service as dispatch
from dispatch import technicians as techs
from dispatch.models import Certification
from tests.factories import (
    CustomerCtx,
    TechnicianCtx,
    make_customer,
    make_staff,
    make_technician,
)
from tests.ratings.factories import completed_order, finalized_review


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (240, 320), (20, 90, 160)).save(out, format="JPEG")
    return out.getvalue()


async def taken_order(session: AsyncSession, until: str = "accept") -> tuple[CustomerCtx, TechnicianCtx, str]:
    customer = await make_customer(session)
    tech = await make_technician(session, kinds=("repair",))
    return customer, tech, str((await completed_order(session, customer, tech, until=until)).id)


async def test_the_orders_customer_sees_photo_rating_and_usable_certifications(client: AsyncClient, session: AsyncSession) -> None:
    customer, tech, order_id = await taken_order(session, "complete")
    now = datetime.now(UTC)
    session.add(Certification(technician_id=tech.technician.id, kind="emergency", number="P-1", issuer="x",
                              valid_from=now, valid_until=now + timedelta(days=300), status="pending"))
    await session.flush()
    url = f"/v1/orders/{order_id}/technician/profile"

    before = (await client.get(url, headers=customer.headers)).json()
    assert before["name"] == "韩梅梅" and before["has_photo"] is False and before["rating"] is None
    assert [c["kind"] for c in before["certifications"]] == ["repair"]  # the pending one is not shown
    assert "phone" not in before and "number" not in before["certifications"][0]

    photo = jpeg()
    put = await client.put("/v1/technicians/me/photo", content=photo, headers={**tech.headers, "Content-Type": "image/jpeg"})
    assert put.status_code == 200, put.text
    await finalized_review(session, customer, tech, stars=4, at=datetime.now(UTC) - timedelta(minutes=5))

    after = (await client.get(url, headers=customer.headers)).json()
    assert after["has_photo"] is True
    assert after["rating"]["count"] == 1 and 1 <= after["rating"]["score"] <= 5
    shown = await client.get(f"/v1/orders/{order_id}/technician/photo", headers=customer.headers)
    assert shown.status_code == 200 and shown.content == photo and shown.headers["content-type"] == "image/jpeg"


async def test_nobody_else_sees_the_profile_or_the_photo(client: AsyncClient, session: AsyncSession) -> None:
    _, tech, order_id = await taken_order(session)
    await client.put("/v1/technicians/me/photo", content=jpeg(), headers={**tech.headers, "Content-Type": "image/jpeg"})
    stranger = await make_customer(session)
    for path in ("profile", "photo"):
        assert (await client.get(f"/v1/orders/{order_id}/technician/{path}", headers=stranger.headers)).status_code == 404
        assert (await client.get(f"/v1/orders/{order_id}/technician/{path}", headers=tech.headers)).status_code == 403
    assert (await client.get(f"/v1/orders/{order_id}/technician/profile")).status_code == 401


async def test_an_order_nobody_took_has_no_technician_to_show(client: AsyncClient, session: AsyncSession) -> None:
    customer = await make_customer(session)
    order = await dispatch.create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                        kind="repair", actor=dispatch.Actor("customer", str(customer.account.id)))
    response = await client.get(f"/v1/orders/{order.id}/technician/profile", headers=customer.headers)
    assert response.status_code == 404


async def test_a_portrait_is_set_only_by_uploading_a_real_image(client: AsyncClient, session: AsyncSession) -> None:
    customer, tech, order_id = await taken_order(session)
    forged = await client.patch("/v1/technicians/me", headers=tech.headers, json={"photo_ref": "portrait:image/jpeg:" + "0" * 64})
    assert forged.status_code == 422 and forged.json()["type"] == "/problems/invalid-input"
    not_image = await client.put("/v1/technicians/me/photo", content=b"not a picture" * 20,
                                 headers={**tech.headers, "Content-Type": "image/jpeg"})
    assert not_image.status_code == 422, not_image.text
    # A free-text reference (what the profile edit may still hold) is no photo to serve.
    assert (await client.patch("/v1/technicians/me", headers=tech.headers, json={"photo_ref": "/media/x.jpg"})).status_code == 200
    assert (await client.get(f"/v1/orders/{order_id}/technician/photo", headers=customer.headers)).status_code == 404


async def test_a_technician_reads_his_own_training_and_exam_records(client: AsyncClient, session: AsyncSession) -> None:
    applicant = await make_technician(session, kinds=())
    other = await make_technician(session, kinds=())
    admin, _ = await make_staff(session, "admin")
    held = datetime.now(UTC) - timedelta(days=2)
    await techs.record_training(session, technician_id=applicant.technician.id, record_type="training", kind="repair",
                                held_at=held, score=None, passed=None, certificate_number=None, valid_years=3,
                                issuer="gas utility", recorded_by=admin.id)
    await techs.record_training(session, technician_id=applicant.technician.id, record_type="exam", kind="repair",
                                held_at=held + timedelta(days=1), score=88, passed=True, certificate_number="EX-1",
                                valid_years=3, issuer="gas utility", recorded_by=admin.id)
    mine = (await client.get("/v1/technicians/me/training-records", headers=applicant.headers)).json()["data"]
    assert [(r["record_type"], r["score"], r["passed"]) for r in mine] == [("training", None, None), ("exam", 88, True)]
    assert mine[1]["certification_id"] is not None  # the pass issued a certification, pending verification
    assert (await client.get("/v1/technicians/me/training-records", headers=other.headers)).json()["data"] == []
    customer = await make_customer(session)
    assert (await client.get("/v1/technicians/me/training-records", headers=customer.headers)).status_code == 403
