"""Why each technician was picked or skipped for an offer: the candidate list of every offer
round, with the facts operations need to judge it (distance, ETA, rating, certification,
capacity, block). The pure `candidate_rows` turns matching's views into those rows; any offer
path (batch, immediate, escalation rounds) hands them to `record_candidates`."""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.models import timestamp_column, utcnow
from matching.eligibility import EXCLUDED, certification_reason, ineligibility_reason
from matching.model import MatchingConfig, OrderView, TechnicianView
from matching.scoring import cost, eta_s, haversine_m, plan_cost

PICKED = "picked"
# Eligible, but another technician cost less (or the batch gave this one another order).
RANKED_LOWER = "ranked_lower"
_COLUMNS = ("technician_id", "picked", "reason", "distance_m", "eta_s", "rating", "certification",
            "active_jobs", "max_jobs", "blocked")


class OfferCandidate(SQLModel, table=True):
    """One technician considered in one offer round of an order."""

    __tablename__ = "matching_offer_candidate"
    __table_args__ = (UniqueConstraint("order_id", "round", "technician_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    order_id: uuid.UUID = Field(foreign_key="dispatch_order.id", index=True)
    round: int = Field(ge=1)
    rank: int = Field(ge=0)
    technician_id: uuid.UUID = Field(foreign_key="dispatch_technician.id")
    picked: bool
    # Why skipped: an eligibility slug (matching.eligibility) or ranked_lower; None when picked.
    reason: str | None = Field(default=None, max_length=32)
    distance_m: float | None = None
    eta_s: float | None = None
    rating: float | None = None
    # None: holds a usable certification of the kind the order needs; else the eligibility slug.
    certification: str | None = Field(default=None, max_length=32)
    active_jobs: int | None = None
    max_jobs: int | None = None
    blocked: bool = False
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    created_at: datetime = timestamp_column(default_factory=utcnow)


def candidate_rows(order: OrderView, techs: Sequence[TechnicianView], picked: Collection[str], now: datetime,
                   config: MatchingConfig) -> list[dict[str, Any]]:
    """The rows `record_candidates` takes: picked first, then the eligible by cost, then the rest
    by distance."""
    rows, seen = [], set()
    for tech in techs:
        if tech.id in seen:
            continue
        seen.add(tech.id)
        distance = haversine_m(tech.lon, tech.lat, order.lon, order.lat)
        reason = None if tech.id in picked else (ineligibility_reason(order, tech, now, config) or RANKED_LOWER)
        rows.append({
            "technician_id": tech.id, "picked": tech.id in picked, "reason": reason,
            "distance_m": round(distance, 1), "eta_s": round(eta_s(distance, config), 1),
            "rating": tech.rating if tech.rating > 0 else None,
            "certification": certification_reason(order.skill, tech, now),
            "active_jobs": tech.active_jobs, "max_jobs": tech.max_jobs,
            "blocked": tech.id in order.excluded_technicians or reason == EXCLUDED,
            "cost_s": round(cost(order, tech, now, config), 1) if reason in (None, RANKED_LOWER) else None,
            **({"plan_cost_s": round(plan_cost(order, tech, now, config), 1)} if tech.planned else {}),
        })
    rows.sort(key=lambda r: (not r["picked"], r["cost_s"] is None, r["cost_s"] or r["distance_m"]))
    return rows


async def record_candidates(session: AsyncSession, order_id: uuid.UUID, round: int | None,
                            candidates: list[dict[str, Any]]) -> int:
    """Stores one round's candidate list; returns the round number. `round` None takes the next
    after the order's last. Each dict needs technician_id and picked, and may carry reason,
    distance_m, eta_s, rating, certification, active_jobs, max_jobs, blocked; other keys are kept
    in details. Recording a round twice keeps the first record."""
    if round is None:
        last = (await session.exec(select(func.max(OfferCandidate.round)).where(
            OfferCandidate.order_id == order_id))).one()
        round = (last or 0) + 1
    if not candidates:
        return round
    values = []
    for rank, item in enumerate(candidates):
        row = {key: item.get(key) for key in _COLUMNS}
        values.append({
            **row, "order_id": order_id, "round": round, "rank": rank,
            "technician_id": uuid.UUID(str(item["technician_id"])), "picked": bool(item["picked"]),
            "blocked": bool(item.get("blocked", False)),
            "details": {k: v for k, v in item.items() if k not in _COLUMNS},
        })
    # Parameters apart from the statement: compiled once, not once per number of candidates;
    # render_nulls keeps rows with and without a reason in one statement (one round trip).
    await session.execute(insert(OfferCandidate).on_conflict_do_nothing(
        index_elements=["order_id", "round", "technician_id"]), values, execution_options={"render_nulls": True})
    return round


async def candidates_of(session: AsyncSession, order_id: uuid.UUID) -> list[OfferCandidate]:
    return list((await session.exec(select(OfferCandidate).where(OfferCandidate.order_id == order_id)
                                    .order_by(OfferCandidate.round, OfferCandidate.rank))).all())
