"""Jobs on pgqueuer: enqueued in the caller's own transaction, run by worker lanes.

A job is enqueued on the session's asyncpg connection, inside its transaction, so it exists
exactly when the state change that asked for it commits. Workers run lanes (a QueueManager
each, on its own small pool): a lane's entrypoints have their own concurrency limit (enforced
in SQL across every worker), retry policy and failure handling. A job that failed its last try
is held (`failed`) for operations; an event delivery that did is a dead letter (kit_delivery).
"""

import asyncio
import dataclasses
import json
import socket
import os
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from pgqueuer import AsyncpgDriver, DatabaseRetryEntrypointExecutor, Job, Queries, QueueManager, SchedulerManager
from pgqueuer.core import listeners
from pgqueuer.errors import RetryRequested
from pgqueuer.executors import EntrypointExecutorParameters
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.db import database_now, session_scope
from kit.errors import Conflict, NotFound
from kit.models import Delivery
from kit.pagination import page_of, paginate
from kit.redis import get_redis

log = structlog.get_logger(__name__)

DELIVER = "events.deliver"
# Deliveries to subscribers whose handlers call a payment provider: the background lane, so a
# slow provider never holds a slot an emergency's delivery needs.
DELIVER_SLOW = "events.deliver_slow"
# An emergency's other deliveries: a lane of their own (its own queue manager and connections,
# and its own process where deployed so: `gasdispatch worker --roles urgent`), so that they
# never wait behind routine work, nor share an event loop with it.
DELIVER_URGENT = "events.deliver_urgent"
FAN_OUT = "events.fanout"
HEARTBEAT_PREFIX = "worker:heartbeat:"
HEARTBEAT_TTL_S = 15

JOB_RUNS = Counter("gasdispatch_jobs_total", "Jobs run by the worker, by entrypoint and outcome",
                   ["entrypoint", "outcome"])
# Jobs finished in this process, by entrypoint: the worker's heartbeat reports them.
finished: Tally[str] = Tally()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def asyncpg_dsn() -> str:
    url = make_url(get_settings().database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _queries(session: AsyncSession) -> Queries:
    """pgqueuer on the session's own connection; its transaction is begun first, so that the
    job is written in it and not in a transaction of its own."""
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    if not raw.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    return Queries(AsyncpgDriver(raw))


_slow_subscribers: set[str] = set()


def mark_slow(subscriber: str) -> None:
    _slow_subscribers.add(subscriber)


def delivery_entrypoint(subscriber: str, urgent: bool = False) -> str:
    if subscriber in _slow_subscribers:
        return DELIVER_SLOW
    return DELIVER_URGENT if urgent else DELIVER


def delivery_job_key(delivery: Delivery) -> str:
    """One job at a time per delivery; the creation time keeps keys unique even where ids
    are reused (a test database truncated with its identities restarted)."""
    return f"delivery:{delivery.id}:{delivery.created_at.timestamp():.6f}"


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


async def enqueue(session: AsyncSession, entrypoint: str, payload: dict[str, Any], *,
                  execute_after: timedelta | None = None, dedupe_key: str | None = None) -> None:
    """A job that runs once the caller's transaction commits (after `execute_after`). With a
    `dedupe_key`, a job with the same key still queued or running makes this a no-op."""
    await enqueue_many(session, entrypoint, [payload], execute_after=execute_after,
                       dedupe_keys=[dedupe_key])


async def enqueue_many(session: AsyncSession, entrypoint: str, payloads: list[dict[str, Any]], *,
                       execute_after: timedelta | None = None, dedupe_keys: list[str | None] | None = None) -> None:
    if not payloads:
        return
    queries = await _queries(session)
    count = len(payloads)
    await queries.enqueue([entrypoint] * count, [_encode(p) for p in payloads], [0] * count,
                          [execute_after] * count, dedupe_keys or [None] * count, on_conflict="skip")


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One entrypoint of a lane: what it runs and how it is retried."""

    name: str
    run: Callable[[dict[str, Any]], Awaitable[None]]
    concurrency_limit: int = 0  # 0: unlimited; enforced across all workers
    max_attempts: int = 5
    initial_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)


class WakeUps(listeners.PGNoticeEventListener):
    """A queue manager's wake-ups. Every change to the job table (any lane's insert or delete)
    notifies every lane, and pgqueuer wakes once per notice: a dequeue and two or three probes
    each. One wake-up covers every notice already received (the dequeue that follows sees all
    their changes), so the rest are dropped when it is taken. Notices that arrive later stay."""

    async def get(self) -> Any:
        event = await super().get()
        while not self.empty():
            self.get_nowait()
        return event


# pgqueuer builds its notice queue from this name inside QueueManager.run (pinned <2).
listeners.PGNoticeEventListener = WakeUps


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Release without asyncpg's reset statement (`RESET ALL; UNLISTEN *; ...`), a round trip
    after each of the engine's statements: it keeps no session state on these connections, and
    asyncpg still rolls back a transaction left open."""


async def lane_pool(size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(asyncpg_dsn(), min_size=1, max_size=size, timeout=10, reset=_keep_session)


def _executor(spec: JobSpec) -> DatabaseRetryEntrypointExecutor:
    async def run(job: Job) -> None:
        payload = json.loads(job.payload) if job.payload else {}
        try:
            await spec.run(payload)
        except RetryRequested:
            JOB_RUNS.labels(spec.name, "retry").inc()
            raise
        except Exception as exc:
            outcome = "failed" if job.attempts >= spec.max_attempts else "retry"
            JOB_RUNS.labels(spec.name, outcome).inc()
            log.warning("job.failed", entrypoint=spec.name, attempt=job.attempts, final=outcome == "failed",
                        error=f"{type(exc).__name__}: {exc}"[:500])
            raise
        JOB_RUNS.labels(spec.name, "ok").inc()
        finished[spec.name] += 1

    return DatabaseRetryEntrypointExecutor(
        EntrypointExecutorParameters(concurrency_limit=spec.concurrency_limit, func=run, on_failure="hold"),
        max_attempts=spec.max_attempts, initial_delay=spec.initial_delay, max_delay=spec.max_delay)


class LaneStopped(RuntimeError):
    """The queue manager returned without being asked to (its listener failed)."""


async def run_lane(specs: list[JobSpec], stop: asyncio.Event, *, batch_size: int = 10, pool_size: int = 3) -> None:
    """Run these entrypoints until `stop`; database errors propagate to the caller's supervisor.
    A worker holds at most twice a batch at once (pgqueuer's floor): more would only queue on its
    few connections while other workers could have taken them."""
    pool = await lane_pool(pool_size)
    try:
        manager = QueueManager(Queries.from_asyncpg_pool(pool))
        for spec in specs:
            manager.register_executor(spec.name, _executor(spec))
        await _until_stopped(manager.run(dequeue_timeout=timedelta(seconds=5), batch_size=batch_size,
                                         max_concurrent_tasks=2 * batch_size, shutdown_on_listener_failure=True),
                             manager.shutdown, stop)
    finally:
        await _close(pool)


async def run_schedules(schedules: dict[str, tuple[str, Callable[[], Awaitable[None]]]], stop: asyncio.Event) -> None:
    """Cron schedules (name -> (expression, action)); pgqueuer runs each once per period across
    all workers. An action should only enqueue a job, which carries the retries."""
    connection = await asyncpg.connect(asyncpg_dsn(), timeout=10)
    try:
        manager = SchedulerManager(Queries(AsyncpgDriver(connection)))
        for name, (expression, action) in schedules.items():
            manager.schedule(name, expression)(_scheduled(action))
        await _until_stopped(manager.run(), manager.shutdown, stop)
    finally:
        await _close(connection)


def _scheduled(action: Callable[[], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    async def fire(_schedule: Any) -> None:
        await action()

    return fire


async def _until_stopped(run: Awaitable[None], shutdown: asyncio.Event, stop: asyncio.Event) -> None:
    running = asyncio.ensure_future(run)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            shutdown.set()
            await asyncio.wait_for(running, timeout=30)
            return
        running.result()
        raise LaneStopped("the job engine stopped on its own")
    finally:
        stopping.cancel()
        if not running.done():
            running.cancel()


async def _close(resource: Any) -> None:
    try:
        await asyncio.wait_for(resource.close(), timeout=5)
    except Exception:  # a dead server: drop the sockets
        resource.terminate()


async def ensure_scheduled(session: AsyncSession, periodic: dict[str, timedelta]) -> None:
    """Each periodic job queued once (its name is its dedupe key): whichever worker is free runs
    it; the next is queued after it finished, `interval` later."""
    queries = await _queries(session)
    names = list(periodic)
    await queries.enqueue(names, [None] * len(names), [0] * len(names), [periodic[n] for n in names],
                          [f"periodic:{n}" for n in names], on_conflict="skip")


# Health ------------------------------------------------------------------------------------

async def write_heartbeat(at: str, jobs: dict[str, int], matches: bool) -> None:
    """`matches`: this process runs matching loops (a worker of urgent deliveries only does not)."""
    await get_redis().set(f"{HEARTBEAT_PREFIX}{worker_id()}", json.dumps({"at": at, "jobs": jobs, "matches": matches}),
                          ex=HEARTBEAT_TTL_S)


async def live_workers(matchers_only: bool = False) -> int:
    """Worker processes with a fresh heartbeat (only those that run matching loops)."""
    redis = get_redis()
    keys = [key async for key in redis.scan_iter(match=f"{HEARTBEAT_PREFIX}*", count=100)]
    if not matchers_only:
        return len(keys)
    beats = [await redis.get(key) for key in keys]  # one by one: the keys may sit on different cluster nodes
    return sum(1 for beat in beats if beat and json.loads(beat).get("matches", True))


async def engine_health(session: AsyncSession | None = None) -> dict[str, Any]:
    """Workers with a fresh heartbeat, jobs queued, dead letters (event deliveries and held jobs),
    and how long the oldest job that could run has waited."""
    if session is None:
        async with session_scope() as own:
            return await engine_health(own)
    workers = await live_workers()
    queued, failed, oldest = (await session.exec(text("""
        SELECT count(*) FILTER (WHERE status = 'queued'),
               count(*) FILTER (WHERE status = 'failed'),
               extract(epoch FROM clock_timestamp()
                       - min(execute_after) FILTER (WHERE status = 'queued' AND execute_after <= clock_timestamp()))
        FROM pgqueuer"""))).one()
    dead = (await session.exec(text("SELECT count(*) FROM kit_delivery WHERE state = 'dead'"))).one()[0]
    return {"workers": workers, "queued": queued, "dead_letters": dead + failed,
            "oldest_ready_age_s": round(float(oldest), 3) if oldest is not None else 0.0}


async def drop_obsolete_failures(session: AsyncSession) -> int:
    """Delivery jobs held as failed although their delivery is done: pgqueuer lost the job's
    outcome while the database was away and the safety net delivered it since. Not dead letters,
    so they leave the engine's count (ops would chase work that is finished)."""
    result = await session.exec(text("""
        DELETE FROM pgqueuer q USING kit_delivery d
        WHERE q.status = 'failed' AND q.entrypoint = ANY(:entrypoints)
          AND d.id = (convert_from(q.payload, 'UTF8')::json ->> 'delivery_id')::bigint AND d.state = 'done'"""
    ).bindparams(entrypoints=[DELIVER, DELIVER_SLOW, DELIVER_URGENT]))
    return result.rowcount


# Dead letters ------------------------------------------------------------------------------

async def list_dead_letters(session: AsyncSession, *, limit: int = 50, cursor: str | None = None,
                            subscriber: str | None = None) -> tuple[list[Delivery], str | None]:
    """Newest first."""
    statement = select(Delivery).where(Delivery.state == "dead")
    if subscriber is not None:
        statement = statement.where(Delivery.subscriber == subscriber)
    rows = (await session.exec(paginate(statement, Delivery, limit, cursor))).all()
    return page_of(list(rows), limit)


async def _dead_letter(session: AsyncSession, delivery_id: int) -> Delivery:
    delivery = (await session.exec(select(Delivery).where(Delivery.id == delivery_id).with_for_update())).first()
    if delivery is None:
        raise NotFound("no such delivery")
    if delivery.state != "dead":
        raise Conflict(f"the delivery is {delivery.state}, not a dead letter")
    return delivery


async def retry_dead_letter(session: AsyncSession, delivery_id: int) -> Delivery:
    """Back to pending with a fresh count of tries, delivered by the next free worker."""
    delivery = await _dead_letter(session, delivery_id)
    delivery.state, delivery.attempts, delivery.deferrals = "pending", 0, 0
    delivery.next_attempt_at = await database_now(session)
    session.add(delivery)
    await session.flush()
    await enqueue(session, delivery_entrypoint(delivery.subscriber), {"delivery_id": delivery.id},
                  dedupe_key=delivery_job_key(delivery))
    log.info("events.dead_letter_retried", delivery_id=delivery.id, subscriber=delivery.subscriber)
    return delivery


async def discard_dead_letter(session: AsyncSession, delivery_id: int) -> Delivery:
    """Given up on by a person: kept as the record, never delivered."""
    delivery = await _dead_letter(session, delivery_id)
    delivery.state = "discarded"
    delivery.finished_at = await database_now(session)
    session.add(delivery)
    await session.flush()
    log.info("events.dead_letter_discarded", delivery_id=delivery.id, subscriber=delivery.subscriber)
    return delivery
