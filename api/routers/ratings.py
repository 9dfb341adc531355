import html
import uuid
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Admin, CurrentCustomer, CurrentPrincipal, CurrentTechnician, SessionDep, Staff
from dispatch.accounts import customer_for_account, technician_for_account
from kit.schemas import Page
from ratings import service
from ratings.models import FLAG_KINDS, Appeal, CustomerRating, Flag, Review
from ratings.reputation import Reputation
from ratings.schemas import (
    AppealCreate, AppealDecisionIn, AppealPublic, CustomerRatingCreate, CustomerRatingPublic, CustomerRatingsPage,
    FlagPublic, ReputationFigure, ReputationPublic, ReviewCreate, ReviewPublic, ReviewUpdate,
)

router = APIRouter(tags=["ratings"])

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=200)]


def _review(r: Review) -> ReviewPublic:
    return ReviewPublic(
        id=r.id, order_id=r.order_id, customer_id=r.customer_id, technician_id=r.technician_id, kind=r.kind,
        stars=r.stars, tags=r.tags, comment=r.comment,
        comment_html=html.escape(r.comment) if r.comment is not None else None,
        automatic=r.automatic, excluded=r.excluded, created_at=r.created_at, updated_at=r.updated_at,
        editable_until=r.editable_until, finalized_at=r.finalized_at,
    )


def _customer_rating(c: CustomerRating) -> CustomerRatingPublic:
    return CustomerRatingPublic(id=c.id, order_id=c.order_id, customer_id=c.customer_id,
                                technician_id=c.technician_id, stars=c.stars, tags=c.tags, created_at=c.created_at)


def _figure(rep: Reputation) -> ReputationFigure:
    return ReputationFigure(score=rep.score, count=rep.count, effective_count=rep.effective_count)


def _appeal(a: Appeal) -> AppealPublic:
    return AppealPublic(id=a.id, review_id=a.review_id, technician_id=a.technician_id, reason=a.reason,
                        status=a.status, decided_by=a.decided_by, decided_at=a.decided_at,
                        decision_reason=a.decision_reason, created_at=a.created_at)


def _flag(f: Flag) -> FlagPublic:
    return FlagPublic(id=f.id, kind=f.kind, subject_type=f.subject_type, subject_id=f.subject_id,
                      evidence=f.evidence, created_at=f.created_at, detected_at=f.detected_at, cleared_at=f.cleared_at)


@router.post("/v1/orders/{order_id}/review", status_code=status.HTTP_201_CREATED)
async def submit_review(order_id: uuid.UUID, body: ReviewCreate, customer: CurrentCustomer, session: SessionDep) -> ReviewPublic:
    review = await service.submit_review(session, order_id=order_id, customer_id=customer.id, stars=body.stars,
                                         tags=body.tags, comment=body.comment)
    return _review(review)


@router.patch("/v1/orders/{order_id}/review")
async def update_review(order_id: uuid.UUID, body: ReviewUpdate, customer: CurrentCustomer, session: SessionDep) -> ReviewPublic:
    review = await service.update_review(session, order_id=order_id, customer_id=customer.id,
                                         changes=body.model_dump(exclude_unset=True))
    return _review(review)


@router.get("/v1/orders/{order_id}/review")
async def get_review(order_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> ReviewPublic:
    scope: dict = {}
    if principal.role == "customer":
        scope["customer_id"] = (await customer_for_account(session, principal.account_id)).id
    elif principal.role == "technician":
        scope["technician_id"] = (await technician_for_account(session, principal.account_id)).id
    return _review(await service.review_for(session, order_id, role=principal.role, **scope))


@router.post("/v1/orders/{order_id}/customer-rating", status_code=status.HTTP_201_CREATED)
async def rate_customer(
    order_id: uuid.UUID, body: CustomerRatingCreate, technician: CurrentTechnician, session: SessionDep,
) -> CustomerRatingPublic:
    rating = await service.rate_customer(session, order_id=order_id, technician_id=technician.id,
                                         stars=body.stars, tags=body.tags)
    return _customer_rating(rating)


@router.get("/v1/customers/{customer_id}/ratings")
async def customer_ratings(
    customer_id: uuid.UUID, _: Admin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None,
) -> CustomerRatingsPage:
    rows, next_cursor = await service.customer_ratings(session, customer_id, limit=limit, cursor=cursor)
    average, count = await service.customer_rating_summary(session, customer_id)
    return CustomerRatingsPage(data=[_customer_rating(r) for r in rows], next_cursor=next_cursor,
                               average_stars=average, count=count)


@router.get("/v1/technicians/{technician_id}/reputation")
async def technician_reputation(technician_id: uuid.UUID, _: CurrentPrincipal, session: SessionDep) -> ReputationPublic:
    now = datetime.now(timezone.utc)
    overall, by_kind = await service.technician_reputation_by_kind(session, technician_id, now=now)
    return ReputationPublic(technician_id=technician_id, overall=_figure(overall),
                            by_kind={k: _figure(r) for k, r in by_kind.items()}, as_of=now)


@router.post("/v1/reviews/{review_id}/appeals", status_code=status.HTTP_201_CREATED)
async def file_appeal(review_id: uuid.UUID, body: AppealCreate, technician: CurrentTechnician, session: SessionDep) -> AppealPublic:
    return _appeal(await service.file_appeal(session, review_id=review_id, technician_id=technician.id, reason=body.reason))


@router.get("/v1/appeals")
async def list_appeals(
    _: Staff, session: SessionDep, limit: Limit = 50, cursor: Cursor = None,
    status_filter: Annotated[str | None, Query(alias="status", pattern="^(pending|upheld|rejected)$")] = None,
) -> Page[AppealPublic]:
    rows, next_cursor = await service.list_appeals(session, status=status_filter, limit=limit, cursor=cursor)
    return Page(data=[_appeal(a) for a in rows], next_cursor=next_cursor)


@router.post("/v1/appeals/{appeal_id}/decision")
async def decide_appeal(appeal_id: uuid.UUID, body: AppealDecisionIn, admin: Admin, session: SessionDep) -> AppealPublic:
    appeal = await service.decide_appeal(session, appeal_id=appeal_id, decided_by=admin.account_id,
                                         decision=body.decision, reason=body.reason)
    return _appeal(appeal)


@router.get("/v1/ratings/flags")
async def list_flags(
    _: Staff, session: SessionDep, limit: Limit = 50, cursor: Cursor = None,
    kind: Annotated[str | None, Query(pattern="^(" + "|".join(FLAG_KINDS) + ")$")] = None,
    include_cleared: bool = False,
) -> Page[FlagPublic]:
    rows, next_cursor = await service.list_flags(session, kind=kind, include_cleared=include_cleared,
                                                 limit=limit, cursor=cursor)
    return Page(data=[_flag(f) for f in rows], next_cursor=next_cursor)
