"""The photo of a certificate: uploaded by its technician while the certification is pending,
checked to be the image it claims, replaced by a new upload, seen by him, operations and auditors."""

import hashlib
import io
import uuid

import pytest
from httpx import AsyncClient, Response
from PIL import Image
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.certificate_photos import MAX_BYTES, CertificatePhoto
from dispatch.technicians import certifications_of
from tests.factories import TechnicianCtx, make_customer, make_staff, make_technician


def image(fmt: str, size: tuple[int, int] = (320, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


async def pending_certification(session: AsyncSession, kinds: tuple[str, ...] = ("repair",),
                                ) -> tuple[TechnicianCtx, uuid.UUID]:
    tech = await make_technician(session, kinds=kinds, status="pending")
    return tech, (await certifications_of(session, tech.technician.id))[0].id


async def put_photo(client: AsyncClient, headers: dict[str, str], certification_id: uuid.UUID, body: bytes,
                    content_type: str) -> Response:
    return await client.put(f"/v1/technicians/me/certifications/{certification_id}/photo", content=body,
                            headers={**headers, "Content-Type": content_type})


def slug(response: Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.json()["type"].removeprefix("/problems/")


@pytest.mark.parametrize("fmt,media_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
async def test_owner_operations_and_auditor_see_the_uploaded_photo(
    client: AsyncClient, session: AsyncSession, fmt: str, media_type: str,
) -> None:
    tech, cert_id = await pending_certification(session, kinds=("repair", "inspection"))
    body = image(fmt)
    uploaded = await put_photo(client, tech.headers, cert_id, body, media_type)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert uploaded.json()["size_bytes"] == len(body)
    _, admin = await make_staff(session, "admin")
    _, auditor = await make_staff(session, "auditor")
    for headers in (tech.headers, admin, auditor):
        photo = await client.get(f"/v1/certifications/{cert_id}/photo", headers=headers)
        assert photo.status_code == 200, photo.text
        assert photo.headers["content-type"] == media_type
        assert photo.content == body
    queue = (await client.get("/v1/ops/certifications", headers=admin)).json()["data"]
    assert {a["certification"]["id"]: a["has_photo"] for a in queue if a["applicant"]["id"] == str(tech.technician.id)} \
        == {str(c.id): c.id == cert_id for c in await certifications_of(session, tech.technician.id)}
    mine = (await client.get("/v1/technicians/me/certifications", headers=tech.headers)).json()["data"]
    assert {c["id"]: c["has_photo"] for c in mine} == {str(c.id): c.id == cert_id
                                                       for c in await certifications_of(session, tech.technician.id)}


async def test_another_technician_or_a_customer_cannot_see_or_replace_the_photo(
    client: AsyncClient, session: AsyncSession,
) -> None:
    tech, cert_id = await pending_certification(session)
    assert (await put_photo(client, tech.headers, cert_id, image("PNG"), "image/png")).status_code == 200
    other, _ = await pending_certification(session)
    customer = await make_customer(session)
    for headers in (other.headers, customer.headers):
        refused = await client.get(f"/v1/certifications/{cert_id}/photo", headers=headers)
        assert refused.status_code == 404 and slug(refused) == "not-found"
    replaced = await put_photo(client, other.headers, cert_id, image("JPEG"), "image/jpeg")
    assert replaced.status_code == 404 and slug(replaced) == "not-found"
    kept = await client.get(f"/v1/certifications/{cert_id}/photo", headers=tech.headers)
    assert kept.headers["content-type"] == "image/png"


async def test_a_certification_without_photo_answers_404(client: AsyncClient, session: AsyncSession) -> None:
    tech, cert_id = await pending_certification(session)
    _, admin = await make_staff(session, "admin")
    for headers in (tech.headers, admin):
        assert (await client.get(f"/v1/certifications/{cert_id}/photo", headers=headers)).status_code == 404
    assert (await client.get(f"/v1/certifications/{uuid.uuid4()}/photo", headers=admin)).status_code == 404


@pytest.mark.parametrize("status", ["verified", "rejected", "revoked"])
async def test_the_photo_of_a_decided_certification_cannot_change(
    client: AsyncClient, session: AsyncSession, status: str,
) -> None:
    tech = await make_technician(session, kinds=("repair",), status=status)
    cert_id = (await certifications_of(session, tech.technician.id))[0].id
    refused = await put_photo(client, tech.headers, cert_id, image("PNG"), "image/png")
    assert refused.status_code == 409
    assert slug(refused) == "certification-not-pending"
    assert refused.json()["certification_status"] == status


def _truncated_jpeg() -> bytes:
    whole = image("JPEG", (800, 600))
    return whole[: len(whole) // 2]


@pytest.mark.parametrize("body,content_type,status,expected_slug", [
    (b"%PDF-1.7 not an image at all", "image/jpeg", 422, "photo-not-an-image"),
    (b"", "image/png", 422, "photo-not-an-image"),
    (_truncated_jpeg(), "image/jpeg", 422, "photo-not-an-image"),
    (image("PNG"), "image/jpeg", 422, "photo-type-mismatch"),
    (image("JPEG"), "image/webp", 422, "photo-type-mismatch"),
    (image("GIF"), "image/gif", 415, "photo-unsupported-type"),
    (image("PNG"), "application/octet-stream", 415, "photo-unsupported-type"),
    (image("PNG", (40, 40)), "image/png", 422, "photo-bad-dimensions"),
    (image("PNG", (12_000, 120)), "image/png", 422, "photo-bad-dimensions"),
    (image("PNG") + bytes(MAX_BYTES), "image/png", 413, "photo-too-large"),
    (bytes(1_100_000), "image/png", 413, "payload-too-large"),  # the app's body limit, before the route
], ids=["not-an-image", "empty", "truncated", "png-said-jpeg", "jpeg-said-webp", "gif", "octet-stream",
        "tiny", "absurd-side", "over-photo-limit", "over-body-limit"])
async def test_what_is_not_a_photo_of_the_declared_type_is_refused_with_its_slug(
    client: AsyncClient, session: AsyncSession, body: bytes, content_type: str, status: int, expected_slug: str,
) -> None:
    tech, cert_id = await pending_certification(session)
    refused = await put_photo(client, tech.headers, cert_id, body, content_type)
    assert refused.status_code == status, refused.text
    assert slug(refused) == expected_slug
    assert (await client.get(f"/v1/certifications/{cert_id}/photo", headers=tech.headers)).status_code == 404


async def test_a_new_upload_replaces_the_photo(client: AsyncClient, session: AsyncSession) -> None:
    tech, cert_id = await pending_certification(session)
    first, second = image("PNG"), image("JPEG", (640, 480))
    assert (await put_photo(client, tech.headers, cert_id, first, "image/png")).status_code == 200
    assert (await client.get(f"/v1/certifications/{cert_id}/photo", headers=tech.headers)).content == first
    assert (await put_photo(client, tech.headers, cert_id, second, "image/jpeg")).status_code == 200
    shown = await client.get(f"/v1/certifications/{cert_id}/photo", headers=tech.headers)
    assert shown.headers["content-type"] == "image/jpeg" and shown.content == second
    rows = (await session.exec(select(func.count()).select_from(CertificatePhoto)
                               .where(CertificatePhoto.certification_id == cert_id))).one()
    assert rows == 1
