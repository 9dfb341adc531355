"""Field execution: the technician's job steps, identity at the door, price approvals,
hazards for operations and station KPIs. The logic lives in dispatch.field."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import (
    CurrentCustomer,
    CurrentPrincipal,
    CurrentTechnician,
    IdempotencyKey,
    RedisDep,
    SessionDep,
    Staff,
    remember_idempotent,
    replay_idempotent,
)
from api.errors import domain_problem
from dispatch import service
from dispatch.accounts import customer_for_account, technician_for_account
from dispatch.field import identity, kpis, photos, reports, visits
from dispatch.field.models import PHOTO_FORMATS, Hazard, PriceChange
from dispatch.models import Order
from dispatch.security import Principal
from kit.db import database_now
from kit.errors import InvalidInput
from kit.geo import to_geojson
from kit.schemas import Input, Money, Page

router = APIRouter(tags=["field"])

Token = Annotated[str, Path(min_length=10, max_length=1000)]


async def _now(session: AsyncSession) -> datetime:
    """The database's clock: field steps are judged on one clock, whatever this process's says."""
    return await database_now(session)


class JobStatus(BaseModel):
    order_id: uuid.UUID
    status: str


class QrPublic(BaseModel):
    token: str
    expires_at: datetime


class CodeBody(Input):
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class QrBody(Input):
    token: Annotated[str, StringConstraints(min_length=10, max_length=1000)]


class WaiveBody(Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] | None = None


class NoAccessBody(Input):
    photo_ref: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class JobPhotoPublic(BaseModel):
    ref: str  # the image's sha256, for photo_refs
    media_type: str
    size_bytes: int
    uploaded_at: datetime


PhotoRef = Annotated[str, Path(pattern="^[0-9a-f]{64}$")]
_PHOTO_BODY = {"requestBody": {"required": True, "content": {
    media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in PHOTO_FORMATS}}}


class PriceChangeDecision(Input):
    """The change the customer was shown: deciding fails with 409 once it is no longer pending."""

    price_change_id: uuid.UUID


class PriceChangePublic(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    amount: Money
    authorised: Money
    requested_at: datetime
    decided_at: datetime | None


class CompletionPublic(BaseModel):
    order_id: uuid.UUID
    status: str
    report_id: uuid.UUID | None = None
    price_change: PriceChangePublic | None = None


class IdentityCardPublic(BaseModel):
    technician_id: uuid.UUID
    name: str
    photo_ref: str | None
    station: str | None
    certification_kind: str | None
    certification_number: str | None
    code: str | None  # hidden once identity is settled or the code is locked
    code_expires_at: datetime | None
    verification: str | None


class PublicVerification(BaseModel):
    technician_name: str
    station: str | None
    certification_kind: str
    certificate_valid: bool
    certificate_valid_until: datetime | None


class VerificationPublic(BaseModel):
    method: str
    succeeded: bool
    actor_role: str
    created_at: datetime


class HazardFixPublic(BaseModel):
    work_done: str
    parts: list[dict[str, Any]]
    photo_refs: list[str]


class HazardPublic(BaseModel):
    """Category, severity and resolution are slugs the apps translate; description and the fix's
    work_done are what the technician wrote."""

    id: uuid.UUID
    order_id: uuid.UUID
    station_id: uuid.UUID | None
    category: str
    severity: str
    description: str
    photo_refs: list[str]  # of the hazard as found, on the order that found it; the fix's are on fix
    resolution: str
    deadline_at: datetime | None  # none when fixed on site
    status: str
    fix: HazardFixPublic | None
    followup_order_id: uuid.UUID | None
    found_at: datetime
    fixed_at: datetime | None
    age_days: int


class VisitPublic(BaseModel):
    order_id: uuid.UUID
    technician_id: uuid.UUID | None
    outcome: str
    verification: str | None
    verified_at: datetime | None
    departed_at: datetime | None
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    time_on_site_s: int | None
    no_access_photo_ref: str | None
    no_access_position: dict | None
    verifications: list[VerificationPublic]
    report: dict[str, Any] | None
    hazards: list[HazardPublic]
    # On a follow-up order: the hazard it was created to rectify.
    followup_for: HazardPublic | None
    pending_price_change: PriceChangePublic | None


class KpiPublic(BaseModel):
    station_id: uuid.UUID
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    orders_by_kind: dict[str, dict[str, int]]
    home_entry_rate: float | None
    median_arrival_min: float | None
    first_visit_fix_rate: float | None
    open_hazards_by_age: dict[str, int]


def _price_change(c: PriceChange) -> PriceChangePublic:
    return PriceChangePublic(id=c.id, order_id=c.order_id, status=c.status,
                             amount=Money(amount_minor=c.amount_minor, currency=c.currency),
                             authorised=Money(amount_minor=c.authorised_minor, currency=c.currency),
                             requested_at=c.requested_at, decided_at=c.decided_at)


def _hazard(h: Hazard, now: datetime) -> HazardPublic:
    fix = (HazardFixPublic(work_done=h.fix_work_done, parts=h.fix_parts, photo_refs=h.fix_photo_refs)
           if h.fix_work_done is not None else None)
    return HazardPublic(id=h.id, order_id=h.order_id, station_id=h.station_id, category=h.category,
                        severity=h.severity, description=h.description, photo_refs=h.photo_refs, resolution=h.resolution,
                        deadline_at=h.deadline_at, status=h.status, fix=fix, followup_order_id=h.followup_order_id,
                        found_at=h.found_at, fixed_at=h.fixed_at, age_days=(now - h.found_at).days)


def _job(order: Order) -> JobStatus:
    return JobStatus(order_id=order.id, status=order.status)


async def _customer_order(session: SessionDep, customer_id: uuid.UUID, order_id: uuid.UUID) -> Order:
    return await service.get_order_for(session, order_id, role="customer", customer_id=customer_id)


# Technician ---------------------------------------------------------------------------------

@router.get("/v1/jobs/{order_id}/qr")
async def job_qr(order_id: uuid.UUID, technician: CurrentTechnician, session: SessionDep) -> QrPublic:
    now = await _now(session)
    order = await visits.held_order(session, order_id, technician.id)
    await identity.ensure_visit(session, order, now)
    token, expires_at = identity.sign_qr(order.id, technician.id, now)
    return QrPublic(token=token, expires_at=expires_at)


@router.post("/v1/jobs/{order_id}/verify-code", responses={422: {}, 429: {}})
async def job_verify_code(order_id: uuid.UUID, body: CodeBody, technician: CurrentTechnician,
                          session: SessionDep) -> Any:
    order = await visits.held_order(session, order_id, technician.id)
    refusal = await identity.submit_code(session, order, technician.id, body.code, await _now(session))
    if refusal is not None:
        # Returned, not raised: the request commits, so the failure count and the lock stay.
        return domain_problem(refusal)
    return {"order_id": str(order.id), "verification": "code"}


# The phone queues these steps and the report while offline and sends them again when the
# connection returns, with the Idempotency-Key it made when he tapped: a step whose first answer was
# lost is answered from the record instead of refused as an illegal transition.
_IDEMPOTENT = {409: {"description": "Idempotency-Key reused with another request"}}


async def _step(session: AsyncSession, principal: Principal, key: str | None, order_id: uuid.UUID, step: str,
                run: Callable[[datetime], Awaitable[Order]]) -> Any:
    route = f"POST /v1/jobs/{order_id}/{step}"
    request_hash, replay = await replay_idempotent(session, principal, key, route, {})
    if replay is not None:
        return replay
    job = _job(await run(await _now(session)))
    await remember_idempotent(session, principal, key, route, request_hash, 200, job)
    return job


@router.post("/v1/jobs/{order_id}/depart", response_model=JobStatus, responses=_IDEMPOTENT)
async def job_depart(order_id: uuid.UUID, technician: CurrentTechnician, principal: CurrentPrincipal,
                     session: SessionDep, redis: RedisDep, idempotency_key: IdempotencyKey = None) -> Any:
    return await _step(session, principal, idempotency_key, order_id, "depart",
                       lambda now: visits.depart(session, redis, order_id, technician.id, now))


@router.post("/v1/jobs/{order_id}/arrive", response_model=JobStatus, responses=_IDEMPOTENT)
async def job_arrive(order_id: uuid.UUID, technician: CurrentTechnician, principal: CurrentPrincipal,
                     session: SessionDep, redis: RedisDep, idempotency_key: IdempotencyKey = None) -> Any:
    return await _step(session, principal, idempotency_key, order_id, "arrive",
                       lambda now: visits.arrive(session, redis, order_id, technician.id, now))


@router.post("/v1/jobs/{order_id}/start", response_model=JobStatus, responses=_IDEMPOTENT)
async def job_start(order_id: uuid.UUID, technician: CurrentTechnician, principal: CurrentPrincipal,
                    session: SessionDep, idempotency_key: IdempotencyKey = None) -> Any:
    return await _step(session, principal, idempotency_key, order_id, "start",
                       lambda now: visits.start(session, order_id, technician.id, now))


@router.post("/v1/jobs/{order_id}/no-access")
async def job_no_access(order_id: uuid.UUID, body: NoAccessBody, technician: CurrentTechnician, session: SessionDep,
                        redis: RedisDep) -> JobStatus:
    return _job(await visits.no_access(session, redis, order_id, technician.id, body.photo_ref, await _now(session)))


@router.post("/v1/jobs/{order_id}/complete", responses={202: {"model": CompletionPublic}, **_IDEMPOTENT})
async def job_complete(order_id: uuid.UUID, body: reports.WorkReportIn, technician: CurrentTechnician,
                       principal: CurrentPrincipal, session: SessionDep, idempotency_key: IdempotencyKey = None) -> Any:
    """200 with the completed order; 202 when the final price waits for the customer's approval."""
    route = f"POST /v1/jobs/{order_id}/complete"
    request_hash, replay = await replay_idempotent(session, principal, idempotency_key, route, body)
    if replay is not None:
        return replay
    done = await reports.complete(session, order_id, technician.id, body, await _now(session))
    if done.price_change is not None:
        pending = CompletionPublic(order_id=done.order.id, status=done.order.status,
                                   price_change=_price_change(done.price_change))
        await remember_idempotent(session, principal, idempotency_key, route, request_hash, 202, pending)
        return JSONResponse(pending.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    completed = CompletionPublic(order_id=done.order.id, status=done.order.status,
                                 report_id=done.report.id if done.report else None)
    await remember_idempotent(session, principal, idempotency_key, route, request_hash, 200, completed)
    return completed


@router.post("/v1/jobs/{order_id}/photos", status_code=status.HTTP_201_CREATED, openapi_extra=_PHOTO_BODY, responses={
    404: {"description": "No such order of yours"}, 409: {"description": "Not on site now (current_state)"},
    413: {"description": "Larger than the limit (max_bytes)"}, 415: {"description": "Not JPEG, PNG or WebP"},
    422: {"description": "Not the image it claims to be, or absurd dimensions"}})
async def job_photo_upload(order_id: uuid.UUID, request: Request, technician: CurrentTechnician,
                           session: SessionDep) -> JobPhotoPublic:
    """A photo taken on site (the raw image as the body), for the report and its hazards to name by `ref`."""
    stored = await photos.upload(session, order_id=order_id, technician_id=technician.id, content=await request.body(),
                                 content_type=request.headers.get("content-type"), now=await _now(session))
    return JobPhotoPublic(**stored.__dict__)


# Customer -----------------------------------------------------------------------------------

@router.get("/v1/orders/{order_id}/technician")
async def technician_card(order_id: uuid.UUID, customer: CurrentCustomer, session: SessionDep) -> IdentityCardPublic:
    order = await _customer_order(session, customer.id, order_id)
    card = await identity.identity_card(session, order, await _now(session))
    return IdentityCardPublic(**card.__dict__)


@router.post("/v1/orders/{order_id}/verify-technician")
async def verify_technician(order_id: uuid.UUID, body: QrBody, customer: CurrentCustomer,
                            session: SessionDep) -> dict[str, str]:
    order = await _customer_order(session, customer.id, order_id)
    await identity.verify_qr(session, order, body.token, service.Actor("customer", str(customer.account_id)), await _now(session))
    return {"order_id": str(order.id), "verification": "qr"}


@router.post("/v1/orders/{order_id}/waive-verification")
async def waive_verification(order_id: uuid.UUID, body: WaiveBody, customer: CurrentCustomer,
                             session: SessionDep) -> dict[str, str]:
    order = await _customer_order(session, customer.id, order_id)
    await identity.waive(session, order, service.Actor("customer", str(customer.account_id)), body.reason, await _now(session))
    return {"order_id": str(order.id), "verification": "waived"}


@router.post("/v1/orders/{order_id}/price-change/approve", responses={409: {}})
async def approve_price_change(order_id: uuid.UUID, body: PriceChangeDecision, customer: CurrentCustomer,
                               session: SessionDep) -> PriceChangePublic:
    return _price_change(await reports.decide_price_change(
        session, order_id, customer.id, body.price_change_id, True, await _now(session)))


@router.post("/v1/orders/{order_id}/price-change/reject", responses={409: {}})
async def reject_price_change(order_id: uuid.UUID, body: PriceChangeDecision, customer: CurrentCustomer,
                              session: SessionDep) -> PriceChangePublic:
    return _price_change(await reports.decide_price_change(
        session, order_id, customer.id, body.price_change_id, False, await _now(session)))


async def _visible(session: SessionDep, principal: Principal, order_id: uuid.UUID) -> Order:
    scope: dict = {}
    if principal.role == "customer":
        scope["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        scope["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    return await service.get_order_for(session, order_id, role=principal.role, **scope)


@router.get("/v1/orders/{order_id}/visit")
async def order_visit(order_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> VisitPublic:
    """The proof of visit kept on the order: checks at the door, check-in/out, report, hazards."""
    now = await _now(session)
    order = await _visible(session, principal, order_id)
    visit = await visits.visit_of(session, order.id)
    report = await reports.report_of(session, order.id)
    pending = await reports.pending_price_change(session, order)
    rectifies = await reports.hazard_followed_up_by(session, order.id)
    on_site = (int((visit.checked_out_at - visit.checked_in_at).total_seconds())
               if visit and visit.checked_in_at and visit.checked_out_at else None)
    return VisitPublic(
        order_id=order.id, technician_id=visit.technician_id if visit else None,
        outcome=visit.outcome if visit else "open", verification=visit.verification if visit else None,
        verified_at=visit.verified_at if visit else None, departed_at=visit.departed_at if visit else None,
        checked_in_at=visit.checked_in_at if visit else None, checked_out_at=visit.checked_out_at if visit else None,
        time_on_site_s=on_site, no_access_photo_ref=visit.no_access_photo_ref if visit else None,
        no_access_position=to_geojson(visit.no_access_location) if visit else None,
        verifications=[VerificationPublic(method=v.method, succeeded=v.succeeded, actor_role=v.actor_role,
                                          created_at=v.created_at) for v in await identity.verifications(session, order.id)],
        report=report.model_dump(mode="json", exclude={"technician_id"}) if report else None,
        hazards=[_hazard(h, now) for h in await reports.hazards_of(session, order.id)],
        followup_for=_hazard(rectifies, now) if rectifies else None,
        pending_price_change=_price_change(pending) if pending else None,
    )


@router.get("/v1/orders/{order_id}/photos/{ref}", response_class=Response, responses={
    200: {"content": {media_type: {} for media_type in PHOTO_FORMATS}, "description": "The image"},
    404: {"description": "No such photo, or not an order you may see"}})
async def job_photo(order_id: uuid.UUID, ref: PhotoRef, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """For the order's customer, its technicians, operations and auditors."""
    scope: dict = {}
    if principal.role == "customer":
        scope["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        scope["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    photo = await photos.photo_for(session, order_id, ref, role=principal.role, **scope)
    return Response(content=photo.content, media_type=photo.media_type, headers={
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
        # Opened on its own in a tab, the image can run nothing.
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        "Content-Disposition": f'inline; filename="job-photo-{ref[:12]}"'})


# Public, operations -------------------------------------------------------------------------

@router.get("/v1/verify/{token}")
async def public_verify(token: Token, session: SessionDep) -> PublicVerification:
    """For anyone holding the QR, without signing in: name, station and certificate validity only."""
    check = await identity.public_check(session, token, await _now(session))
    return PublicVerification(**check.__dict__)


@router.get("/v1/hazards")
async def list_hazards(
    _: Staff, session: SessionDep, station_id: uuid.UUID | None = None,
    min_age_days: Annotated[int, Query(ge=0, le=3650)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[HazardPublic]:
    now = await _now(session)
    rows = await reports.open_hazards(session, now=now, station_id=station_id, min_age_days=min_age_days, limit=limit)
    return Page(data=[_hazard(h, now) for h in rows])


@router.get("/v1/stations/{station_id}/kpis")
async def station_kpis(
    station_id: uuid.UUID, _: Staff, session: SessionDep,
    start: Annotated[datetime, Query(alias="from")], end: Annotated[datetime, Query(alias="to")],
) -> Any:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("from and to need a time zone (RFC 3339)")
    if end <= start:
        raise InvalidInput("to must be after from")
    figures = await kpis.station_kpis(session, station_id, start, end)
    body = KpiPublic(station_id=station_id, from_=start, to=end, **figures.__dict__)
    return body.model_dump(mode="json", by_alias=True)
