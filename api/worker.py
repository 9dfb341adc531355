"""The platform's periodic work, one loop: events, matching, review finalization, payouts.

One active worker per city holds a lease in Redis, so several API processes (or a separate
`gasdispatch worker`) can run it safely; a crashed holder's lease runs out within seconds.
Each job runs in its own transaction so one failure does not block the others.
"""

import asyncio
import os
import socket
from zoneinfo import ZoneInfo
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from api.wiring import register_handlers
from dispatch.config import get_settings
from dispatch.db import session_scope
from dispatch.field import campaigns
from dispatch.events import relay_once
from dispatch.redis import get_redis
from matching import service as matching
from meters import commands as meters_commands
from meters import rules as meters_rules
from meters.consumption import check_consumption
from meters.reminders import due_reminders
from ratings.jobs import finalize_due
from settlement import service as settlement
from settlement import webhooks as settlement_webhooks

log = structlog.get_logger(__name__)
LEASE_MS = 5000
RELAY_INTERVAL_S = 0.1
RELAY_MAX_BACKOFF_S = 10.0


async def hold_lease(city: str, holder: str) -> bool:
    redis = get_redis()
    key = f"worker:lease:{city}"
    if await redis.set(key, holder, nx=True, px=LEASE_MS):
        return True
    if await redis.get(key) == holder:
        await redis.pexpire(key, LEASE_MS)
        return True
    return False


async def tick(now: datetime | None = None) -> dict[str, int]:
    now = now or datetime.now(timezone.utc)
    index = matching.geo_index(get_redis())
    counts: dict[str, int] = {}

    async def step(name: str, job: Callable[[AsyncSession], Awaitable[int | None]]) -> None:
        try:
            async with session_scope() as session:
                counts[name] = counts.get(name, 0) + (await job(session) or 0)
        except Exception:  # logged; the next tick retries
            log.exception("worker.step_failed", step=name)

    await step("events", relay_once)
    await step("absent", lambda s: matching.lapse_offers_of_absent(s, index, now))
    await step("expired", lambda s: matching.expire_offers(s, index, now))
    await step("offers", lambda s: _count(matching.run_batch(s, index, now)))
    await step("unfulfilled", lambda s: matching.sweep_unfulfilled(s, now))
    await step("reviews", lambda s: finalize_due(s, now))
    await step("events", relay_once)
    try:
        counts["payouts"] = await _pay_pending()
    except Exception:
        log.exception("worker.step_failed", step="payouts")
    await step("webhooks", lambda s: settlement_webhooks.process_pending(s, settlement.get_gateway()))
    settings = get_settings()
    await step("meter_commands", lambda s: meters_commands.deliver_due(s, settings=settings, now=now))
    if await _due("comm_lost", 300):
        await step("comm_lost", lambda s: _count(meters_rules.check_comm_lost(
            s, get_redis(), now=now, factor=settings.meters_comm_lost_factor)))
    if await _due("consumption", 86_400):
        await step("consumption", lambda s: _count(check_consumption(
            s, now=now, tz=ZoneInfo(settings.meters_device_timezone))))
    if await _due("reminders", 86_400):
        await step("reminders", lambda s: _count(due_reminders(s, settings=settings, now=now)))
    if await _due("campaign", 86_400):
        await step("campaign", lambda s: _planned(campaigns.run_daily(s, now)))
    return counts


async def _planned(run: Awaitable[campaigns.CampaignRun]) -> int:
    return (await run).ordered


async def _due(job: str, every_s: int) -> bool:
    """True once per period across all workers (Redis SET NX with the period as expiry)."""
    return bool(await get_redis().set(f"worker:due:{job}", "1", nx=True, ex=every_s))


async def _count(offers: Awaitable[list]) -> int:
    return len(await offers)


async def _pay_pending() -> int:
    """Immediate-schedule payouts, one transaction per transfer so a crash leaves the others
    done; each transfer is idempotent on its settlement's key."""
    gateway = settlement.get_gateway()
    async with session_scope() as session:
        await settlement.release_accrued(session, daily_batch=False)
        pending = await settlement.pending_transfer_ids(session)
    done = 0
    for settlement_id in pending:
        try:
            async with session_scope() as session:
                done += await settlement.transfer_settlement(session, settlement_id, gateway)
        except settlement.SettlementNotReady:  # logged by settlement; retried on the next run
            continue
    return done


async def relay_forever(stop: asyncio.Event) -> None:
    """Deliver outbox events every RELAY_INTERVAL_S, so statuses and notifications reach
    sockets promptly; relays on several processes share the work (SKIP LOCKED). While the
    database is unreachable it backs off, up to RELAY_MAX_BACKOFF_S between tries."""
    failures = 0
    while not stop.is_set():
        try:
            async with session_scope() as session:
                handled = await relay_once(session)
            failures = 0
        except Exception:
            log.exception("worker.relay_failed", consecutive_failures=failures + 1)
            handled = 0
            failures += 1
        if handled == 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(RELAY_INTERVAL_S * 2 ** failures, RELAY_MAX_BACKOFF_S))
            except TimeoutError:
                pass


async def run_forever(stop: asyncio.Event | None = None) -> None:
    register_handlers()
    settings = get_settings()
    holder = f"{socket.gethostname()}:{os.getpid()}"
    stop = stop or asyncio.Event()
    relay = asyncio.create_task(relay_forever(stop))
    while not stop.is_set():
        if await hold_lease(settings.city, holder):
            counts = await tick()
            if any(counts.values()):
                log.info("worker.tick", **counts)
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.batch_window_s)
        except TimeoutError:
            pass
    await relay
