import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel
from sqlmodel import select

from api import presenters
from api.deps import (
    Admin,
    CurrentCustomer,
    CurrentPrincipal,
    CurrentTechnician,
    SessionDep,
    Staff,
)
from api.errors import PROBLEM_JSON
from dispatch import certificate_photos as photos
from dispatch import service as orders
from dispatch import technician_photo
from dispatch import technicians as techs
from dispatch.accounts import technician_for_account
from dispatch.models import Certification, ServiceStation, Technician, TrainingRecord
from dispatch.schemas import (
    CertificationCreate,
    CertificationPublic,
    Decision,
    TechnicianPublic,
    TechnicianUpdate,
    TrainingRecordCreate,
    TrainingRecordPublic,
)
from kit.errors import NotFound
from kit.pagination import page_of, paginate
from kit.schemas import Page
from ratings import service as ratings

router = APIRouter(tags=["technicians"])


class MyCertificationPublic(CertificationPublic):
    has_photo: bool
    photo_uploaded_at: datetime | None


class ProfileCertification(BaseModel):
    kind: str
    issuer: str
    valid_until: datetime


class ProfileRating(BaseModel):
    score: float  # 1-5, the reputation the matching engine ranks by
    count: int


class TechnicianProfilePublic(BaseModel):
    """What an order's customer sees of its technician: never his phone or certificate numbers."""

    id: uuid.UUID
    name: str
    station: str | None
    has_photo: bool
    rating: ProfileRating | None  # None until a review counts
    certifications: list[ProfileCertification]  # the usable ones


class PortraitPublic(BaseModel):
    photo_ref: str


class CertificatePhotoPublic(BaseModel):
    certification_id: uuid.UUID
    media_type: str
    size_bytes: int
    sha256: str
    uploaded_at: datetime


_PHOTO_BODY = {"requestBody": {"required": True, "content": {
    media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in photos.FORMATS}}}


@router.get("/v1/technicians/me")
async def me(technician: CurrentTechnician, session: SessionDep) -> TechnicianPublic:
    return presenters.technician(technician, await techs.certifications_of(session, technician.id))


@router.patch("/v1/technicians/me")
async def update_me(body: TechnicianUpdate, technician: CurrentTechnician, session: SessionDep) -> TechnicianPublic:
    technician_photo.refuse_forged(body.photo_ref)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(technician, field, value)
    session.add(technician)
    await session.flush()
    return presenters.technician(technician, await techs.certifications_of(session, technician.id))


def _image(photo: photos.PhotoFile, name: str) -> Response:
    return Response(content=photo.content, media_type=photo.media_type, headers={
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        "Content-Disposition": f'inline; filename="{name}"'})


@router.put("/v1/technicians/me/photo", openapi_extra=_PHOTO_BODY, responses={
    413: {"description": "Larger than the limit (max_bytes)"}, 415: {"description": "Not JPEG, PNG or WebP"},
    422: {"description": "Not the image it claims to be, or absurd dimensions"}})
async def upload_portrait(request: Request, technician: CurrentTechnician, session: SessionDep) -> PortraitPublic:
    """His portrait (the raw image as the body), shown to the customers of his orders; a new one replaces the last."""
    return PortraitPublic(photo_ref=await technician_photo.upload(
        session, technician, await request.body(), request.headers.get("content-type")))


@router.get("/v1/technicians/me/training-records")
async def my_training_records(technician: CurrentTechnician, session: SessionDep) -> Page[TrainingRecordPublic]:
    """His onboarding as the utility recorded it: training sessions attended, exams taken and their results."""
    return await _training_records(session, technician.id)


async def _order_technician(session: SessionDep, customer_id: uuid.UUID, order_id: uuid.UUID) -> Technician:
    order = await orders.get_order_for(session, order_id, role="customer", customer_id=customer_id)
    if order.technician_id is None:
        raise NotFound("no technician has taken this order")
    return await techs.get_technician(session, order.technician_id)


@router.get("/v1/orders/{order_id}/technician/profile")
async def order_technician_profile(order_id: uuid.UUID, customer: CurrentCustomer, session: SessionDep) -> TechnicianProfilePublic:
    """The technician who took the customer's order, from acceptance on and in his history after."""
    technician = await _order_technician(session, customer.id, order_id)
    station = await session.get(ServiceStation, technician.station_id) if technician.station_id else None
    reputation = await ratings.technician_reputation(session, technician.id)
    usable = [c for c in await techs.certifications_of(session, technician.id) if techs.certification_usable(c)]
    return TechnicianProfilePublic(
        id=technician.id, name=technician.name, station=station.name if station else None,
        has_photo=technician_photo.is_portrait(technician.photo_ref),
        rating=ProfileRating(score=round(reputation.score, 2), count=reputation.count) if reputation.count else None,
        certifications=[ProfileCertification(kind=c.kind, issuer=c.issuer, valid_until=c.valid_until) for c in usable])


@router.get("/v1/orders/{order_id}/technician/photo", response_class=Response, responses={
    200: {"content": {media_type: {} for media_type in photos.FORMATS}, "description": "The image"},
    404: {"description": "Not your order, no technician, or he has no portrait"}})
async def order_technician_photo(order_id: uuid.UUID, customer: CurrentCustomer, session: SessionDep) -> Response:
    technician = await _order_technician(session, customer.id, order_id)
    return _image(await technician_photo.portrait_of(technician), f"technician-{technician.id}")


@router.get("/v1/technicians/me/certifications")
async def my_certifications(technician: CurrentTechnician, session: SessionDep) -> Page[MyCertificationPublic]:
    certs = await techs.certifications_of(session, technician.id)
    uploaded = await photos.uploaded_at_of(session, [c.id for c in certs])
    return Page(data=[MyCertificationPublic(**presenters.certification(c).model_dump(), has_photo=c.id in uploaded,
                                            photo_uploaded_at=uploaded.get(c.id)) for c in certs])


@router.post("/v1/technicians/me/certifications", status_code=status.HTTP_201_CREATED)
async def submit_certification(body: CertificationCreate, technician: CurrentTechnician, session: SessionDep) -> CertificationPublic:
    """A certificate the technician already holds, submitted for the utility to verify."""
    cert = await techs.add_certification(session, technician_id=technician.id, **body.model_dump())
    return presenters.certification(cert)


@router.put("/v1/technicians/me/certifications/{certification_id}/photo", openapi_extra=_PHOTO_BODY, responses={
    404: {"description": "No such certification of yours"}, 409: {"description": "Already decided (certification_status)"},
    413: {"description": "Larger than the limit (max_bytes)"},
    415: {"description": "Not JPEG, PNG or WebP", "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    422: {"description": "Not the image it claims to be, or absurd dimensions"}})
async def upload_certificate_photo(
    certification_id: uuid.UUID, request: Request, technician: CurrentTechnician, session: SessionDep,
) -> CertificatePhotoPublic:
    """The photo of the certificate (the raw image as the body), while it waits for verification;
    a new one replaces the last."""
    stored = await photos.upload(session, technician_id=technician.id, certification_id=certification_id,
                                 content=await request.body(), content_type=request.headers.get("content-type"))
    return CertificatePhotoPublic(certification_id=certification_id, media_type=stored.media_type,
                                  size_bytes=stored.size_bytes, sha256=stored.sha256, uploaded_at=stored.uploaded_at)


@router.get("/v1/certifications/{certification_id}/photo", response_class=Response, responses={
    200: {"content": {media_type: {} for media_type in photos.FORMATS}, "description": "The image"},
    404: {"description": "No photo, or not a certification you may see"}})
async def certificate_photo(certification_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """For the technician it belongs to, operations and auditors."""
    if principal.role in ("admin", "auditor"):
        owner = None
    elif principal.role == "technician":
        owner = (await technician_for_account(session, principal.account_id)).id
    else:
        raise NotFound("no such certification")
    photo = await photos.photo_of(session, certification_id, owner)
    return Response(content=photo.content, media_type=photo.media_type, headers={
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
        # Opened on its own in a tab, the image can run nothing.
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        "Content-Disposition": f'inline; filename="certificate-{certification_id}"'})


@router.get("/v1/technicians/{technician_id}")
async def get_technician(technician_id: uuid.UUID, staff: Staff, session: SessionDep) -> TechnicianPublic:
    technician = await techs.get_technician(session, technician_id)
    public = presenters.technician(technician, await techs.certifications_of(session, technician.id))
    # An audit checks who was paid and with which certificates; the phone number is operations'.
    return public.model_copy(update={"phone": ""}) if staff.role == "auditor" else public


@router.post("/v1/technicians/{technician_id}/training-records", status_code=status.HTTP_201_CREATED)
async def record_training(technician_id: uuid.UUID, body: TrainingRecordCreate, admin: Admin, session: SessionDep) -> TrainingRecordPublic:
    record = await techs.record_training(
        session, technician_id=technician_id, issuer="gas utility", recorded_by=admin.account_id, **body.model_dump())
    return TrainingRecordPublic.model_validate(record, from_attributes=True)


@router.get("/v1/technicians/{technician_id}/training-records")
async def training_records(technician_id: uuid.UUID, _: Staff, session: SessionDep) -> Page[TrainingRecordPublic]:
    return await _training_records(session, technician_id)


async def _training_records(session: SessionDep, technician_id: uuid.UUID) -> Page[TrainingRecordPublic]:
    rows = (await session.exec(select(TrainingRecord).where(TrainingRecord.technician_id == technician_id)
                               .order_by(TrainingRecord.held_at))).all()
    return Page(data=[TrainingRecordPublic.model_validate(r, from_attributes=True) for r in rows])


@router.get("/v1/certifications")
async def list_certifications(
    _: Staff, session: SessionDep,
    status_filter: Annotated[str | None, Query(alias="status", pattern="^(pending|verified|rejected|revoked)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[CertificationPublic]:
    statement = select(Certification)
    if status_filter:
        statement = statement.where(Certification.status == status_filter)
    rows, next_cursor = page_of(list((await session.exec(paginate(statement, Certification, limit, cursor))).all()), limit)
    return Page(data=[presenters.certification(c) for c in rows], next_cursor=next_cursor)


async def _decide(certification_id: uuid.UUID, decision: str, body: Decision, admin: Admin, session: SessionDep) -> CertificationPublic:
    cert = await techs.decide_certification(
        session, certification_id=certification_id, decision=decision, admin_id=admin.account_id, reason=body.reason)
    return presenters.certification(cert)


@router.post("/v1/certifications/{certification_id}/verify")
async def verify_certification(certification_id: uuid.UUID, body: Decision, admin: Admin, session: SessionDep) -> CertificationPublic:
    return await _decide(certification_id, "verify", body, admin, session)


@router.post("/v1/certifications/{certification_id}/reject")
async def reject_certification(certification_id: uuid.UUID, body: Decision, admin: Admin, session: SessionDep) -> CertificationPublic:
    return await _decide(certification_id, "reject", body, admin, session)


@router.post("/v1/certifications/{certification_id}/revoke")
async def revoke_certification(certification_id: uuid.UUID, body: Decision, admin: Admin, session: SessionDep) -> CertificationPublic:
    return await _decide(certification_id, "revoke", body, admin, session)
