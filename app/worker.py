"""The platform's background work: separate jobs on pgqueuer, each with its own cadence, retries
and concurrency, on as many worker processes as wanted.

- Urgent lane: the deliveries of an emergency's events (matching's offer round among them), on
  connections of their own; `gasdispatch worker --roles urgent` runs them in a process of their own.
- Realtime lane: event deliveries (one job per subscriber of an event), offer expiry (a job
  delayed to the offer's deadline), the lapse of offers whose technician is gone.
- Background lane: payouts (one job per transfer, at most `payout_concurrency` provider calls
  at once across all workers), review finalization, the Stripe webhook inbox, meter commands,
  the sweep of orders past their SLA, the release of booked orders into matching and their
  reminders, and the cron jobs (meter comm-lost and consumption scans, maintenance reminders, the
  daily inspection campaign, the ledger's daily anchor, tomorrow's day plans and today's
  re-plans), each retried with backoff when it fails.
- Matching: one loop per city, every `batch_window_s`, only while this process holds the city's
  PostgreSQL advisory lock on a connection of its own; each batch's transaction checks that the
  lock is still held (fencing). A dead holder's connection closes and frees the lock at once, so
  another worker takes over on its next try.

Every loop survives PostgreSQL and Redis errors: it logs, counts (`gasdispatch_worker_errors_total`),
backs off (bounded) and starts again; it never exits on its own. Each process writes a heartbeat
to Redis (`worker:heartbeat:{host:pid}`) that readiness reads (`kit.jobs.engine_health`).
"""

import asyncio
import math
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from pgqueuer.errors import RetryRequested
from prometheus_client import Counter
from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.wiring import register_handlers
from dispatch.field import campaigns
from kit import events, heap, jobs
from kit.config import get_settings
from kit.db import database_now, session_scope
from kit.models import Delivery
from kit.redis import get_redis
from matching import eta
from matching import service as matching
from matching.models import Offer
from meters import commands as meters_commands
from meters import rules as meters_rules
from meters.consumption import check_consumption
from meters.reminders import due_reminders
from ratings.jobs import finalize_due
from scheduling import planner as scheduling_planner
from scheduling import replan as scheduling_replan
from scheduling import service as scheduling
from settlement import ledger as settlement_ledger
from settlement import service as settlement
from settlement import webhooks as settlement_webhooks

log = structlog.get_logger(__name__)

WORKER_ERRORS = Counter("gasdispatch_worker_errors_total", "Worker loop failures (each is retried)", ["loop"])
MATCHING_ROUNDS = Counter("gasdispatch_matching_rounds_total", "Batch matching rounds run", ["city"])
EXPIRE_OFFER = "matching.expire_offer"
TRANSFER = "settlement.transfer"
MAX_BACKOFF_S = 30.0
HEARTBEAT_EVERY_S = 5.0
NO_DELIVERY = 0  # delivery ids start at 1
# Advisory lock key spaces: the city's matcher (held on its own connection), and the batch's
# transaction (so a stale holder's last batch never overlaps the new holder's first).
MATCHER_LOCK = 0x6764_0001
BATCH_LOCK = 0x6764_0002

Job = Callable[[AsyncSession, datetime], Awaitable[int]]


# Jobs --------------------------------------------------------------------------------------

async def _count(items: Awaitable[Any]) -> int:
    return len(await items)


async def _lapse_absent(session: AsyncSession, now: datetime) -> int:
    index = matching.geo_index(get_redis())
    lapsed = await matching.lapse_offers_of_absent(session, index, now)
    return lapsed + (await matching.expire_offers(session, index, now) if lapsed else 0)


async def _queue_payouts(session: AsyncSession, now: datetime) -> int:
    """Immediate-schedule payouts: each transfer its own job, idempotent on its settlement."""
    await settlement.release_accrued(session, daily_batch=False)
    pending = await settlement.pending_transfer_ids(session)
    await jobs.enqueue_many(session, TRANSFER, [{"settlement_id": str(i)} for i in pending],
                            dedupe_keys=[f"transfer:{i}" for i in pending])
    return len(pending)


async def _webhooks(session: AsyncSession, now: datetime) -> int:
    return await settlement_webhooks.process_pending(session, settlement.get_gateway())


async def _meter_commands(session: AsyncSession, now: datetime) -> int:
    return await meters_commands.deliver_due(session, settings=get_settings(), now=now) or 0


async def _comm_lost(session: AsyncSession, now: datetime) -> int:
    return await _count(meters_rules.check_comm_lost(session, get_redis(), now=now,
                                                     factor=get_settings().meters_comm_lost_factor))


async def _consumption(session: AsyncSession, now: datetime) -> int:
    return await _count(check_consumption(session, now=now, tz=ZoneInfo(get_settings().meters_device_timezone)))


async def _reminders(session: AsyncSession, now: datetime) -> int:
    return await _count(due_reminders(session, settings=get_settings(), now=now))


async def _campaign(session: AsyncSession, now: datetime) -> int:
    return (await campaigns.run_daily(session, now)).ordered


async def _ledger_anchor(session: AsyncSession, now: datetime) -> int:
    await settlement_ledger.anchor(session, (now - timedelta(days=1)).date())  # the day just ended
    return 1


async def _day_plan(session: AsyncSession, now: datetime) -> int:
    return await scheduling_planner.plan_tomorrow(session, now, time_limit=get_settings().day_plan_time_limit_s)


async def _replan(session: AsyncSession, now: datetime) -> int:
    return await scheduling_replan.replan_due(session, now)


async def _train_eta(session: AsyncSession, now: datetime) -> int:
    training = await eta.retrain(session)
    return 1 if training is not None and training.model_id is not None else 0


async def _requeue_stalled(session: AsyncSession, now: datetime) -> int:
    return await events.requeue_stalled(session)


@dataclass(frozen=True)
class Periodic:
    every: timedelta
    run: Job
    lane: str = "background"


PERIODIC: dict[str, Periodic] = {
    "matching.lapse_absent": Periodic(timedelta(seconds=5), _lapse_absent, lane="realtime"),
    "matching.unfulfilled": Periodic(timedelta(seconds=10), lambda s, now: matching.sweep_unfulfilled(s, now)),
    # Booked orders enter matching the travel allowance before their window.
    "scheduling.release": Periodic(timedelta(seconds=30), lambda s, now: scheduling.release_due(s, now)),
    "scheduling.remind": Periodic(timedelta(minutes=5), lambda s, now: scheduling_replan.remind_due(s, now)),
    "ratings.finalize": Periodic(timedelta(seconds=30), lambda s, now: finalize_due(s, now)),
    "settlement.payouts": Periodic(timedelta(seconds=5), _queue_payouts),
    "settlement.webhooks": Periodic(timedelta(seconds=5), _webhooks),
    "meters.commands": Periodic(timedelta(seconds=5), _meter_commands),
    "events.requeue_stalled": Periodic(timedelta(seconds=30), _requeue_stalled),
}


def cron_jobs() -> dict[str, tuple[str, Job]]:
    """Once per period across all workers; a failure is retried with backoff (minutes), not a
    period later."""
    settings = get_settings()
    return {
        "meters.comm_lost": (settings.cron_comm_lost, _comm_lost),
        "meters.consumption": (settings.cron_consumption, _consumption),
        "meters.reminders": (settings.cron_reminders, _reminders),
        "field.campaign": (settings.cron_campaign, _campaign),
        "settlement.ledger_anchor": (settings.cron_ledger_anchor, _ledger_anchor),
        "scheduling.day_plan": (settings.cron_day_plan, _day_plan),
        "scheduling.replan": (settings.cron_replan, _replan),
        "matching.train_eta": (settings.cron_train_eta, _train_eta),
    }


async def run_job(name: str, job: Job, now: datetime | None = None) -> int:
    """One periodic or cron job in its own transaction, on the database's clock."""
    async with session_scope() as session:
        done = await job(session, now or await database_now(session)) or 0
    if done:
        log.info("worker.job_done", job=name, count=done)
    return done


async def expire_offer(payload: dict[str, Any]) -> None:
    """At an offer's deadline (a job delayed by its timeout): lapse it, and every other offer
    due, unless it was answered meanwhile."""
    async with session_scope() as session:
        now = await database_now(session)
        offer = await session.get(Offer, uuid.UUID(payload["offer_id"]))
        if offer is None or offer.status != "offered":
            return
        early = offer.expires_at - now
        if early <= timedelta(0):
            await matching.expire_offers(session, matching.geo_index(get_redis()), now)
    if early > timedelta(0):  # the deadline is judged on the database's clock
        raise RetryRequested(delay=early, reason="offer not due yet")


async def transfer(payload: dict[str, Any]) -> None:
    await _transfer(uuid.UUID(payload["settlement_id"]))


async def _transfer(settlement_id: uuid.UUID) -> bool:
    try:
        async with session_scope() as session:
            return bool(await settlement.transfer_settlement(session, settlement_id, settlement.get_gateway()))
    except settlement.SettlementNotReady:  # logged by settlement; the payouts job queues it again
        return False


def _job(run: Callable[..., Awaitable[Any]], key: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def call(payload: dict[str, Any]) -> None:
        await run(payload[key])

    return call


def _periodic_job(name: str, job: Job) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def call(_payload: dict[str, Any]) -> None:
        await run_job(name, job)

    return call


def lanes() -> dict[str, list[jobs.JobSpec]]:
    settings = get_settings()
    realtime = [
        jobs.JobSpec(jobs.DELIVER, _job(events.deliver, "delivery_id"), max_attempts=10),
        jobs.JobSpec(jobs.FAN_OUT, _job(events.fan_out, "event_id"), max_attempts=10),
        jobs.JobSpec(EXPIRE_OFFER, expire_offer, max_attempts=10, max_delay=timedelta(seconds=10)),
    ]
    background = [
        jobs.JobSpec(jobs.DELIVER_SLOW, _job(events.deliver, "delivery_id"), max_attempts=10),
        jobs.JobSpec(TRANSFER, transfer, concurrency_limit=settings.payout_concurrency, max_attempts=8,
                     initial_delay=timedelta(seconds=5), max_delay=timedelta(minutes=10)),
    ]
    for name, periodic in PERIODIC.items():
        spec = jobs.JobSpec(name, _periodic_job(name, periodic.run), concurrency_limit=1, max_attempts=3)
        (realtime if periodic.lane == "realtime" else background).append(spec)
    for name, (_, job) in cron_jobs().items():
        background.append(jobs.JobSpec(name, _periodic_job(name, job), concurrency_limit=1, max_attempts=8,
                                       initial_delay=timedelta(seconds=30), max_delay=timedelta(minutes=30)))
    urgent = [jobs.JobSpec(jobs.DELIVER_URGENT, _job(events.deliver, "delivery_id"), max_attempts=10)]
    return {"urgent": urgent, "realtime": realtime, "background": background}


async def _schedule_periodic(stop: asyncio.Event) -> None:
    """Keeps one job of each periodic kind queued (deduplicated across workers)."""
    every = {name: p.every for name, p in PERIODIC.items()}
    while not stop.is_set():
        async with session_scope() as session:
            await jobs.ensure_scheduled(session, every)
        await _sleep(stop, 1.0)


def _cron_action(name: str) -> Callable[[], Awaitable[None]]:
    async def fire() -> None:
        async with session_scope() as session:
            await jobs.enqueue(session, name, {}, dedupe_key=f"cron:{name}")

    return fire


# Matching ----------------------------------------------------------------------------------

class CityLock:
    """The right to match one city: a session advisory lock on a connection of our own."""

    def __init__(self, city: str) -> None:
        self.city = city
        self.connection: asyncpg.Connection | None = None
        self.held = False

    async def hold(self) -> bool:
        """True while we hold it (checked on the connection each time), else one try to take it."""
        if self.connection is None or self.connection.is_closed():
            self.held = False
            self.connection = await asyncpg.connect(jobs.asyncpg_dsn(), timeout=10)
        if self.held:
            await self.connection.fetchval("SELECT 1", timeout=5)
            return True
        self.held = bool(await self.connection.fetchval(
            "SELECT pg_try_advisory_lock($1, hashtext($2))", MATCHER_LOCK, self.city, timeout=5))
        if self.held:
            log.info("worker.matcher_acquired", city=self.city)
        return self.held

    async def fence(self, session: AsyncSession) -> bool:
        """In the batch's transaction: our lock connection still holds the city, and no other
        batch for it is running."""
        if self.connection is None or self.connection.is_closed() or not self.held:
            return False
        return bool((await session.execute(_FENCE, {
            "batch_lock": BATCH_LOCK, "matcher_lock": MATCHER_LOCK, "city": self.city,
            "pid": self.connection.get_server_pid()})).scalar())

    async def release(self) -> None:
        if self.connection is not None:
            try:
                await asyncio.wait_for(self.connection.close(), timeout=5)
            except Exception:
                self.connection.terminate()
        self.connection, self.held = None, False


_FENCE = text("""
    SELECT pg_try_advisory_xact_lock(:batch_lock, hashtext(:city))
       AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid
                   AND classid = (:matcher_lock)::bigint::oid
                   AND objid = (hashtext(:city)::bigint & 4294967295)::oid AND objsubid = 2)""")


async def _run_batch(session: AsyncSession, city: str, now: datetime) -> int:
    return len(await matching.run_batch(session, matching.geo_index(get_redis()), now, city_id=city))


class MatcherShare:
    """This process's fair share of the cities, ceil(cities / live workers): N workers split the
    cities between them instead of the first to start taking them all. A worker over its share
    (another joined) lets cities go down to it; a worker that dies frees its cities for the others."""

    def __init__(self) -> None:
        self.locks: list[CityLock] = []
        self.cities = 1
        self.workers = 1

    def held(self) -> int:
        return sum(lock.held for lock in self.locks)

    def limit(self) -> int:
        return math.ceil(self.cities / max(1, self.workers))


async def match_once(lock: CityLock, share: MatcherShare | None = None) -> int | None:
    """One batch for the lock's city if we hold it; None when another process does."""
    if share is not None:
        if not lock.held and share.held() >= share.limit():
            return None
        if lock.held and share.held() > share.limit():
            await lock.release()
            log.info("worker.matcher_released", city=lock.city, share=share.limit())
            return None
    if not await lock.hold():
        return None
    async with session_scope() as session:
        if not await lock.fence(session):
            return None
        offers = await _run_batch(session, lock.city, await database_now(session))
    MATCHING_ROUNDS.labels(lock.city).inc()
    jobs.finished["matching.batch"] += 1
    if offers:
        log.info("worker.offers", city=lock.city, offers=offers)
    return offers


async def _match_city(city: str, share: MatcherShare, stop: asyncio.Event) -> None:
    lock = CityLock(city)
    share.locks.append(lock)
    try:
        while not stop.is_set():
            await match_once(lock, share)
            await _sleep(stop, get_settings().batch_window_s)
    finally:
        share.locks.remove(lock)
        await lock.release()


async def active_cities() -> list[str]:
    async with session_scope() as session:
        return list(await matching.active_cities(session))


async def _matchers(stop: asyncio.Event) -> None:
    """A matching loop per city with work, each supervised on its own; once started it runs on."""
    running: dict[str, asyncio.Task[None]] = {}
    share = MatcherShare()
    while not stop.is_set():
        try:
            cities = await active_cities()
            share.cities, share.workers = max(len(cities), len(running), 1), await jobs.live_workers(matchers_only=True)
        except Exception as exc:  # the cities already running go on; the list is read again soon
            WORKER_ERRORS.labels("matching").inc()
            log.warning("worker.cities_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            cities = []
        for city in cities:
            if city not in running or running[city].done():
                running[city] = asyncio.create_task(
                    supervise(f"matching:{city}", _bind(_match_city, city, share), stop))
        await _sleep(stop, get_settings().batch_window_s)  # a city with new work starts at once
    await asyncio.gather(*running.values(), return_exceptions=True)


def _bind(loop: Callable[[str, MatcherShare, asyncio.Event], Awaitable[None]], city: str,
          share: MatcherShare) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        await loop(city, share, stop)

    return run


# Supervision -------------------------------------------------------------------------------

def _heartbeat(matches: bool) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def beat(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await jobs.write_heartbeat(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), dict(jobs.finished), matches)
            await _sleep(stop, HEARTBEAT_EVERY_S)

    return beat


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def supervise(name: str, loop: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run `loop` until `stop`; any failure (PostgreSQL or Redis down, a bug) is logged, counted
    and followed by a bounded backoff and a fresh start, never by an exit."""
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await loop(stop)
            if stop.is_set():
                return
            raise RuntimeError("the loop returned")
        except Exception as exc:
            if time.monotonic() - started > 60:
                failures = 0
            failures += 1
            WORKER_ERRORS.labels(name.split(":")[0]).inc()
            log.error("worker.loop_failed", loop=name, consecutive_failures=failures,
                      error=f"{type(exc).__name__}: {exc}"[:500])
            await _sleep(stop, min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_S))


ROLES = ("urgent", "realtime", "background", "matching")


async def run_forever(stop: asyncio.Event | None = None, roles: Sequence[str] = ROLES) -> None:
    """Until `stop` (the API's lifespan) or, standalone, SIGTERM/SIGINT: running jobs finish and
    hand their rows back instead of waiting out their heartbeat. `roles` picks the work: a
    process of its own for `urgent` keeps emergencies off the event loop of routine work."""
    register_handlers()
    if stop is None:
        heap.settle()  # standalone; the API's start-up does it for the embedded worker
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    lane_specs = lanes()
    schedules = {name: (expression, _cron_action(name)) for name, (expression, _) in cron_jobs().items()}
    by_role: dict[str, dict[str, Callable[[asyncio.Event], Awaitable[None]]]] = {
        "urgent": {"lane:urgent": lambda s: jobs.run_lane(lane_specs["urgent"], s, batch_size=5, pool_size=2)},
        "realtime": {"lane:realtime": lambda s: jobs.run_lane(lane_specs["realtime"], s, batch_size=10, pool_size=4)},
        "background": {
            "lane:background": lambda s: jobs.run_lane(lane_specs["background"], s, batch_size=5, pool_size=3),
            "schedules": lambda s: jobs.run_schedules(schedules, s),
            "periodic": _schedule_periodic,
        },
        "matching": {"matchers": _matchers},
    }
    loops = {"heartbeat": _heartbeat("matching" in roles)}
    for role in roles:
        loops.update(by_role[role])
    if "urgent" in roles:
        await _warm_up()
    log.info("worker.started", worker=jobs.worker_id(), loops=list(loops))
    await asyncio.gather(*(supervise(name, loop, stop) for name, loop in loops.items()))


def prioritise(roles: Sequence[str]) -> int | None:
    """A process that runs the urgent lane alone raises its CPU priority to `urgent_worker_nice`
    (measured at 2,000 sockets: the emergency round p50 53 ms instead of 113); a process with
    routine work keeps its own. Returns the nice value set, or None."""
    niceness = get_settings().urgent_worker_nice
    if set(roles) != {"urgent"} or os.getpriority(os.PRIO_PROCESS, 0) <= niceness:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except PermissionError:
        log.warning("worker.priority_not_raised", nice=niceness,
                    hint="needs root or CAP_SYS_NICE (systemd: Nice=); GASDISPATCH_URGENT_WORKER_NICE=0 to leave it")
        return None
    return niceness


async def _warm_up() -> None:
    """The urgent lane's path once before the first emergency, so that it does not pay for
    statement compilation, prepared statements and backend caches: the round's reads, and a
    delivery job for no delivery (enqueued as the round enqueues its own, and run by the lane
    once it starts: dequeued, read, found absent, done). A failure here (the database or Redis
    still starting) only leaves the first emergency cold."""
    try:
        async with session_scope() as session:
            await matching.warm_up(session, matching.geo_index(get_redis()), get_settings().city)
            await session.rollback()
        async with session_scope() as session:
            await jobs.enqueue(session, jobs.DELIVER_URGENT, {"delivery_id": NO_DELIVERY})
    except Exception as exc:  # noqa: BLE001 (a cold start is slower, not broken)
        log.warning("worker.warm_up_failed", error=f"{type(exc).__name__}: {exc}"[:300])


# In-process run (tests, operations) ---------------------------------------------------------

async def deliver_ready(max_rounds: int = 20) -> int:
    """Deliveries that are due, each through the same job as the engine runs, until quiet."""
    delivered = 0
    for _ in range(max_rounds):
        async with session_scope() as session:
            now = await database_now(session)
            ready = (await session.exec(select(Delivery.id).where(
                Delivery.state == "pending", Delivery.next_attempt_at <= now).order_by(Delivery.event_id))).all()
        progress = 0
        for delivery_id in ready:
            try:
                await events.deliver(delivery_id)
                progress += 1
            except RetryRequested:
                continue
        delivered += progress
        if progress == 0:
            break
    return delivered


async def run_once(now: datetime | None = None) -> dict[str, int]:
    """Every job once in this process, in a fixed order, as `now` (tests; production runs them
    as separate jobs with `run_forever`)."""
    counts: dict[str, int] = {"events": await deliver_ready()}
    offers = 0
    for city in await active_cities():
        lock = CityLock(city)
        try:
            offers += await match_once(lock) or 0
        finally:
            await lock.release()
    counts["offers"] = offers
    counts["events"] += await deliver_ready()
    for name, periodic in PERIODIC.items():
        if name != "settlement.payouts":
            counts["reviews" if name == "ratings.finalize" else name] = await run_job(name, periodic.run, now)
    counts["events"] += await deliver_ready()  # a finalized review makes its settlement
    await run_job("settlement.payouts", _queue_payouts, now)
    async with session_scope() as session:
        pending = await settlement.pending_transfer_ids(session)
    counts["payouts"] = 0
    for settlement_id in pending:  # each its own job in production: one failure stops no other
        try:
            counts["payouts"] += await _transfer(settlement_id)
        except Exception:
            log.exception("worker.transfer_failed", settlement_id=str(settlement_id))
    counts["events"] += await deliver_ready()
    return counts
