"""The live matching engine: builds pure views from PostgreSQL and the Redis index, runs the
pure eligibility/scoring/assignment code, and turns assignments into offers.

Services flush, never commit; the caller (request or worker tick) commits.
"""

import math
import uuid
from contextlib import suppress
from dataclasses import replace
from functools import lru_cache
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
import structlog
from redis.asyncio import Redis
from sqlalchemy import func, literal, null, text, union_all, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit import after_commit
from kit.config import Settings, get_settings
from kit.db import session_scope
from kit.errors import Conflict, InvalidInput, NotFound
from dispatch.errors import IllegalTransition
from kit.events import handles, publish_event, published_together, subscribe
from kit.jobs import enqueue_many
from kit.fanout import account_channel, presence_key, push_after_commit
from dispatch.handlers import offer_summary
from kit.geo import lonlat, point
from dispatch.models import Order, Technician
from kit.redis import get_redis
from dispatch.service import Actor, record_step, transition
from dispatch.states import ACTIVE_JOB_STATES
from dispatch import queries, reasons, technicians
from dispatch.events import OrderCreated, OrderStatusChanged
from dispatch.technicians import PositionCopy, certifications_of, record_last_positions, usable_kinds
from dispatch.alerts import raise_alert
from matching.assign import best_candidate, best_candidates, free_in_time, soon_free_first
from matching.candidates import OfferCandidate, candidate_rows, record_candidates
from matching.eligibility import ineligibility_reason
from matching.escalation import FLAT, Ladder, due_alerts, may_reoffer
from matching.events import OfferCreated, OfferWithdrawn
from matching import adaptive, eta, readiness
from matching.values import ValueTable, current_values, demand_hints
from matching.index import TECHNICIAN_CITY_TTL_S, Fix, GeoIndex, LiveTechnician, Supply, reposition_key, technician_city_key
from matching.model import Assignment, CertificationView, MatchingConfig, OrderView, PlannedVisit, TechnicianView
from matching.models import Offer
from matching.scoring import eta_s, haversine_m
from matching.spatial import PointIndex

log = structlog.get_logger(__name__)
MATCHER = Actor.system("matching")
CANDIDATES_PER_ORDER = 16

# Reputation per technician id, in [1, 5]; the ratings package plugs its lookup in here.
ReputationLookup = Callable[[AsyncSession, Sequence[uuid.UUID]], Awaitable[dict[uuid.UUID, float]]]


async def neutral_reputation(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float]:
    return {}


_reputation_lookup: ReputationLookup = neutral_reputation


def use_reputation(lookup: ReputationLookup) -> None:
    global _reputation_lookup
    _reputation_lookup = lookup


# Booked visits still ahead per technician id, by planned arrival; scheduling plugs its day
# plans in here, so that an on-demand job weighs what it would make them miss.
PlanLookup = Callable[[AsyncSession, Sequence[uuid.UUID], datetime],
                      Awaitable[dict[uuid.UUID, tuple[PlannedVisit, ...]]]]


async def no_plans(session: AsyncSession, ids: Sequence[uuid.UUID], now: datetime) -> dict[uuid.UUID, tuple[PlannedVisit, ...]]:
    return {}


_plan_lookup: PlanLookup = no_plans


def use_plans(lookup: PlanLookup) -> None:
    global _plan_lookup
    _plan_lookup = lookup


# Service kinds' typical durations, read once per process: they change rarely, and a stale one
# only shifts the estimate of what a planned visit would slip.
_durations: dict[str, int] = {}


async def _service_s(session: AsyncSession, kind: str) -> float:
    if kind not in _durations:
        _durations.update(await queries.typical_durations(session))
    return 60.0 * _durations.get(kind, 0)


class OfferNotAcceptable(Conflict):
    """The offer is not open for you any more (expired, withdrawn or taken)."""

    slug = "offer-not-acceptable"


class TechnicianAtCapacity(Conflict):
    """You already hold as many jobs as you may."""

    slug = "technician-at-capacity"


class CannotGoOnline(IllegalTransition):
    """Only an active technician with a usable certification can go online."""

    slug = "cannot-go-online"


class ImplausiblePosition(InvalidInput):
    """The position fix was rejected (in the future, or an impossible jump)."""

    slug = "implausible-position"
    fields = ("reason",)

    def __init__(self, reason: str) -> None:
        """`reason`: future (stamped ahead of the server's clock) or implausible_jump."""
        super().__init__(f"position rejected: {reason.replace('_', ' ')}")
        self.extra = {"reason": reason}


def ladder_for(priority: str, settings: Settings | None = None) -> Ladder:
    """The priority's escalation ladder; with escalation off, one offer at a time for good."""
    settings = settings or get_settings()
    setting = settings.escalation_ladders.get(priority)
    return Ladder.of(setting) if settings.escalation_enabled and setting is not None else FLAT


def matching_config(settings: Settings | None = None) -> MatchingConfig:
    settings = settings or get_settings()
    return MatchingConfig(
        detour_factor=settings.detour_factor, speed_kmh=settings.speed_kmh,
        stale_after_s=settings.stale_after_s, default_radius_m=settings.default_service_radius_m,
    )


@lru_cache(maxsize=8)
def geo_index(redis: Redis) -> GeoIndex:
    """One index per Redis client, so concurrent position fixes share pipelines."""
    settings = get_settings()
    return GeoIndex(redis, max_speed_kmh=settings.max_speed_kmh, persist_every_s=settings.position_persist_every_s,
                    home_city=settings.city)


async def database_now(session: AsyncSession) -> datetime:
    """The one clock offers are decided on (deadlines, expiry, acceptance): PostgreSQL's, so a
    process whose clock is skewed neither refuses accepts nor stalls offers."""
    return (await session.exec(text("SELECT clock_timestamp()"))).one()[0]


async def active_cities(session: AsyncSession) -> list[str]:
    """Cities with work for a matching round: orders waiting or offered, or technicians on duty."""
    return await queries.cities_with_work(session)


async def ensure_index(session: AsyncSession, index: GeoIndex, city: str) -> bool:
    """Rebuild the city's live index from PostgreSQL if Redis lost it (flushed or restarted
    empty); says whether it did."""
    if not await index.lost(city) or not await index.claim_rebuild(city):
        return False
    count = await rebuild_index(session, index, city)
    log.warning("matching.index_rebuilt", city=city, technicians=count)
    return True


# Views -------------------------------------------------------------------------------------

async def _loads(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Jobs in hand plus open offers: an offer reserves a slot until it is answered."""
    load = await queries.jobs_in_hand(session, ids)
    for tid, n in (await _open_offers(session, ids)).items():
        load[tid] = load.get(tid, 0) + n
    return load


# A technician's account never changes: kept from the views, so an offer's push needs no query.
_account_of: dict[uuid.UUID, uuid.UUID] = {}


async def _open_offers(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    return dict((await session.exec(select(Offer.technician_id, func.count()).where(
        col(Offer.technician_id).in_(ids), Offer.status == "offered").group_by(Offer.technician_id))).all())


async def technician_views(
    session: AsyncSession, live: Sequence[LiveTechnician], now: datetime,
) -> list[TechnicianView]:
    ids = [uuid.UUID(t.id) for t in live]
    if not ids:
        return []
    facts = await technicians.dispatch_facts(session, ids)
    offers = await _open_offers(session, ids)
    reputation = await _reputation_lookup(session, ids)
    plans = await _plan_lookup(session, ids, now)
    views = []
    for item in live:
        tid = uuid.UUID(item.id)
        tech = facts.get(tid)
        if tech is None:
            continue
        if len(_account_of) < 200_000:
            _account_of[tid] = tech.account_id
        # Jobs in hand plus open offers: an offer reserves a slot until it is answered.
        active = tech.active_jobs + offers.get(tid, 0)
        status = tech.status if tech.status in ("offline", "suspended") else ("busy" if active >= tech.max_jobs else "online")
        views.append(TechnicianView(
            id=item.id, lon=item.lon, lat=item.lat, status=status,
            certifications=tuple(
                CertificationView(c.kind, c.verified, c.valid_from, c.valid_until) for c in tech.certifications),
            active_jobs=active, max_jobs=tech.max_jobs, rating=reputation.get(tid, 0.0),
            last_seen_at=item.seen_at, idle_since=tech.idle_since, planned=plans.get(tid, ()),
        ))
    return views


async def _excluded(session: AsyncSession, orders: Sequence[Order], now: datetime) -> dict[uuid.UUID, frozenset[str]]:
    """Per order, the technicians its customer blocked, those who declined it or hold its offer
    now, and those who let its offer lapse within the ladder's cooldown: one query for a round's
    orders."""
    blocked = queries.blocks_of_query(list({o.customer_id for o in orders})).add_columns(
        literal("blocked"), null(), literal(True))
    tried = select(Offer.order_id, Offer.technician_id, Offer.status, Offer.decided_at, literal(False)).where(
        col(Offer.order_id).in_([o.id for o in orders]), col(Offer.status).in_(("declined", "expired", "offered")))
    by_customer: dict[uuid.UUID, set[str]] = {}
    by_order: dict[uuid.UUID, set[str]] = {}
    priority = {o.id: o.priority for o in orders}
    for key, technician_id, status, decided_at, is_block in (await session.exec(union_all(blocked, tried))).all():
        if is_block:
            by_customer.setdefault(key, set()).add(str(technician_id))
        elif status != "expired" or decided_at is None or not may_reoffer(ladder_for(priority[key]), decided_at, now):
            by_order.setdefault(key, set()).add(str(technician_id))
    return {o.id: frozenset(by_customer.get(o.customer_id, set()) | by_order.get(o.id, set())) for o in orders}


async def order_views(session: AsyncSession, orders: Sequence[Order], now: datetime) -> list[OrderView]:
    if not orders:
        return []
    excluded = await _excluded(session, orders, now)
    views = []
    for order in orders:
        lon, lat = lonlat(order.location) or (0.0, 0.0)
        views.append(OrderView(
            id=str(order.id), lon=lon, lat=lat, skill=order.required_certification, priority=order.priority,  # type: ignore[arg-type]
            created_at=order.created_at, sla_deadline=order.sla_deadline, service_s=await _service_s(session, order.kind),
            excluded_technicians=excluded[order.id],
        ))
    return views


async def order_view(session: AsyncSession, order: Order, now: datetime | None = None) -> OrderView:
    return (await order_views(session, [order], now or await database_now(session)))[0]


async def warm_up(session: AsyncSession, index: GeoIndex, city: str) -> None:
    """Run the reads of an emergency's round once, on nobody, so that the first real one after
    a worker starts does not pay for connections, statement compilation and script loading
    (and, for the order's read, PostgreSQL loading PostGIS into the backend)."""
    with suppress(NotFound):
        await transition(session, uuid.uuid4(), "start_matching", MATCHER, expected_status="created")
    now = await database_now(session)
    nobody = LiveTechnician(id=str(uuid.uuid4()), lon=0.0, lat=0.0, seen_at=now, status="online",
                            active_jobs=0, max_jobs=1, distance_m=0.0)
    await technician_views(session, [nobody], now)
    await _history(session, uuid.uuid4())
    _durations.update(await queries.typical_durations(session))
    await index.nearby(city, 0.0, 0.0, k=1, max_radius_m=1.0)


async def _candidates(session: AsyncSession, index: GeoIndex, city: str, order: OrderView, now: datetime,
                      config: MatchingConfig, radius_m: float | None = None) -> list[TechnicianView]:
    live = await index.nearby(city, order.lon, order.lat, k=CANDIDATES_PER_ORDER,
                              max_radius_m=radius_m or config.default_radius_m)
    return await technician_views(session, live, now)


async def _history(session: AsyncSession, order_id: uuid.UUID) -> tuple[int, int, int]:
    """The order's rounds sent, offers made and last candidate round, in one round trip."""
    rounds = queries.step_count_query(order_id, "offer_round")
    offers = select(func.count()).select_from(Offer).where(Offer.order_id == order_id).scalar_subquery()
    candidates = select(func.coalesce(func.max(OfferCandidate.round), 0)).where(
        OfferCandidate.order_id == order_id).scalar_subquery()
    sent, made, last = (await session.exec(select(rounds, offers, candidates))).one()
    return sent, made, last


# Offers ------------------------------------------------------------------------------------

async def _make_offer(session: AsyncSession, order: Order, assignment: Assignment, policy: str,
                      now: datetime) -> Offer:
    return (await _make_offers(session, order, [assignment], policy, now))[0]


async def _make_offers(session: AsyncSession, order: Order, assignments: Sequence[Assignment], policy: str,
                       now: datetime, offers_made: int | None = None) -> list[Offer]:
    """Offer the order (row locked by this transaction) to these technicians at once (one
    transition): the first to accept wins. `offers_made`: the order's offers so far, when the
    caller has just counted them."""
    settings = get_settings()
    order_id = order.id
    if offers_made is None:
        offers_made = (await session.exec(select(func.count()).select_from(Offer).where(Offer.order_id == order_id))).one()
    attempt = 1 + offers_made
    timeout = settings.emergency_offer_timeout_s if order.priority == "emergency" else settings.offer_timeout_s
    offers = [Offer(
        order_id=order_id, technician_id=uuid.UUID(a.technician_id), city_id=order.city_id, policy=policy,
        attempt=attempt + i,
        distance_m=a.distance_m, eta_s=a.eta_s, created_at=now, expires_at=now + timedelta(seconds=timeout),
    ) for i, a in enumerate(assignments)]
    session.add_all(offers)
    await session.flush()
    await enqueue_many(session, "matching.expire_offer", [{"offer_id": str(o.id)} for o in offers], execute_after=timedelta(seconds=timeout))
    payload = ({"offer_id": str(offers[0].id), "technician_id": assignments[0].technician_id, "policy": policy}
               if len(offers) == 1 else
               {"offer_ids": [str(o.id) for o in offers], "technician_ids": [a.technician_id for a in assignments],
                "policy": policy})
    missing = [o.technician_id for o in offers if o.technician_id not in _account_of]
    if missing:
        _account_of.update(await queries.technician_accounts(session, missing))
    async with published_together(session):
        order = await transition(session, order_id, "offer", MATCHER, now=now, payload=payload, locked=order)
        for offer, assignment in zip(offers, assignments):
            account_id = _account_of.get(offer.technician_id)
            if account_id is not None:
                # Straight to the phone once this transaction commits; the outbox event that
                # follows records the notification.
                push_after_commit(session, account_channel(account_id), "offer", offer=offer_summary(
                    order, str(offer.id), assignment.distance_m, assignment.eta_s, offer.expires_at.isoformat()))
            await publish_event(session, OfferCreated(
                offer_id=offer.id, order_id=order_id, technician_id=assignment.technician_id,
                expires_at=offer.expires_at, eta_s=assignment.eta_s, distance_m=assignment.distance_m))
    return offers


async def dispatch_now(session: AsyncSession, index: GeoIndex, order_id: uuid.UUID, now: datetime | None = None,
                       locked: Order | None = None) -> Offer | None:
    """Offer one order at once to its best candidate (emergencies, direct picks, retries).
    `locked`: the order as this transaction just wrote it (its row lock held)."""
    now = now or await database_now(session)
    config = matching_config()
    order = locked or await queries.order_for_update(session, order_id)
    if order is None or order.status != "matching":
        return None
    await ensure_index(session, index, order.city_id)
    view = await order_view(session, order, now)
    preferred = order.preferred_technician_id
    if preferred is not None and str(preferred) not in view.excluded_technicians:
        live = await index.get(str(preferred), order.city_id)
        views = await technician_views(session, [live], now) if live else []
        choice = best_candidate(view, views, now, config)
        if choice is not None:
            return await _make_offer(session, order, choice, "direct", now)
        # The chosen technician cannot take it now: fall back to matching.
    ladder = ladder_for(order.priority)
    if ladder.offers_per_round[0] > 1 or len(ladder.offers_per_round) > 1 or ladder.round_radius_m:
        return await _offer_round(session, index, order, view, ladder, now, config)
    candidates = await _candidates(session, index, order.city_id, view, now, config)
    choice = best_candidate(view, candidates, now, config)
    if await _kept_for_finishing(session, order, view, [choice] if choice else [], candidates, now, config):
        return None
    if choice is None:
        if order.priority == "emergency" and get_settings().emergency_preempt:
            return await _preempt_for(session, order, view, candidates, now, config)
        return None
    await record_candidates(session, order.id, None, candidate_rows(view, candidates, [choice.technician_id], now, config))
    return await _make_offer(session, order, choice, "emergency" if order.priority == "emergency" else "direct", now)


async def _offer_round(session: AsyncSession, index: GeoIndex, order: Order, view: OrderView, ladder: Ladder,
                       now: datetime, config: MatchingConfig) -> Offer | None:
    """The next round of the ladder: the K best eligible technicians within its radius at once;
    a round that finds nobody gives way to the next, wider one at once."""
    sent, offers_made, candidate_round = await _history(session, order.id)
    number = sent + 1
    last = max(len(ladder.offers_per_round), len(ladder.round_radius_m))
    while True:
        k, radius = ladder.round(number, config.default_radius_m)
        widened = replace(view, service_radius_m=radius)
        candidates = await _candidates(session, index, order.city_id, widened, now, config, radius)
        chosen = best_candidates(widened, candidates, now, config, k)
        if chosen or number >= last:
            break
        number += 1
    if await _kept_for_finishing(session, order, view, chosen, candidates, now, config):
        return None
    if not chosen:
        if order.priority == "emergency" and get_settings().emergency_preempt:
            return await _preempt_for(session, order, widened, candidates, now, config)
        return None
    await record_candidates(session, order.id, candidate_round + 1, candidate_rows(
        widened, candidates, [a.technician_id for a in chosen], now, config))
    if 1 < number <= last:
        await record_step(session, order, "escalated", MATCHER, {"round": number, "radius_m": radius}, now)
    await record_step(session, order, "offer_round", MATCHER, {"round": number, "offers": len(chosen), "radius_m": radius}, now)
    policy = "emergency" if order.priority == "emergency" else "round"
    return (await _make_offers(session, order, chosen, policy, now, offers_made=offers_made))[0]


async def _kept_for_finishing(session: AsyncSession, order: Order, view: OrderView, ranked: Sequence[Assignment],
                              candidates: Sequence[TechnicianView], now: datetime, config: MatchingConfig) -> bool:
    """An emergency nobody free reaches within its SLA waits for a technician finishing his job
    nearby if he gets there first (`assign.soon_free_first`); each round asks again, so a job
    that runs over hands it to the free ones."""
    if order.priority != "emergency" or free_in_time(view, ranked, now):
        return False  # the usual case, decided before the query: someone free makes it in time
    finishing = [t for t in await _soon_free(session, list(candidates), now, config) if t.free_in_s > 0]
    if not soon_free_first(view, ranked, finishing, now, config):
        return False
    log.info("matching.kept_for_finishing", order_id=str(order.id), technicians=len(finishing))
    return True


async def _preempt_for(session: AsyncSession, order: Order, view: OrderView, candidates: Sequence[TechnicianView],
                       now: datetime, config: MatchingConfig) -> Offer | None:
    """No free technician for an emergency: take the nearest one who would qualify but for a
    routine job he accepted and has not set out for; that job goes back to matching."""
    for tech in sorted(candidates, key=lambda t: haversine_m(t.lon, t.lat, view.lon, view.lat)):
        freed = replace(tech, active_jobs=tech.active_jobs - 1, status="online")
        if ineligibility_reason(view, freed, now, config) is not None:
            continue
        job = await queries.routine_job_to_preempt(session, uuid.UUID(tech.id))
        if job is None:
            continue
        await transition(session, job.id, "preempt", MATCHER, now=now, set_values={"technician_id": None},
                         reason=reasons.PREEMPTED_BY_EMERGENCY,
                         payload={"technician_id": tech.id, "emergency_order_id": str(order.id)})
        choice = best_candidate(view, [freed], now, config)
        assert choice is not None
        return await _make_offer(session, order, choice, "preempt", now)
    return None


async def run_batch(session: AsyncSession, index: GeoIndex, now: datetime | None = None,
                    city_id: str | None = None) -> list[Offer]:
    """One matching round of one city (the configured one unless named): emergencies first, one
    by one; then routine and urgent orders together through the optimal assignment (with the
    city's look-ahead values once trained), those that adaptive batching holds for a short
    window left for a later round."""
    now = now or await database_now(session)
    city = city_id or get_settings().city
    config = matching_config()
    await ensure_index(session, index, city)
    await raise_due_alerts(session, now, city)
    zones = await readiness.areas(session, now, city) if get_settings().escalation_enabled else []
    values = await current_values(session, city)
    await _hint_repositioning(session, index, city, zones, values, now, config)
    # Locked for the round, skipping orders another transaction holds (a cancel, an assign): those
    # wait for the next round instead of failing this one.
    waiting = await queries.waiting_orders(session, city)
    offers: list[Offer] = []
    for order in [o for o in waiting if o.priority == "emergency" or o.preferred_technician_id is not None]:
        offer = await dispatch_now(session, index, order.id, now)
        if offer is not None:
            offers.append(offer)
    pooled = [o for o in waiting if o.priority != "emergency" and o.preferred_technician_id is None]
    if not pooled:
        return offers
    views = await order_views(session, pooled, now)
    live = await supply_near(index, city, views, config)
    unique = {t.id: t for group in live for t in group}
    supply = await technician_views(session, list(unique.values()), now)
    keep = readiness.reserved(zones, supply, now, config)
    tech_views = {t.id: t for t in await _soon_free(session, readiness.hold_reserve(supply, keep), now, config)}
    candidates = {v.id: [tech_views[t.id] for t in group if t.id in tech_views] for v, group in zip(views, live)}
    by_id = {str(o.id): o for o in pooled}
    view_of = {v.id: v for v in views}
    chosen, _ = adaptive.assign_round(views, candidates, now, config, values)
    for assignment in chosen:
        order = by_id[assignment.order_id]
        await record_candidates(session, order.id, None, candidate_rows(view_of[assignment.order_id], candidates[assignment.order_id], [assignment.technician_id], now, config))
        offers.append(await _make_offer(session, order, assignment, "batch", now))
    return offers


async def _soon_free(session: AsyncSession, views: list[TechnicianView], now: datetime,
                     config: MatchingConfig) -> list[TechnicianView]:
    """Busy technicians whose only job should end within `soon_free_s` become look-ahead views:
    at that job, free in the time left (its kind's typical duration from check-in, or from now plus
    the drive while he is on his way). The batch may keep an order for them, never offer them one."""
    single = [v for v in views if v.status == "busy" and v.active_jobs == 1 and v.max_jobs == 1]
    if not single or config.soon_free_s <= 0:
        return views
    jobs: dict[uuid.UUID, list[queries.JobUnderway]] = {}
    for job in await queries.jobs_underway(session, [uuid.UUID(v.id) for v in single]):
        jobs.setdefault(job.technician_id, []).append(job)
    soon: dict[str, TechnicianView] = {}
    for view in single:
        held = jobs.get(uuid.UUID(view.id), [])
        where = lonlat(held[0].location) if len(held) == 1 else None
        if where is None:
            continue
        drive_s = eta_s(haversine_m(view.lon, view.lat, *where), config)
        left = (held[0].ends_at(now, drive_s) - now).total_seconds()
        if 0 < left <= config.soon_free_s:
            soon[view.id] = replace(view, lon=where[0], lat=where[1], status="online", active_jobs=0,
                                    idle_since=None, free_in_s=left)
    return [soon.get(v.id, v) for v in views]


async def _hint_repositioning(session: AsyncSession, index: GeoIndex, city: str, zones: list[readiness.Area],
                              table: ValueTable | None, now: datetime, config: MatchingConfig) -> int:
    """At most once per period across workers: idle emergency technicians towards areas below
    their floor, then the other idle technicians towards the cells the city's look-ahead values
    rate higher. Hints, not offers: following one is the technician's choice."""
    covering = any(z.floor for z in zones)
    if not covering and table is None:
        return 0
    settings = get_settings()
    if not await index.redis.set(reposition_key(city), "1", nx=True, ex=settings.reposition_hint_every_s):
        return 0
    supply = await index.supply(city)
    views = await technician_views(session, [supply.technician(i) for i in range(len(supply))], now)
    hinted = await readiness.hint_repositioning(session, zones, views, now, config) if covering else set()
    if table is None:
        return len(hinted)
    views = readiness.hold_reserve([v for v in views if v.id not in hinted], readiness.reserved(zones, views, now, config))
    demand = demand_hints(table, views, now, config)
    accounts = await queries.technician_accounts(session, [uuid.UUID(h.technician_id) for h in demand])
    for hint in demand:
        push_after_commit(session, account_channel(accounts[uuid.UUID(hint.technician_id)]), "reposition", reason="demand",
                          cell=hint.cell, distance_m=round(hint.distance_m),
                          area={"type": "Point", "coordinates": [round(hint.lon, 4), round(hint.lat, 4)]})
    log.info("matching.reposition_hints", city=city, emergency_cover=len(hinted), demand=len(demand))
    return len(hinted) + len(demand)


async def raise_due_alerts(session: AsyncSession, now: datetime | None = None, city_id: str | None = None) -> int:
    """Orders nobody has accepted past a threshold of their ladder: one ops alert per threshold,
    recorded on the order's timeline (which is also what keeps it from being raised twice)."""
    now = now or await database_now(session)
    ladders = {p: ladder_for(p) for p in ("emergency", "urgent", "routine")}
    first = {p: min(after for after, _ in ladder.alert_after_s) for p, ladder in ladders.items() if ladder.alert_after_s}
    if not first:
        return 0
    orders = await queries.orders_past_alert_threshold(session, now, first, city_id)
    if not orders:
        return 0
    raised: dict[uuid.UUID, list[float]] = {}
    for order_id, payload in await queries.step_payloads(session, [o.id for o in orders], "alerted"):
        raised.setdefault(order_id, []).append(float(payload.get("threshold_s", -1)))
    count = 0
    for order in orders:
        for after, level in due_alerts(ladders[order.priority], order.window_start or order.created_at, now,
                                       raised.get(order.id, ())):
            alert = await raise_alert(session, kind=f"{order.priority}_unaccepted", level=level, order_id=order.id,  # type: ignore[arg-type]
                                      details={"threshold_s": after, "status": order.status,
                                               "sla_deadline": order.sla_deadline.isoformat()}, now=now)
            await record_step(session, order, "alerted", MATCHER,
                              {"threshold_s": after, "level": level, "alert_id": str(alert.id)}, now)
            count += 1
    return count


async def supply_near(index: GeoIndex, city: str, orders: Sequence[OrderView],
                      config: MatchingConfig) -> list[list[LiveTechnician]]:
    """The k nearest technicians of each order: one read of the city's supply from Redis (one
    round trip instead of one per order), then `nearest_in` it."""
    return nearest_in(await index.supply(city), orders, config)


def nearest_in(supply: Supply, orders: Sequence[OrderView], config: MatchingConfig) -> list[list[LiveTechnician]]:
    """The k nearest technicians of each order within the default radius, by a k-d tree over the
    part of the supply around the batch."""
    margin_deg = config.default_radius_m / 111_000
    lon_margin = margin_deg / max(0.1, math.cos(math.radians(max(abs(o.lat) for o in orders))))
    around = np.flatnonzero(
        (supply.lon >= min(o.lon for o in orders) - lon_margin) & (supply.lon <= max(o.lon for o in orders) + lon_margin)
        & (supply.lat >= min(o.lat for o in orders) - margin_deg) & (supply.lat <= max(o.lat for o in orders) + margin_deg))
    points = PointIndex(supply.lon[around], supply.lat[around])
    nearest = points.nearest_many([(o.lon, o.lat) for o in orders], CANDIDATES_PER_ORDER, config.default_radius_m)
    # One object per technician found, however many orders found him.
    found: dict[int, LiveTechnician] = {}
    return [[found.get(j) or found.setdefault(j, supply.technician(int(around[j]))) for j in row] for row in nearest]


async def _after_lapse(session: AsyncSession, index: GeoIndex, order_id: uuid.UUID, now: datetime) -> None:
    order = await queries.find_order(session, order_id, refresh=True)
    if order is None or order.status != "matching":
        return
    attempts = (await session.exec(select(func.count()).select_from(Offer).where(Offer.order_id == order_id))).one()
    if attempts >= get_settings().max_offer_attempts and not ladder_for(order.priority).until_deadline:
        await transition(session, order_id, "mark_unfulfilled", MATCHER, now=now,
                         reason=reasons.NO_TECHNICIAN_ACCEPTED, payload={"offers": attempts})
    elif now >= order.sla_deadline:
        await transition(session, order_id, "mark_unfulfilled", MATCHER, now=now,
                         reason=reasons.SLA_DEADLINE_PASSED)
    elif order.priority == "emergency":
        await dispatch_now(session, index, order_id, now)


async def expire_offers(session: AsyncSession, index: GeoIndex, now: datetime | None = None,
                        city_id: str | None = None) -> int:
    """Lapse offers past their expiry (of one city, or of all); an order whose every open offer
    lapsed moves on to the next candidate (or round)."""
    now = now or await database_now(session)
    # Orders before their offers, as an accept takes them: the other way round the two deadlock.
    due = (await session.exec(select(Offer.order_id).where(
        Offer.status == "offered", Offer.expires_at <= now, *([Offer.city_id == city_id] if city_id else []))
        .distinct())).all()
    if not due:
        return 0
    await queries.lock_orders(session, due)
    expired = (await session.exec(
        update(Offer).where(Offer.status == "offered", Offer.expires_at <= now, col(Offer.order_id).in_(due))
        .values(status="expired", decided_at=now).returning(Offer.id, Offer.order_id, Offer.technician_id))).all()
    by_order: dict[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]] = {}
    for offer_id, order_id, technician_id in expired:
        by_order.setdefault(order_id, []).append((offer_id, technician_id))
        await publish_event(session, OfferWithdrawn(offer_id=offer_id, order_id=order_id, technician_id=technician_id,
                                                    reason="expired"))
    for order_id, lapsed in by_order.items():
        if await _still_offered(session, order_id):
            continue
        payload = ({"offer_id": str(lapsed[0][0]), "technician_id": str(lapsed[0][1])} if len(lapsed) == 1 else
                   {"offer_ids": [str(o) for o, _ in lapsed], "technician_ids": [str(t) for _, t in lapsed]})
        await transition(session, order_id, "offer_lapsed", MATCHER, now=now, expected_status="offered",
                         reason=reasons.OFFER_EXPIRED, payload=payload)
        await _alert_lapsed_round(session, order_id, len(lapsed), now)
        await _after_lapse(session, index, order_id, now)
    return len(expired)


async def _still_offered(session: AsyncSession, order_id: uuid.UUID) -> bool:
    """Another technician of the round may still accept."""
    return (await session.exec(select(Offer.id).where(Offer.order_id == order_id, Offer.status == "offered").limit(1))).first() is not None


async def _alert_lapsed_round(session: AsyncSession, order_id: uuid.UUID, offers: int, now: datetime) -> None:
    """An emergency's whole round lapsed: the duty dispatcher hears of it (once while open)."""
    order = await queries.find_order(session, order_id)
    if order is None or order.priority != "emergency" or not get_settings().escalation_enabled:
        return
    await raise_alert(session, kind="offer_lapsed", level="warning", order_id=order_id,
                      details={"offers": offers, "priority": order.priority}, now=now)


async def lapse_offers_of_absent(session: AsyncSession, index: GeoIndex, now: datetime | None = None,
                                 city_id: str | None = None) -> int:
    """A technician whose socket is gone and who has sent no position for the stale timeout
    cannot answer: his open offers lapse now, so their orders move on."""
    now = now or await database_now(session)
    stale_after = timedelta(seconds=get_settings().stale_after_s)
    open_offers = (await session.exec(select(Offer.id, Offer.technician_id, Offer.city_id).where(
        Offer.status == "offered", *([Offer.city_id == city_id] if city_id else [])))).all()
    # A lost index would make everyone look absent: rebuild it before judging.
    for city in {city for _, _, city in open_offers}:
        await ensure_index(session, index, city)
    absent = []
    for offer_id, technician_id, city in open_offers:
        if await index.redis.exists(presence_key(technician_id)):
            continue
        live = await index.get(str(technician_id), city)
        if live is None or now - live.seen_at > stale_after:
            absent.append(offer_id)
    if absent:
        await _lock_orders_of(session, absent)
        await session.exec(update(Offer).where(col(Offer.id).in_(absent), Offer.status == "offered").values(expires_at=now))
    return len(absent)


async def _lock_orders_of(session: AsyncSession, offer_ids: list[uuid.UUID]) -> None:
    """Locks the offers' orders, in one order, before their offers change: an accept takes the
    order first too, so the two never wait on each other crosswise (a deadlock)."""
    await queries.lock_orders(session, select(Offer.order_id).where(col(Offer.id).in_(offer_ids)))


async def decline_offer(session: AsyncSession, index: GeoIndex, offer_id: uuid.UUID, technician_id: uuid.UUID,
                        reason: str | None = None, now: datetime | None = None) -> Offer:
    now = now or await database_now(session)
    await _lock_orders_of(session, [offer_id])
    row = (await session.exec(
        update(Offer).where(Offer.id == offer_id, Offer.technician_id == technician_id, Offer.status == "offered")
        .values(status="declined", decided_at=now, decline_reason=reason).returning(Offer.order_id))).first()
    if row is None:
        raise OfferNotAcceptable()
    if not await _still_offered(session, row[0]):
        await transition(session, row[0], "offer_lapsed", Actor("technician", str(technician_id)), now=now,
                         expected_status="offered", reason=reason or "declined", payload={"offer_id": str(offer_id)})
        await _after_lapse(session, index, row[0], now)
    offer = await session.get(Offer, offer_id, populate_existing=True)
    assert offer is not None
    return offer


async def accept_offer(session: AsyncSession, offer_id: uuid.UUID, technician_id: uuid.UUID,
                       now: datetime | None = None) -> Order:
    """Exactly one technician wins an order: the offer and the order both move by conditional
    UPDATEs, and the technician row is locked so two accepts cannot exceed his capacity. The
    deadline is judged on the database's clock unless a time is given."""
    now = now or await database_now(session)
    # Locks in the one order every path takes (order, then technician, then offers): of a
    # round's technicians accepting together one at a time gets past here, and expiry, declines
    # and new offers (whose rows reference the technician) never wait on an accept crosswise.
    await _lock_orders_of(session, [offer_id])
    technician = await queries.technician_for_update(session, technician_id)
    if technician is None:
        raise NotFound("no such technician")
    row = (await session.exec(
        update(Offer).where(Offer.id == offer_id, Offer.technician_id == technician_id,
                            Offer.status == "offered", Offer.expires_at > now)
        .values(status="accepted", decided_at=now).returning(Offer.order_id))).first()
    if row is None:
        raise OfferNotAcceptable()
    jobs = await queries.jobs_held(session, technician_id)
    if jobs >= technician.max_jobs:
        raise TechnicianAtCapacity()
    try:
        order = await transition(session, row[0], "accept", Actor("technician", str(technician_id)), now=now,
                                 expected_status="offered", set_values={"technician_id": technician_id},
                                 payload={"offer_id": str(offer_id)})
    except Conflict as exc:
        raise OfferNotAcceptable("somebody else took this order") from exc
    await technicians.take_job(session, technician, jobs + 1)
    await _withdraw_others(session, order, offer_id, now)
    return order


async def _withdraw_others(session: AsyncSession, order: Order, accepted: uuid.UUID, now: datetime) -> None:
    """The round's other offers end with the accept; their phones hear it after the commit."""
    others = (await session.exec(
        update(Offer).where(Offer.order_id == order.id, Offer.status == "offered", Offer.id != accepted)
        .values(status="withdrawn", decided_at=now).returning(Offer.id, Offer.technician_id))).all()
    for offer_id, technician_id in others:
        technician = await queries.find_technician(session, technician_id)
        if technician is not None:
            push_after_commit(session, account_channel(technician.account_id), "offer_withdrawn",
                              offer_id=str(offer_id), order_id=str(order.id), reason="taken")


async def sweep_unfulfilled(session: AsyncSession, now: datetime | None = None, city_id: str | None = None) -> int:
    now = now or await database_now(session)
    overdue = await queries.orders_past_deadline(session, now, city_id)
    for order_id in overdue:
        await transition(session, order_id, "mark_unfulfilled", MATCHER, now=now,
                         reason=reasons.SLA_DEADLINE_PASSED)
    return len(overdue)


# Technicians -------------------------------------------------------------------------------

def _publish_availability(session: AsyncSession, index: GeoIndex, technician: Technician, active_jobs: int) -> None:
    """The live index hears of a status change once it is committed: a rollback leaves it as it was."""
    technician_id, city, status, max_jobs = str(technician.id), technician.city_id, technician.status, technician.max_jobs

    async def write() -> None:
        await index.set_availability(technician_id=technician_id, city=city, status=status,
                                     active_jobs=active_jobs, max_jobs=max_jobs)
    after_commit.defer(session, write)


async def go_online(session: AsyncSession, index: GeoIndex, technician: Technician, now: datetime | None = None) -> Technician:
    now = now or await database_now(session)
    certs = await certifications_of(session, technician.id)
    if technician.status == "suspended" or technician.onboarding != "active" or not usable_kinds(certs, now):
        raise CannotGoOnline()
    load = (await _loads(session, [technician.id])).get(technician.id, 0)
    await technicians.go_on_duty(session, technician, load, now)
    _publish_availability(session, index, technician, load)
    return technician


async def go_offline(session: AsyncSession, index: GeoIndex, technician: Technician, now: datetime | None = None) -> Technician:
    """Offline now: open offers lapse at once so their orders move on."""
    now = now or await database_now(session)
    await technicians.go_off_duty(session, technician)
    await session.exec(update(Offer).where(Offer.technician_id == technician.id, Offer.status == "offered")
                       .values(expires_at=now))
    _publish_availability(session, index, technician, 0)
    await expire_offers(session, index, now)
    return technician


async def record_fix(index: GeoIndex, technician_id: uuid.UUID, *, lon: float, lat: float, at: datetime,
                     now: datetime | None = None, city: str | None = None, status: str | None = None,
                     session: AsyncSession | None = None) -> Fix:
    """The one path for position fixes (REST and websocket): validated and stored in Redis;
    `persist` says whether PostgreSQL is due a copy, which the caller writes. `status` is the
    technician's as PostgreSQL has it, when the caller read it. A fix that finds the city's
    index lost rebuilds it (in the caller's session, or in a unit of work of its own)."""
    city = city or await city_of_technician(index, technician_id)
    fix = await index.update_position(technician_id=str(technician_id), city=city, lon=lon, lat=lat, at=at, now=now,
                                      status=status)
    if fix.index_lost:
        if session is not None:
            await ensure_index(session, index, city)
        else:
            async with session_scope() as own:
                await ensure_index(own, index, city)
    if fix.outcome in ("future", "implausible_jump"):
        log.info("position.rejected", technician_id=str(technician_id), outcome=fix.outcome)
        raise ImplausiblePosition(fix.outcome)
    return fix


async def city_of_technician(index: GeoIndex, technician_id: uuid.UUID) -> str:
    """For the socket's hot path, which has no technician row: Redis remembers each technician's
    city for an hour (he changes city only with his station), PostgreSQL answers a miss."""
    key = technician_city_key(str(technician_id))
    city = await index.redis.get(key)
    if city is None:
        async with session_scope() as session:
            city = await queries.technician_city(session, technician_id)
        city = city or index.home_city
        await index.redis.set(key, city, ex=TECHNICIAN_CITY_TTL_S)
    return city


async def record_position(session: AsyncSession, index: GeoIndex, technician: Technician, *, lon: float, lat: float,
                          at: datetime, now: datetime | None = None) -> str:
    fix = await record_fix(index, technician.id, lon=lon, lat=lat, at=at, now=now, city=technician.city_id,
                           status=technician.status, session=session)
    if fix.persist:
        await record_last_positions(session, [PositionCopy(technician.id, lon, lat, at)])
        # What the row now says, without reloading it.
        set_committed_value(technician, "last_location", point(lon, lat))
        set_committed_value(technician, "last_seen_at", at)
    return fix.outcome


async def rebuild_index(session: AsyncSession, index: GeoIndex, city: str | None = None) -> int:
    """Refill Redis from PostgreSQL (after Redis lost its data): status and load of everyone on
    duty, positions as last persisted (a newer one in Redis is kept). One city, or all."""
    cities = [city] if city else await queries.city_ids(session)
    rows = await queries.technicians_on_duty(session, cities)
    load = await _loads(session, [t.id for t in rows])
    for tech in rows:
        location = lonlat(tech.last_location) if tech.last_location is not None else None
        await index.set_availability(
            technician_id=str(tech.id), city=tech.city_id, status=tech.status,
            active_jobs=load.get(tech.id, 0), max_jobs=tech.max_jobs,
            position=(*location, tech.last_seen_at or await database_now(session)) if location else None,
            only_newer=True)
    for each in cities:
        await index.rebuilt(each)
    return len(rows)


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    """Withdraw open offers of orders that left matching, and free technicians whose job ended."""
    now = await database_now(session)
    if event.to in ("cancelled", "unfulfilled"):
        await session.exec(update(Offer).where(Offer.order_id == event.order_id, Offer.status == "offered")
                           .values(status="withdrawn", decided_at=now))
    if event.to in ("completed", "cancelled", "matching", "payment_attention") and event.technician_id and event.from_ in ACTIVE_JOB_STATES:
        technician = await queries.find_technician(session, event.technician_id)
        if technician is not None and technician.status == "busy":
            load = (await _loads(session, [technician.id])).get(technician.id, 0)
            await technicians.release_job(session, technician, load, now)


@handles(OrderCreated)
async def on_order_created(session: AsyncSession, event: OrderCreated) -> None:
    """Every new order enters matching; an emergency or a direct pick is offered at once."""
    async with published_together(session):
        try:
            order = await transition(session, event.order_id, "start_matching", MATCHER, expected_status="created")
        except (NotFound, Conflict):  # cancelled first, or another delivery of this event won
            return
        if order.priority == "emergency" or order.preferred_technician_id is not None:
            # The UPDATE above holds the order's row lock: no need to read and lock it again.
            await dispatch_now(session, geo_index(get_redis()), order.id, locked=order)


def register() -> None:
    subscribe("dispatch.order_created", on_order_created)
    subscribe("dispatch.order_status_changed", on_order_status_changed)
    subscribe("dispatch.order_status_changed", eta.on_order_status_changed)
