"""The operations console's routes (admins only): one order in full — timeline, offers with the
candidates considered and why, payment, visit, report, hazards, messages — and the actions on
it: assign or reassign, cancel, message; the certification queue with who applied and whether a
photo of the certificate was uploaded; hazards resolved with evidence. The logic lives in
dispatch.assignments, dispatch.ops and matching.manual / matching.candidates."""

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import select

from api import presenters
from api.deps import Admin, RedisDep, SessionDep
from api.ws import ops as ops_ws
from dispatch import assignments, certificate_photos, ops, service
from dispatch.field import reports, visits
from dispatch.field.models import Hazard
from dispatch.models import Address, Customer, Technician
from dispatch.schemas import CertificationPublic, OrderEventPublic, OrderPublic, TrainingRecordPublic
from kit.schemas import Input, Money, Page
from dispatch.security import Principal
from dispatch.states import legal_actions
from matching import candidates, manual
from settlement.models import Payment

router = APIRouter(tags=["operations"])
router.include_router(ops_ws.router)

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
PhotoRef = Annotated[str, StringConstraints(min_length=1, max_length=300)]
# A city id (a slug): lists answer for that city only.
CityFilter = Annotated[str | None, Query(pattern="^[a-z0-9_-]{1,60}$")]


class PersonPublic(BaseModel):
    id: uuid.UUID
    name: str
    phone: str
    status: str | None = None


class CandidatePublic(BaseModel):
    technician_id: uuid.UUID
    technician_name: str | None
    picked: bool
    reason: str | None
    distance_m: float | None
    eta_s: float | None
    rating: float | None
    certification: str | None
    active_jobs: int | None
    max_jobs: int | None
    blocked: bool
    details: dict[str, Any]


class CandidateRound(BaseModel):
    round: int
    created_at: datetime
    candidates: list[CandidatePublic]


class OfferPublic(BaseModel):
    id: uuid.UUID
    technician_id: uuid.UUID
    technician_name: str | None
    status: str
    policy: str
    attempt: int
    distance_m: float
    eta_s: float
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decline_reason: str | None


class PaymentPublic(BaseModel):
    status: str
    held: Money
    captured: Money
    refunded: Money
    updated_at: datetime


class MessagePublic(BaseModel):
    id: uuid.UUID
    recipient: str
    text: str
    created_at: datetime


class OrderDetail(BaseModel):
    order: OrderPublic
    customer: PersonPublic | None
    address: dict[str, str] | None
    technician: PersonPublic | None
    allowed_actions: list[str]
    events: list[OrderEventPublic]
    offers: list[OfferPublic]
    candidate_rounds: list[CandidateRound]
    payment: PaymentPublic | None
    visit: dict[str, Any] | None
    report: dict[str, Any] | None
    hazards: list[dict[str, Any]]
    messages: list[MessagePublic]


class AssignableTechnician(BaseModel):
    technician_id: uuid.UUID
    name: str
    status: str
    assignable: bool
    reason: str | None
    certification: str | None
    active_jobs: int
    max_jobs: int
    distance_m: float | None
    eta_s: float | None
    seen_at: datetime | None


class AssignBody(Input):
    technician_id: uuid.UUID
    reason: Reason | None = None


class AssignResult(BaseModel):
    order: OrderPublic
    previous_technician_id: uuid.UUID | None


class CancelBody(Input):
    reason: Reason


class MessageBody(Input):
    to: Literal["customer", "technician"]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class ResolveBody(Input):
    evidence: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    photo_refs: list[PhotoRef] = Field(default_factory=list, max_length=10)


class ResolvedPublic(BaseModel):
    hazard: dict[str, Any]
    cancelled_followup_order_id: uuid.UUID | None


class ApplicationPublic(BaseModel):
    certification: CertificationPublic
    applicant: PersonPublic
    photo_ref: str | None
    onboarding: str
    training: list[TrainingRecordPublic]
    # The certificate's own photo, at GET /v1/certifications/{id}/photo when there is one.
    has_photo: bool
    photo_uploaded_at: datetime | None


def _actor(admin: Principal) -> service.Actor:
    return service.Actor(admin.role, str(admin.account_id))


def _hazard(h: Hazard) -> dict[str, Any]:
    return h.model_dump(mode="json")


async def _names(session: SessionDep, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.exec(select(Technician.id, Technician.name).where(Technician.id.in_(ids)))  # type: ignore[union-attr]
    return dict(rows.all())


@router.get("/v1/ops/orders/{order_id}")
async def order_detail(order_id: uuid.UUID, _: Admin, session: SessionDep) -> OrderDetail:
    order = await service.get_order(session, order_id)
    customer = await session.get(Customer, order.customer_id)
    address = await session.get(Address, order.address_id)
    technician = await session.get(Technician, order.technician_id) if order.technician_id else None
    offers = await manual.offers_of(session, order.id)
    considered = await candidates.candidates_of(session, order.id)
    names = await _names(session, {o.technician_id for o in offers} | {c.technician_id for c in considered})
    rounds: dict[int, CandidateRound] = {}
    for c in considered:
        rounds.setdefault(c.round, CandidateRound(round=c.round, created_at=c.created_at, candidates=[])).candidates.append(
            CandidatePublic(technician_name=names.get(c.technician_id), **c.model_dump(exclude={"id", "order_id", "round", "rank", "created_at"})))
    payment = await session.get(Payment, order.id)
    visit = await visits.visit_of(session, order.id)
    report = await reports.report_of(session, order.id)
    return OrderDetail(
        order=await presenters.order(session, order),
        customer=PersonPublic(id=customer.id, name=customer.name, phone=customer.phone) if customer else None,
        address={"label": address.label, "line": address.line} if address else None,
        technician=PersonPublic(id=technician.id, name=technician.name, phone=technician.phone, status=technician.status)
        if technician else None,
        allowed_actions=[a for a in legal_actions(order.status) if a in ("assign", "cancel", "consent")],
        events=[presenters.order_event(e) for e in await service.order_events(session, order.id)],
        offers=[OfferPublic(technician_name=names.get(o.technician_id), **o.model_dump(exclude={"order_id"})) for o in offers],
        candidate_rounds=sorted(rounds.values(), key=lambda r: r.round),
        payment=PaymentPublic(
            status=payment.status, held=Money(amount_minor=payment.held_minor, currency=payment.currency),
            captured=Money(amount_minor=payment.captured_minor, currency=payment.currency),
            refunded=Money(amount_minor=payment.refunded_minor, currency=payment.currency), updated_at=payment.updated_at,
        ) if payment else None,
        # The door code is the customer's to give: never shown, not even to operations.
        visit=visit.model_dump(mode="json", exclude={"code", "no_access_location"}) if visit else None,
        report=report.model_dump(mode="json") if report else None,
        hazards=[_hazard(h) for h in await reports.hazards_of(session, order.id)],
        messages=[MessagePublic(id=m.id, recipient=m.payload.get("recipient", ""), text=m.body, created_at=m.created_at)
                  for m in await ops.messages_of(session, order.id)],
    )


@router.get("/v1/ops/orders/{order_id}/technicians")
async def assignable_technicians(
    order_id: uuid.UUID, _: Admin, session: SessionDep, redis: RedisDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> Page[AssignableTechnician]:
    """Every active technician of the order's city and whether he may take the order now (else
    why): the assign picker."""
    order = await service.get_order(session, order_id)
    technicians = list((await session.exec(select(Technician).where(
        Technician.onboarding == "active", Technician.city_id == order.city_id)
        .order_by(Technician.name, Technician.id).limit(limit))).all())
    rows = await manual.assignability(session, redis, order, technicians, datetime.now(timezone.utc))
    rows.sort(key=lambda a: (a.reason is not None, a.distance_m is None, a.distance_m or 0.0, a.technician.name))
    return Page(data=[AssignableTechnician(
        technician_id=a.technician.id, name=a.technician.name, status=a.technician.status, assignable=a.reason is None,
        reason=a.reason, certification=a.certification, active_jobs=a.active_jobs, max_jobs=a.technician.max_jobs,
        distance_m=a.distance_m, eta_s=a.eta_s, seen_at=a.seen_at) for a in rows])


@router.post("/v1/ops/orders/{order_id}/assign", responses={409: {"description": "The order's state does not allow it (current_state)"},
                                                      422: {"description": "The technician cannot take it (reason)"}})
async def assign_order(order_id: uuid.UUID, body: AssignBody, admin: Admin, session: SessionDep,
                       redis: RedisDep) -> AssignResult:
    """Give the order to this technician; whoever held it or had its offer is released and told."""
    done = await assignments.assign(session, redis, order_id, body.technician_id, _actor(admin), reason=body.reason)
    return AssignResult(order=await presenters.order(session, done.order), previous_technician_id=done.previous_technician_id)


@router.post("/v1/ops/orders/{order_id}/cancel", responses={409: {"description": "The order's state does not allow it (current_state)"}})
async def cancel_order(order_id: uuid.UUID, body: CancelBody, admin: Admin, session: SessionDep) -> OrderPublic:
    return await presenters.order(session, await service.cancel_order(session, order_id, _actor(admin), body.reason))


@router.post("/v1/ops/orders/{order_id}/messages", status_code=status.HTTP_201_CREATED)
async def message(order_id: uuid.UUID, body: MessageBody, admin: Admin, session: SessionDep) -> MessagePublic:
    sent = await ops.send_message(session, order_id, body.to, body.text, _actor(admin))
    return MessagePublic(id=sent.id, recipient=body.to, text=sent.body, created_at=sent.created_at)


@router.get("/v1/ops/certifications")
async def certification_queue(
    _: Admin, session: SessionDep,
    status_filter: Annotated[str, Query(alias="status", pattern="^(pending|verified|rejected|revoked)$")] = "pending",
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
    city: CityFilter = None,
) -> Page[ApplicationPublic]:
    """Certifications by status, of one city's technicians with `?city=`."""
    rows, next_cursor = await ops.certification_queue(session, status=status_filter, limit=limit, cursor=cursor,
                                                      city_id=city)
    uploaded = await certificate_photos.uploaded_at_of(session, [a.certification.id for a in rows])
    return Page(data=[ApplicationPublic(
        certification=presenters.certification(a.certification),
        applicant=PersonPublic(id=a.technician.id, name=a.technician.name, phone=a.technician.phone,
                               status=a.technician.status),
        photo_ref=a.technician.photo_ref, onboarding=a.technician.onboarding,
        training=[TrainingRecordPublic.model_validate(r, from_attributes=True) for r in a.training],
        has_photo=a.certification.id in uploaded, photo_uploaded_at=uploaded.get(a.certification.id),
    ) for a in rows], next_cursor=next_cursor)


@router.post("/v1/ops/hazards/{hazard_id}/resolve", responses={409: {"description": "The hazard is not open"}})
async def resolve_hazard(hazard_id: uuid.UUID, body: ResolveBody, admin: Admin, session: SessionDep) -> ResolvedPublic:
    done = await ops.resolve_hazard(session, hazard_id, body.evidence, list(body.photo_refs), _actor(admin))
    return ResolvedPublic(hazard=_hazard(done.hazard),
                          cancelled_followup_order_id=done.cancelled_followup.id if done.cancelled_followup else None)
