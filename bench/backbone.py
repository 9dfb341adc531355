"""Scale-out figures of the backbone, in a scratch database of its own (created beside the
configured one, migrated, dropped at the end; bench/realtime_support/scratch.py).

1. Event throughput: events/s delivered to 4 subscribers by `--workers` worker processes.
   `--publishers` tasks each publish their share of `--events` events, one committed
   transaction per event (outbox row, 4 deliveries, 4 jobs); each event names an order, and
   each order's events come from one publisher in turn (`--events-per-order` of them), as an
   order's life does, so the per-order sequencing is exercised. The workers run the engine's
   realtime lane as `python -m app worker` does (kit.jobs.run_lane, batch 10, a pool of 4)
   with the engine's `events.deliver` job (a transaction per delivery, the order check, a
   handler that records nothing). The figure is events whose 4 deliveries are all done, per
   second, from the first publish to the last delivery. Also printed: publish rate alone, an
   event's commit -> its last delivery done, job runs per delivery (above 1: a delivery that
   waited for an earlier one of its order, or was retried), and per worker the CPU seconds
   per delivery and the most deliveries it had in flight at once.
2. Matching rounds per second for `--cities` cities, each seeded with `--technicians` online
   technicians (in PostgreSQL and the city's live index in Redis) and `--waiting` orders
   waiting for a match. `--workers` processes each run a matcher per city as the worker does:
   a round only while holding the city's advisory lock, fenced in the round's transaction,
   with `matching.run_batch`. Each round is rolled back, so every round finds the same work
   (no offer is kept; the commit is the part not measured). The figure is rounds per second
   across all cities, with the offers each round made.

    python bench/backbone.py [--events 2000] [--workers 2] [--cities 10] [--matching-s 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the project, not this folder's namesakes

from bench.matching_assign import machine  # noqa: E402
from bench.realtime_support import scratch  # noqa: E402

TOPIC = "bench.backbone"
SUBSCRIBERS = ("bench_a", "bench_b", "bench_c", "bench_d")
CITY_SPREAD_DEG = 0.05  # each city's technicians and orders over ~10 x 10 km


def _subscribe() -> None:
    from kit import events

    for name in SUBSCRIBERS:
        async def handler(_session: object, _payload: dict) -> None:
            return None
        handler.__name__ = name
        events.subscribe(TOPIC, handler, subscriber=name)
    events.mark_wired()


def _until_signalled() -> asyncio.Event:
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    return stop


async def _delivery_worker() -> dict:
    """A worker process: the engine's realtime lane with the bench's subscribers, until SIGTERM."""
    from kit import events, jobs

    _subscribe()
    stop = _until_signalled()
    in_flight = [0, 0]  # now, most

    async def deliver(payload: dict) -> None:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            await events.deliver(payload["delivery_id"])
        finally:
            in_flight[0] -= 1

    started_cpu = time.process_time()  # after the imports: the lane's own work only
    await jobs.run_lane([jobs.JobSpec(jobs.DELIVER, deliver, max_attempts=10)], stop, batch_size=10, pool_size=4)
    return {"cpu_s": round(time.process_time() - started_cpu, 2), "in_flight_max": in_flight[1]}


async def _matcher_worker(cities: list[str], start_at: float, seconds: float) -> dict:
    """A worker process: a matcher per city, each round under the city's fenced lock, rolled back."""
    from app.wiring import register_handlers
    from app.worker import CityLock
    from kit import after_commit
    from kit.db import database_now, get_sessionmaker
    from kit.redis import get_redis
    from matching import service as matching

    register_handlers()
    rounds: Counter[str] = Counter()
    offers: Counter[str] = Counter()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    started = time.monotonic()
    until = started + seconds

    async def match(city: str) -> None:
        lock = CityLock(city)
        index = matching.geo_index(get_redis())
        try:
            while time.monotonic() < until:
                if not await lock.hold():
                    await asyncio.sleep(0.5)  # another process matches this city
                    continue
                async with get_sessionmaker()() as session:
                    if await lock.fence(session):
                        made = await matching.run_batch(session, index, await database_now(session), city_id=city)
                        rounds[city] += 1
                        offers[city] += len(made)
                    await session.rollback()
                    after_commit.discard(session)
        finally:
            await lock.release()

    await asyncio.gather(*(match(city) for city in cities))
    return {"seconds": round(time.monotonic() - started, 2), "rounds": dict(rounds), "offers": dict(offers)}


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=open(log, "w"), text=True)


def _report_of(process: subprocess.Popen, timeout: float) -> dict:
    out, _ = process.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


# Event throughput ------------------------------------------------------------------------

async def _publish(publisher: int, count: int, events_per_order: int) -> None:
    from kit import events
    from kit.db import session_scope

    orders = max(1, count // events_per_order)
    for i in range(count):
        async with session_scope() as session:
            await events.publish(session, TOPIC, {"order_id": f"bench-{publisher}-{i % orders}", "n": i})


async def _deliveries_done() -> int:
    from sqlalchemy import text

    from kit.db import get_engine

    async with get_engine().connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM kit_delivery WHERE topic = :t AND state = 'done'"),
                                   {"t": TOPIC})).scalar_one()


async def _event_figures() -> dict:
    from sqlalchemy import text

    from kit.db import get_engine

    async with get_engine().connect() as conn:
        latency = (await conn.execute(text("""
            SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms) FROM (
                SELECT extract(epoch FROM max(d.finished_at) - m.created_at) * 1000 AS ms
                FROM dispatch_outbox m JOIN kit_delivery d ON d.event_id = m.id
                WHERE m.topic = :t GROUP BY m.id, m.created_at) per_event"""), {"t": TOPIC})).scalar_one()
        runs = (await conn.execute(text(
            "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'events.deliver' AND status = 'picked'"))).scalar_one()
    return {"event_to_last_delivery_ms": {"p50": round(latency[0], 1), "p99": round(latency[1], 1)},
            "job_runs": runs}


async def events_figure(args: argparse.Namespace, env: dict[str, str], log_dir: Path, console: Console) -> dict:
    _subscribe()
    workers = [_spawn(["--delivery-worker"], env, log_dir / f"delivery-worker-{i}.log") for i in range(args.workers)]
    try:
        await asyncio.sleep(args.worker_start_s)  # the workers import, connect and listen
        per_publisher = args.events // args.publishers
        total = per_publisher * args.publishers * len(SUBSCRIBERS)
        started = time.perf_counter()
        publishing = asyncio.gather(*(_publish(p, per_publisher, args.events_per_order) for p in range(args.publishers)))
        published_s = None
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("event deliveries", total=total)
            while True:
                done = await _deliveries_done()
                progress.update(task, completed=done)
                if publishing.done() and published_s is None:
                    published_s = time.perf_counter() - started
                if done >= total and publishing.done():
                    break
                if any(w.poll() is not None for w in workers):
                    raise SystemExit(f"a delivery worker exited; see {log_dir}")
                await asyncio.sleep(0.2)
        await publishing
        elapsed = time.perf_counter() - started
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
    reports = [_report_of(w, 60) for w in workers]
    figures = await _event_figures()
    events = per_publisher * args.publishers
    return {"events": events, "subscribers": len(SUBSCRIBERS), "workers": args.workers,
            "publishers": args.publishers, "events_per_order": args.events_per_order, "seconds": round(elapsed, 2),
            "events_per_s": round(events / elapsed, 1), "deliveries_per_s": round(total / elapsed, 1),
            "publish_only_events_per_s": round(events / published_s, 1) if published_s else None,
            "event_to_last_delivery_ms": figures["event_to_last_delivery_ms"],
            "job_runs_per_delivery": round(figures["job_runs"] / total, 2),
            "worker_cpu_ms_per_delivery": round(sum(r["cpu_s"] for r in reports) * 1000 / total, 2),
            "in_flight_max": [r["in_flight_max"] for r in reports]}


# Matching rounds -------------------------------------------------------------------------

async def seed_cities(args: argparse.Namespace, run: str) -> tuple[list[str], list[str]]:
    """Cities a degree apart, each with online technicians (rows and live index) and orders
    waiting for a match; returns the city ids and the technicians' ids."""
    from dispatch.cities import ensure_city
    from dispatch.models import (
        Account,
        Address,
        Certification,
        Customer,
        Order,
        Technician,
    )
    from dispatch.security import hash_password
    from kit.db import database_now, session_scope
    from kit.geo import point
    from kit.redis import get_redis
    from matching import service as matching

    rng = random.Random(args.seed)
    password_hash = hash_password(uuid.uuid4().hex)
    cities = [f"bench-{run}-{k}" for k in range(args.cities)]
    technician_ids: list[str] = []
    async with session_scope() as session:
        now = await database_now(session)
        for k, city in enumerate(cities):
            await ensure_city(session, city, name=city)
            center = (100.0 + k, 30.0)

            def near(center: tuple[float, float] = center) -> object:
                return point(center[0] + rng.uniform(-CITY_SPREAD_DEG, CITY_SPREAD_DEG),
                             center[1] + rng.uniform(-CITY_SPREAD_DEG, CITY_SPREAD_DEG))

            accounts, people, rest = [], [], []
            for i in range(args.technicians):
                account = Account(role="technician", email=f"tech-{city}-{i}@bench.local",
                                  password_hash=password_hash, display_name=f"bench {i}")
                tech = Technician(account_id=account.id, city_id=city, name=f"bench {i}", phone="+86 13800000000",
                                  onboarding="active", status="online", last_location=near(), last_seen_at=now,
                                  idle_since=now)
                accounts.append(account)
                people.append(tech)
                rest.append(Certification(technician_id=tech.id, kind="repair", number=f"B-{city}-{i}", issuer="bench",
                                          valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
                                          status="verified", decided_at=now))
                technician_ids.append(str(tech.id))
            for i in range(args.waiting):
                account = Account(role="customer", email=f"customer-{city}-{i}@bench.local",
                                  password_hash=password_hash, display_name=f"bench customer {i}")
                customer = Customer(account_id=account.id, name=f"bench customer {i}", phone="+86 13900000000")
                location = near()
                address = Address(customer_id=customer.id, label="bench", line=f"bench {i}", location=location)
                accounts.append(account)
                people.append(customer)
                rest += [address, Order(customer_id=customer.id, address_id=address.id, city_id=city,
                                        location=location, kind="repair", required_certification="repair",
                                        priority="routine", status="matching", sla_deadline=now + timedelta(hours=1),
                                        price_estimate_minor=8000, currency="CNY", created_at=now, updated_at=now)]
            session.add_all(accounts)
            await session.flush()
            session.add_all(people)
            await session.flush()
            session.add_all([r for r in rest if not isinstance(r, Order)])
            await session.flush()
            session.add_all([r for r in rest if isinstance(r, Order)])
            await session.flush()
        index = matching.geo_index(get_redis())
        for city in cities:
            await matching.rebuild_index(session, index, city)
    return cities, technician_ids


async def matching_figure(args: argparse.Namespace, cities: list[str], env: dict[str, str], log_dir: Path,
                          console: Console) -> dict:
    start_at = time.time() + args.worker_start_s
    workers = [_spawn(["--matcher-worker", json.dumps(cities), str(start_at), str(args.matching_s)], env,
                      log_dir / f"matcher-worker-{i}.log") for i in range(args.workers)]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"matching rounds, {len(cities)} cities", total=args.worker_start_s + args.matching_s)
        began = time.monotonic()
        while any(w.poll() is None for w in workers) and time.monotonic() - began < args.worker_start_s + args.matching_s:
            await asyncio.sleep(0.5)
            progress.update(task, completed=time.monotonic() - began)
    reports = [_report_of(w, args.matching_s + 120) for w in workers]
    rounds = sum(sum(r["rounds"].values()) for r in reports)
    offers = sum(sum(r["offers"].values()) for r in reports)
    per_city = Counter()
    for r in reports:
        per_city.update(r["rounds"])
    return {"cities": len(cities), "technicians_per_city": args.technicians, "waiting_per_city": args.waiting,
            "workers": args.workers, "seconds": args.matching_s,
            "rounds_per_s": round(sum(sum(r["rounds"].values()) / r["seconds"] for r in reports if r["seconds"]), 1),
            "rounds": rounds, "offers_per_round": round(offers / rounds, 1) if rounds else 0,
            "cities_per_worker": [len(r["rounds"]) for r in reports],
            "slowest_city_rounds_per_s": round(min(per_city.values()) / args.matching_s, 2) if per_city else 0}


# Run ---------------------------------------------------------------------------------------

async def run(args: argparse.Namespace, console: Console) -> dict:
    configured = os.environ.get("GASDISPATCH_DATABASE_URL")
    if not configured:
        raise SystemExit("GASDISPATCH_DATABASE_URL names the PostgreSQL server the scratch database goes on")
    run_id = uuid.uuid4().hex[:8]
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"gasdispatch-bench-backbone-{run_id}"
    log_dir.mkdir(parents=True)
    database = f"{scratch.database_name(configured)}_bb_{run_id}"
    result: dict = {"machine": machine(), "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    console.print(f"[bold]backbone bench[/] on {result['machine']}; load {result['load_average_start']}; "
                  f"scratch database {database}: migrating; logs in {log_dir}")
    url = await scratch.create(configured, database, dict(os.environ), log_dir / "migrate.log")
    os.environ["GASDISPATCH_DATABASE_URL"] = url
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    from kit.config import get_settings
    from kit.db import get_engine

    get_settings.cache_clear()
    cities: list[str] = []
    technicians: list[str] = []
    try:
        if args.events:
            result["events"] = await events_figure(args, env, log_dir, console)
        if args.cities:
            cities, technicians = await seed_cities(args, run_id)
            await get_engine().dispose()
            result["matching"] = await matching_figure(args, cities, env, log_dir, console)
    finally:
        await get_engine().dispose()
        await scratch.forget_cities(cities, technicians)
        await scratch.drop(configured, database)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="0: skip the event figure")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--events-per-order", type=int, default=4, help="events naming one order, in sequence")
    parser.add_argument("--cities", type=int, default=10, help="0: skip the matching figure")
    parser.add_argument("--technicians", type=int, default=200, help="online technicians per city")
    parser.add_argument("--waiting", type=int, default=50, help="orders waiting for a match per city")
    parser.add_argument("--matching-s", type=float, default=30.0)
    parser.add_argument("--worker-start-s", type=float, default=8.0, help="time the worker processes get to start")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--delivery-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--matcher-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.delivery_worker:
        print(json.dumps(asyncio.run(_delivery_worker())), flush=True)
        return
    if args.matcher_worker:
        cities, start_at, seconds = args.matcher_worker
        print(json.dumps(asyncio.run(_matcher_worker(json.loads(cities), float(start_at), float(seconds)))), flush=True)
        return
    console = Console(stderr=args.json)
    result = asyncio.run(run(args, console))
    if args.json:
        print(json.dumps(result))
        return
    console.print(f"machine: {result['machine']}; load average {result['load_average_start']} -> "
                  f"{result['load_average_end']}")
    if "events" in result:
        e = result["events"]
        console.print(f"[bold]{e['events']}[/] events x {e['subscribers']} subscribers, {e['workers']} workers: "
                      f"[bold]{e['events_per_s']} events/s[/] ({e['deliveries_per_s']} deliveries/s) in {e['seconds']} s; "
                      f"publishing alone {e['publish_only_events_per_s']} events/s; event -> last delivery "
                      f"p50 {e['event_to_last_delivery_ms']['p50']} ms, p99 {e['event_to_last_delivery_ms']['p99']} ms; "
                      f"{e['job_runs_per_delivery']} job runs per delivery; {e['worker_cpu_ms_per_delivery']} ms "
                      f"worker CPU per delivery; most in flight per worker {e['in_flight_max']}")
    if "matching" in result:
        m = result["matching"]
        console.print(f"[bold]{m['rounds_per_s']} matching rounds/s[/] across {m['cities']} cities "
                      f"({m['technicians_per_city']} technicians, {m['waiting_per_city']} waiting orders each; "
                      f"{m['offers_per_round']} offers per round; {m['workers']} workers holding "
                      f"{m['cities_per_worker']} cities; slowest city {m['slowest_city_rounds_per_s']} rounds/s)")


if __name__ == "__main__":
    main()
