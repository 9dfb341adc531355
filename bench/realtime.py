"""Realtime at load: N technician sockets on real uvicorn workers, positions in, offers out,
while payouts run against a payment provider that answers in 2 s.

    GASDISPATCH_DATABASE_URL=... GASDISPATCH_REDIS_URL=... GASDISPATCH_STRIPE_API_BASE=... \\
        .venv/bin/python bench/realtime.py [--sockets 2000] [--workers 2] [--duration-s 60] [--json]

Needs a PostgreSQL/PostGIS server where the configured user may create databases, a Redis and
the Stripe-compatible test server (tests/support/stripe_server.py) at GASDISPATCH_STRIPE_API_BASE.
The bench creates a scratch database beside the configured one, migrates it (about half a
minute), runs in its own city (`bench-<run>`, so its Redis keys are its own) and drops the
database and the city's Redis keys at the end.

It starts a slow proxy in front of the provider (every call answered after `--provider-delay-s`),
`--workers` uvicorn processes on free loopback ports and two worker processes, as production
runs them: `python -m app worker --roles urgent` (an emergency's deliveries, its offer round
among them) and `--roles realtime,background,matching` (other deliveries, offer expiry, each
payout its own job, matching per city); `--embedded-worker` runs all of it inside the first API
process instead), connects N technician sockets spread over the API processes, goes online
(once the worker's first heartbeat is in Redis), and sends a position every `--interval-s`
(jittered start). Once every `go_online` is answered (`online_s`) and after a warm-up of two
intervals, for `--duration-s`: customers place routine orders at `--orders-per-s` (batch
matched) and gas-leak emergencies at `--emergencies-per-s` (offered at once to the first round
of the emergency ladder), each next to a random technician; a technician accepts every
emergency offer he gets (the first wins, the others are told), nobody takes routine work, so
those offers lapse and move on. And `--payouts` completed, captured orders get their reviews
finalized over the first 80 % of the window, each making a settlement pending transfer that
the worker pays through the slow proxy.

Latencies run from commit stamps that PostgreSQL itself writes when the order's or the offer's
transaction commits (bench/realtime_support/scratch.py) to the moment the `offer` frame is read
off the socket here; both are this machine's wall clock. The headline is emergency offers:
order committed -> its first offer on a technician's socket, which includes the order event's
delivery on the worker, the matching, the offer's commit, Redis pub/sub and the API worker's
socket write. Offer delivery runs from the offer's commit to the socket (every offer, routine
and emergency). Routine orders also report order committed -> first offer, which includes the
batch window they wait in.

Then, in the same run, the raw baseline: the API processes are stopped, the same number of
sockets connect to a bare `websockets` server (as many processes as API workers; one shared
Redis subscription each, bench/realtime_support/baseline.py) and send the same positions,
and the bench PUBLISHes stamped frames to them at the rate offers arrived in the first phase.
The ratio is the application's emergency latency over the baseline's, at p50 and p99.
"""

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import websockets
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the project, not this folder's namesakes

from bench.matching_assign import machine  # noqa: E402
from bench.realtime_support import payouts, scratch  # noqa: E402

CENTER = (120.155, 30.274)
SPREAD_DEG = 0.05  # technicians over ~10 x 10 km
CONNECT_CONCURRENCY = 100
EMERGENCY_KIND = "emergency_leak"
METRICS_TOKEN = uuid.uuid4().hex  # this run's API processes expose /metrics to it


@dataclass
class Figures:
    acks: int = 0
    ack_window_s: float = 0.0
    offers: dict[str, float] = field(default_factory=dict)  # offer_id -> received (unix s)
    probes: list[float] = field(default_factory=list)  # baseline: PUBLISH -> on the socket, ms
    client_lag: list[float] = field(default_factory=list)  # this process's event loop, late by, ms
    accepts: dict[str, int] = field(default_factory=dict)  # emergency offers: won / lost to another technician
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; see {log}")
        time.sleep(0.1)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = min(hard, max(needed, soft)) if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_slow_provider(upstream: str, delay_s: float, log_dir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = log_dir / "slow-provider.log"
    process = subprocess.Popen([sys.executable, "-m", "bench.realtime_support.slow_provider", "--upstream", upstream,
                                "--port", str(port), "--delay-s", str(delay_s)],
                               cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    _wait_port(port, process, "the slow provider", log)
    return process, f"http://127.0.0.1:{port}"


def start_periodic_workers(log_dir: Path, env: dict[str, str]) -> list[subprocess.Popen]:
    """The worker roles in processes of their own: neither shares its event loop with thousands
    of sockets, and the urgent one shares it with nothing routine."""
    return [subprocess.Popen([sys.executable, "-m", "app", "worker", "--roles", roles], cwd=ROOT, env=env,
                             stdout=open(log_dir / f"worker-{roles.split(',')[0]}.log", "w"), stderr=subprocess.STDOUT)
            for roles in ("urgent", "realtime,background,matching")]


async def wait_heartbeat(process: subprocess.Popen, log_dir: Path) -> None:
    """Until the worker process writes its first heartbeat: its lanes and matchers run."""
    from kit.jobs import HEARTBEAT_PREFIX
    from kit.redis import get_redis

    key = f"{HEARTBEAT_PREFIX}{socket.gethostname()}:{process.pid}"
    deadline = time.monotonic() + 120
    while not await get_redis().exists(key):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start; see {log_dir}")
        await asyncio.sleep(0.2)


def start_workers(count: int, fd_limit: int, log_dir: Path, embedded: bool,
                  env: dict[str, str]) -> list[tuple[subprocess.Popen, str]]:
    started = []
    for i in range(count):
        port = _free_port()
        worker_env = {**env, "GASDISPATCH_EMBEDDED_WORKER": "true" if embedded and i == 0 else "false",
                      # Enough pooled connections for the socket load; the default suits a small demo.
                      "GASDISPATCH_DB_POOL_SIZE": os.environ.get("GASDISPATCH_DB_POOL_SIZE", "20")}
        log = open(log_dir / f"worker-{port}.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({fd_limit}, "
             f"resource.getrlimit(resource.RLIMIT_NOFILE)[1])); import uvicorn; uvicorn.main()",
             "app.asgi:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", "--ws-ping-interval", "60", "--ws-per-message-deflate", "false"],
            cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, f"http://127.0.0.1:{port}"))
    for process, base in started:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {base} did not start; see {log_dir}")
            time.sleep(0.2)
    return started


async def create_people(sockets: int, customers: int, run: str, rng: random.Random) -> dict:
    """Bulk insert, committed: technicians certified for repairs and emergencies, customers each
    with one address near a technician."""
    from dispatch.models import Account, Address, Certification, Customer, Technician
    from dispatch.security import hash_password, issue_token
    from kit.db import session_scope
    from kit.geo import point

    now = datetime.now(UTC)
    password_hash = hash_password(uuid.uuid4().hex)  # nobody logs in with it; tokens are issued directly
    techs, homes = [], []
    async with session_scope() as session:
        accounts, rows, certs = [], [], []
        for i in range(sockets):
            account = Account(role="technician", email=f"tech-{run}-{i}@bench.local", password_hash=password_hash,
                              display_name=f"bench {i}")
            tech = Technician(account_id=account.id, name=f"bench {i}", phone="+86 13800000000", onboarding="active")
            accounts.append(account)
            rows.append(tech)
            certs += [Certification(technician_id=tech.id, kind=kind, number=f"B-{run}-{i}-{kind}", issuer="bench",
                                    valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
                                    status="verified", decided_at=now) for kind in ("repair", "emergency")]
            homes.append((CENTER[0] + rng.uniform(-SPREAD_DEG, SPREAD_DEG), CENTER[1] + rng.uniform(-SPREAD_DEG, SPREAD_DEG)))
            techs.append((account.id, tech.id))
        people = []
        for i in range(customers):
            account = Account(role="customer", email=f"customer-{run}-{i}@bench.local", password_hash=password_hash,
                              display_name=f"bench customer {i}")
            customer = Customer(account_id=account.id, name=f"bench customer {i}", phone="+86 13900000000")
            lon, lat = rng.choice(homes)
            address = Address(customer_id=customer.id, label="bench", line=f"bench {i}",
                              location=point(lon + rng.uniform(-0.002, 0.002), lat + rng.uniform(-0.002, 0.002)))
            accounts.append(account)
            people.append((account, customer, address))
        session.add_all(accounts)
        await session.flush()
        session.add_all(rows + [c for _, c, _ in people])
        await session.flush()
        session.add_all(certs + [a for _, _, a in people])
        await session.flush()
    return {
        "technicians": [(issue_token(a, "technician", ttl_s=7200)[0], t, home) for (a, t), home in zip(techs, homes)],
        "customers": [(issue_token(a.id, "customer", ttl_s=7200)[0], address.id) for a, _, address in people],
        "password_hash": password_hash,
    }


class Technician:
    def __init__(self, url: str, token: str, home: tuple[float, float], figures: Figures, interval_s: float) -> None:
        self.url, self.token, self.home, self.figures, self.interval_s = url, token, home, figures, interval_s
        self.ws = None
        self.counting = False
        self.sent: dict[str, str] = {}  # message id -> type, until answered

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, open_timeout=60, ping_interval=None, max_queue=None,
                                           additional_headers={"Authorization": f"Bearer {self.token}"})
        self.reader = asyncio.create_task(self.read())
        await self.send({"type": "go_online"})

    async def send(self, message: dict) -> None:
        message_id = uuid.uuid4().hex
        self.sent[message_id] = message["type"]
        await self.ws.send(json.dumps({"v": 1, "id": message_id, **message}))

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                received = time.time()
                message = json.loads(raw)
                kind = message["type"]
                if kind == "offer":
                    offer = message["offer"]
                    self.figures.offers.setdefault(offer["offer_id"], received)
                    if offer.get("priority") == "emergency":  # first to accept wins; nobody takes routine work
                        await self.send({"type": "accept_offer", "offer_id": offer["offer_id"]})
                elif kind == "probe":
                    self.figures.probes.append((received - message["sent"]) * 1000)
                elif kind in ("ack", "error"):
                    sent = self.sent.pop(message.get("id") or "", None)
                    if sent == "accept_offer":
                        outcome = "won" if kind == "ack" else "lost"
                        self.figures.accepts[outcome] = self.figures.accepts.get(outcome, 0) + 1
                    elif kind == "error":
                        self.figures.error(f"{sent}: {message.get('code') or message.get('detail')}")
                    elif sent == "location" and self.counting:
                        self.figures.acks += 1
        except websockets.ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != 1000:
                self.figures.error("socket closed")

    async def stream(self, until: float) -> None:
        await asyncio.sleep(random.uniform(0, self.interval_s))
        while time.monotonic() < until:
            lon, lat = self.home[0] + random.uniform(-2e-5, 2e-5), self.home[1] + random.uniform(-2e-5, 2e-5)
            try:
                await self.send({"type": "location", "lon": lon, "lat": lat, "accuracy": 10.0,
                                 "ts": datetime.now(UTC).isoformat()})
            except websockets.ConnectionClosed:
                return
            await asyncio.sleep(self.interval_s)


async def watch_client_lag(figures: Figures, until: float, every_s: float = 0.05) -> None:
    """How late this process's own event loop runs: a frame it reads late was on the socket
    earlier, so the latencies measured here include this much of the client's own queueing."""
    while time.monotonic() < until:
        start = time.monotonic()
        await asyncio.sleep(every_s)
        figures.client_lag.append((time.monotonic() - start - every_s) * 1000)


async def connect_all(technicians: list[Technician], figures: Figures, progress: Progress, label: str) -> float:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    task = progress.add_task(label, total=len(technicians))

    async def connect(tech: Technician) -> None:
        async with gate:
            try:
                await tech.connect()
            except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError) as exc:
                figures.error(f"connect: {type(exc).__name__}")
        progress.advance(task)

    started = time.monotonic()
    await asyncio.gather(*(connect(t) for t in technicians))
    elapsed = time.monotonic() - started
    progress.remove_task(task)
    await asyncio.sleep(2)
    return elapsed


async def gc_pauses(base: str) -> dict:
    """An API process's garbage-collector pauses so far (kit/heap.py), from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "gasdispatch_gc_pause_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0) + sample.value
    total = buckets.get(float("inf"), 0)
    return {"collections": int(total), **{f"over_{int(b * 1000)}_ms": int(total - buckets.get(b, 0))
                                           for b in (0.05, 0.1, 0.5)}}


async def all_online(technicians: list[Technician], progress: Progress, timeout_s: float = 120) -> float:
    """Until every socket's `go_online` is answered: the API processes work through 2,000 of
    them (each a transaction) well after the sockets have connected, and a window that started
    meanwhile would measure that burst, not the load it is about."""
    task = progress.add_task("going online", total=len(technicians))
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        waiting = sum("go_online" in t.sent.values() for t in technicians)
        progress.update(task, completed=len(technicians) - waiting)
        if not waiting:
            break
        await asyncio.sleep(0.2)
    progress.remove_task(task)
    return time.monotonic() - started


def still_open(technicians: list[Technician]) -> list[Technician]:
    """Opened and still open: a worker may accept the handshake and then fail the socket."""
    return [t for t in technicians if t.ws is not None and t.ws.state is websockets.State.OPEN]


async def close_all(technicians: list[Technician]) -> None:
    await asyncio.gather(*(t.ws.close() for t in technicians if t.ws is not None), return_exceptions=True)


async def place_orders(bases: list[str], customers: list[tuple[str, uuid.UUID]], kind: str, rate: float, until: float,
                       figures: Figures, placed: dict[str, str]) -> None:
    """Orders of one kind at `rate` per second until `until`; placed: order id -> kind."""
    if rate <= 0:
        return
    async with httpx.AsyncClient(timeout=30) as http:
        async def one(base: str, token: str, address_id: uuid.UUID) -> None:
            try:
                response = await http.post(f"{base}/v1/orders", headers={"Authorization": f"Bearer {token}"},
                                           json={"kind": kind, "address_id": str(address_id)})
                if response.status_code == 201:
                    placed[response.json()["id"]] = kind
                else:
                    figures.error(f"{kind} order: HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                figures.error(f"{kind} order: {type(exc).__name__}")

        tasks, start = [], time.monotonic()
        for i, (token, address_id) in enumerate(customers):
            due = start + i / rate
            if due >= until:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(bases[i % len(bases)], token, address_id)))
        await asyncio.gather(*tasks)


async def offer_orders(offer_ids: list[str]) -> dict[str, tuple[str, float]]:
    """offer id -> its order id and the start of the round that made it (unix s)."""
    from sqlmodel import col, select

    from kit.db import session_scope
    from matching.models import Offer

    async with session_scope() as session:
        rows = (await session.exec(select(Offer.id, Offer.order_id, Offer.created_at).where(
            col(Offer.id).in_([uuid.UUID(i) for i in offer_ids])))).all()
    return {str(offer_id): (str(order_id), created_at.timestamp()) for offer_id, order_id, created_at in rows}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"p50": round(percentile(values, 50), 1), "p99": round(percentile(values, 99), 1),
            "max": round(max(values), 1), "n": len(values)}


async def app_phase(args: argparse.Namespace, people: dict, completed: list[payouts.Completed], env: dict[str, str],
                    fd_limit: int, log_dir: Path, console: Console, result: dict) -> Figures:
    """The application under load; fills `result` and returns the raw figures."""
    figures = Figures()
    processes = [] if args.embedded_worker else start_periodic_workers(log_dir, env)
    workers: list[tuple[subprocess.Popen, str]] = []
    technicians: list[Technician] = []
    try:
        workers = start_workers(args.workers, fd_limit, log_dir, args.embedded_worker, env)
        processes += [p for p, _ in workers]
        for process in [workers[0][0]] if args.embedded_worker else processes[:2]:
            await wait_heartbeat(process, log_dir)
        bases = [base for _, base in workers]
        before = [_rss_kib(p.pid) for p, _ in workers]
        for i, (token, _, home) in enumerate(people["technicians"]):
            url = bases[i % len(bases)].replace("http://", "ws://") + "/v1/ws/technician"
            technicians.append(Technician(url, token, home, figures, args.interval_s))
        routine, emergency = people["customers"][:people["routine"]], people["customers"][people["routine"]:]
        with Progress(console=console, transient=True) as progress:
            result["connect_s"] = round(await connect_all(technicians, figures, progress, "connecting sockets"), 1)
            open_sockets = still_open(technicians)
            result["online_s"] = round(await all_online(open_sockets, progress), 1)
            after = [_rss_kib(p.pid) for p, _ in workers]
            result["open_sockets"] = len(open_sockets)
            result["rss_mib_before"] = [round(k / 1024, 1) for k in before]
            result["rss_mib_after_connect"] = [round(k / 1024, 1) for k in after]
            result["kib_per_socket"] = round((sum(after) - sum(before)) / max(1, len(open_sockets)), 1)

            # Positions first, for a warm-up; then orders, emergencies and payouts for the duration.
            warmup = 2 * args.interval_s
            until = time.monotonic() + warmup + args.duration_s
            streams = [asyncio.create_task(t.stream(until)) for t in open_sockets]
            run_task = progress.add_task("warming up: positions", total=warmup)
            while time.monotonic() < until - args.duration_s:
                await asyncio.sleep(0.5)
                progress.update(run_task, completed=warmup - (until - args.duration_s - time.monotonic()))
            progress.remove_task(run_task)
            window = [time.time(), 0.0]
            placed: dict[str, str] = {}
            background = [
                asyncio.create_task(place_orders(bases, routine, "repair", args.orders_per_s, until, figures, placed)),
                asyncio.create_task(place_orders(bases, emergency, EMERGENCY_KIND, args.emergencies_per_s, until,
                                                 figures, placed)),
                asyncio.create_task(payouts.finalize_reviews(completed, 0.8 * args.duration_s)),
                asyncio.create_task(watch_client_lag(figures, until)),
            ]
            run_task = progress.add_task("positions, orders, emergencies and payouts", total=args.duration_s)
            for t in open_sockets:
                t.counting = True
            window_start = time.monotonic()
            while time.monotonic() < until:
                await asyncio.sleep(1)
                progress.update(run_task, completed=args.duration_s - (until - time.monotonic()))
            for t in open_sockets:
                t.counting = False
            figures.ack_window_s = time.monotonic() - window_start
            await asyncio.gather(*streams, *background)
            await asyncio.sleep(2 * args.interval_s)  # the last offers and acks in flight
            window[1] = time.time()
            result["rss_mib_end"] = [round(_rss_kib(p.pid) / 1024, 1) for p, _ in workers]
            unanswered = sum(len(t.sent) for t in open_sockets)
            result["payouts"] = {**await payouts.figures((window[0], window[1])), "reviews_finalized": len(completed)}
            result["api_gc_pauses"] = [await gc_pauses(base) for base in bases]
    finally:
        await close_all(technicians)
        _stop(processes)

    order_of = await offer_orders(list(figures.offers))
    order_commits = await scratch.commit_stamps(os.environ["GASDISPATCH_DATABASE_URL"], "order")
    offer_commits = await scratch.commit_stamps(os.environ["GASDISPATCH_DATABASE_URL"], "offer")
    delivery = [(received - offer_commits[o]) * 1000 for o, received in figures.offers.items() if o in offer_commits]
    first_offer: dict[str, tuple[float, str]] = {}  # order id -> first offer on a socket (received, offer id)
    for offer_id, (order_id, _) in order_of.items():
        first_offer[order_id] = min(first_offer.get(order_id, (float("inf"), "")), (figures.offers[offer_id], offer_id))
    by_kind = {kind: [(first_offer[o][0] - order_commits[o]) * 1000 for o, k in placed.items()
                      if k == kind and o in first_offer and o in order_commits]
               for kind in ("repair", EMERGENCY_KIND)}
    emergencies = [o for o, k in placed.items() if k == EMERGENCY_KIND]
    # Where an emergency's time goes: to the start of its matching round (the order event's
    # delivery on the worker), the round to the offer's commit, and the push to the socket.
    legs: dict[str, list[float]] = {"order_commit_to_round_start": [], "round_start_to_offer_commit": [],
                                    "offer_commit_to_socket": []}
    for o in emergencies:
        if o in first_offer and o in order_commits and first_offer[o][1] in offer_commits:
            received, offer_id = first_offer[o]
            round_start, offer_commit = order_of[offer_id][1], offer_commits[offer_id]
            legs["order_commit_to_round_start"].append((round_start - order_commits[o]) * 1000)
            legs["round_start_to_offer_commit"].append((offer_commit - round_start) * 1000)
            legs["offer_commit_to_socket"].append((received - offer_commit) * 1000)
    result.update({
        "position_acks_per_s": round(figures.acks / figures.ack_window_s, 1) if figures.ack_window_s else 0,
        "position_sent_per_s_nominal": round(len(open_sockets) / args.interval_s, 1),
        "orders_placed": sum(1 for k in placed.values() if k == "repair"),
        "emergencies_placed": len(emergencies),
        "emergencies_without_offer": sum(1 for o in emergencies if o not in first_offer),
        "emergency_accepts": figures.accepts,
        "offers_received": len(figures.offers),
        "offers_per_s": round(len(figures.offers) / args.duration_s, 2),
        "emergency_offer_ms": spread(by_kind[EMERGENCY_KIND]),
        "emergency_legs_ms": {leg: spread(values) for leg, values in legs.items()},
        # In the order the emergencies were placed: a slow first round (a cold worker) shows here.
        "emergency_offer_ms_in_order": [round(v) for v in by_kind[EMERGENCY_KIND]],
        "emergency_legs_ms_in_order": [[round(leg) for leg in legs_of_one] for legs_of_one in zip(*legs.values())],
        "offer_delivery_ms": spread(delivery),
        "client_loop_lag_ms": spread(figures.client_lag),
        "order_to_offer_ms": spread(by_kind["repair"]),
        "unanswered_messages": unanswered,
        "errors": figures.errors,
    })
    return figures


async def baseline_phase(args: argparse.Namespace, homes: list[tuple[float, float]], rate: float, run: str,
                         log_dir: Path, console: Console) -> dict:
    """The same number of sockets on a bare websockets server, the same positions, and stamped
    frames PUBLISHed to them at `rate` per second."""
    from redis.asyncio import Redis

    from kit.config import get_settings

    redis_url = get_settings().redis_url
    prefix = f"bench-baseline:{run}:"
    figures = Figures()
    servers, ports = [], []
    for i in range(args.workers):
        port = _free_port()
        log = log_dir / f"baseline-{port}.log"
        process = subprocess.Popen([sys.executable, "-m", "bench.realtime_support.baseline", "--port", str(port),
                                    "--redis-url", redis_url, "--prefix", prefix],
                                   cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        servers.append(process)
        _wait_port(port, process, "the baseline server", log)
        ports.append(port)
    sockets = [Technician(f"ws://127.0.0.1:{ports[i % len(ports)]}/{prefix}{i}", "", home, figures, args.interval_s)
               for i, home in enumerate(homes)]
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        with Progress(console=console, transient=True) as progress:
            await connect_all(sockets, figures, progress, "baseline: connecting sockets")
            open_sockets = still_open(sockets)
            until = time.monotonic() + args.baseline_s
            streams = [asyncio.create_task(t.stream(until)) for t in open_sockets]
            task = progress.add_task("baseline: positions and PUBLISH", total=args.baseline_s)
            warmup = min(2 * args.interval_s, args.baseline_s / 4)
            await asyncio.sleep(warmup)
            published = 0
            started = time.monotonic()
            while time.monotonic() < until and open_sockets:
                target = random.randrange(len(sockets))
                await redis.publish(f"{prefix}{target}", json.dumps({"v": 1, "type": "probe", "sent": time.time()}))
                published += 1
                await asyncio.sleep(max(0.0, started + published / rate - time.monotonic()))
                progress.update(task, completed=args.baseline_s - (until - time.monotonic()))
            await asyncio.gather(*streams)
            await asyncio.sleep(1)
    finally:
        await close_all(sockets)
        await redis.aclose()
        _stop(servers)
    return {"open_sockets": len(open_sockets), "published": published, "per_s": round(rate, 2),
            "latency_ms": spread(figures.probes), "errors": figures.errors}


async def main(args: argparse.Namespace, console: Console) -> dict:
    run = uuid.uuid4().hex[:8]
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"gasdispatch-bench-realtime-{run}"
    log_dir.mkdir(parents=True)
    configured = os.environ.get("GASDISPATCH_DATABASE_URL")
    if not configured:
        raise SystemExit("GASDISPATCH_DATABASE_URL names the PostgreSQL server the scratch database goes on")
    city = f"bench-{run}"
    database = f"{scratch.database_name(configured)}_rt_{run}"
    fd_limit = _raise_fd_limit(args.sockets * 2 + 1024)
    rng = random.Random(args.seed)
    result: dict = {"machine": machine(), "load_average_start": [round(x, 2) for x in os.getloadavg()],
                    "sockets": args.sockets, "workers": args.workers, "duration_s": args.duration_s,
                    "interval_s": args.interval_s, "orders_per_s": args.orders_per_s,
                    "emergencies_per_s": args.emergencies_per_s, "provider_delay_s": args.provider_delay_s}
    console.print(f"[bold]realtime bench[/] on {result['machine']}; load {result['load_average_start']}; "
                  f"fd limit {fd_limit}; logs in {log_dir}")
    console.print(f"scratch database {database}, city {city}: migrating")
    url = await scratch.create(configured, database, dict(os.environ, GASDISPATCH_CITY=city),
                               log_dir / "migrate.log")
    # This process and its children work in the scratch database and the bench's city; this
    # process pays nobody, so it reaches the provider directly, the others through the proxy.
    os.environ.update(GASDISPATCH_DATABASE_URL=url, GASDISPATCH_CITY=city, GASDISPATCH_PAYMENT_GATEWAY="stripe",
                      GASDISPATCH_STRIPE_API_BASE=args.stripe_base)
    from kit.config import get_settings
    from kit.db import get_engine
    from kit.logs import configure_logging

    get_settings.cache_clear()
    configure_logging(logging.WARNING)  # the set-up's own event handlers log every step at info
    provider, proxy_url = start_slow_provider(args.stripe_base, args.provider_delay_s, log_dir)
    env = {**os.environ, "GASDISPATCH_STRIPE_API_BASE": proxy_url, "GASDISPATCH_METRICS_TOKEN": METRICS_TOKEN}
    if args.payout_concurrency:
        env["GASDISPATCH_PAYOUT_CONCURRENCY"] = str(args.payout_concurrency)
    people: dict = {}
    completed: list[payouts.Completed] = []
    try:
        routine = int(args.orders_per_s * args.duration_s) + 1
        emergencies = int(args.emergencies_per_s * args.duration_s) + 1
        people = await create_people(args.sockets, routine + emergencies, run, rng)
        people["routine"] = routine
        console.print(f"{args.payouts} orders completed and captured for the payouts")
        completed = await payouts.prepare(args.payouts, CENTER, SPREAD_DEG, run, people["password_hash"], rng)
        await get_engine().dispose()  # the children start; this process's pool starts afresh
        await app_phase(args, people, completed, env, fd_limit, log_dir, console, result)
        if args.baseline_s > 0:
            result["baseline"] = await baseline_phase(args, [home for _, _, home in people["technicians"]],
                                                      max(1.0, result["offers_per_s"]), run, log_dir, console)
            app, raw = result["emergency_offer_ms"], result["baseline"]["latency_ms"]
            result["ratio_to_baseline"] = ({q: round(app[q] / raw[q], 1) for q in ("p50", "p99")}
                                           if app and raw and raw["p50"] > 0 and raw["p99"] > 0 else None)
    finally:
        _stop([provider])
        result["provider_calls_slowed"] = json.loads(
            (log_dir / "slow-provider.log").read_text().strip().splitlines()[-1] or "{}").get("slowed")
        await get_engine().dispose()
        await scratch.forget_cities([city], [str(t) for _, t, _ in people.get("technicians", [])]
                                    + [str(c.technician_id) for c in completed])
        if not args.keep_database:
            await scratch.drop(configured, database)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    emergency = result.get("emergency_offer_ms")
    result["target"] = ("2,000 sockets; emergency offer on the socket p99 < 250 ms from the order's commit, "
                        "with payouts against a 2 s provider")
    result["target_met"] = bool(emergency) and result["open_sockets"] >= 2000 and emergency["p99"] < 250 \
        and args.provider_delay_s >= 2 and result["payouts"]["transfers_in_flight_during_window"] > 0
    return result


def _ms(figure: dict | None) -> str:
    if not figure:
        return "none"
    return f"p50 {figure['p50']} ms, p99 {figure['p99']} ms, max {figure['max']} ms (n={figure['n']})"


def report(result: dict, console: Console) -> None:
    table = Table(title=f"realtime: {result['open_sockets']} sockets on {result['workers']} workers, "
                        f"{result['duration_s']:g} s", show_header=False)
    pay, base = result["payouts"], result.get("baseline")
    rows = [
        ("machine", f"{result['machine']}; load average {result['load_average_start']} -> "
                    f"{result['load_average_end']}"),
        ("sockets connected in", f"{result['connect_s']} s, all online {result['online_s']} s later"),
        ("position updates acknowledged", f"{result['position_acks_per_s']}/s "
                                          f"(sent nominally {result['position_sent_per_s_nominal']}/s)"),
        ("emergency: order committed -> first offer on socket", _ms(result["emergency_offer_ms"])
         + f"; {result['emergencies_placed']} placed, {result['emergencies_without_offer']} without an offer, "
           f"accepts {result['emergency_accepts']}"),
        *((f"  {leg.replace('_', ' ')}", _ms(figure)) for leg, figure in result["emergency_legs_ms"].items()),
        ("offer delivery (offer committed -> on socket)", _ms(result["offer_delivery_ms"])),
        ("the bench client's own event loop, late by", _ms(result["client_loop_lag_ms"])),
        ("API processes' garbage-collector pauses", json.dumps(result["api_gc_pauses"])),
        ("routine: order committed -> first offer on socket", _ms(result["order_to_offer_ms"])
         + f" ({result['orders_placed']} orders, batch window included)"),
        ("payouts during the run", f"{pay['reviews_finalized']} reviews finalized, {pay['transferred_in_window']} "
                                   f"transferred in the window, {pay['pending_transfer_at_end']} still pending; "
                                   f"{result['provider_calls_slowed']} provider calls answered after "
                                   f"{result['provider_delay_s']:g} s"),
    ]
    if base:
        rows += [("baseline: PUBLISH -> bare websocket", _ms(base["latency_ms"])
                  + f" ({base['open_sockets']} sockets, {base['per_s']}/s)"),
                 ("ratio emergency / baseline", f"p50 x{result['ratio_to_baseline']['p50']}, "
                                                f"p99 x{result['ratio_to_baseline']['p99']}"
                  if result.get("ratio_to_baseline") else "n/a")]
    rows += [
        ("memory per socket", f"{result['kib_per_socket']} KiB (worker RSS MiB before {result['rss_mib_before']}, "
                              f"after connect {result['rss_mib_after_connect']}, end {result['rss_mib_end']})"),
        ("unanswered messages at the end", str(result["unanswered_messages"])),
        ("errors", json.dumps(result["errors"], ensure_ascii=False) if result["errors"] else "none"),
        ("target", f"{result['target']}: {'met' if result['target_met'] else 'NOT met'}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--interval-s", type=float, default=2.0, help="seconds between a socket's positions")
    parser.add_argument("--orders-per-s", type=float, default=2.0, help="routine orders (batch matched)")
    parser.add_argument("--emergencies-per-s", type=float, default=0.5, help="gas-leak orders (offered at once)")
    parser.add_argument("--payouts", type=int, default=100,
                        help="completed orders whose reviews are finalized during the run, each a payout")
    parser.add_argument("--provider-delay-s", type=float, default=2.0, help="every provider call answers this late")
    parser.add_argument("--payout-concurrency", type=int, default=0,
                        help="provider calls for payouts at once (default: the setting's)")
    parser.add_argument("--stripe-base", default=os.environ.get("GASDISPATCH_STRIPE_API_BASE"),
                        help="the Stripe-compatible server (default: GASDISPATCH_STRIPE_API_BASE)")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="length of the bare-websocket baseline; 0: none")
    parser.add_argument("--keep-database", action="store_true", help="leave the scratch database for inspection")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--embedded-worker", action="store_true",
                        help="run the periodic worker inside the first API process (the demo's set-up) "
                             "instead of as its own `python -m app worker` process")
    arguments = parser.parse_args()
    if not arguments.stripe_base:
        parser.error("--stripe-base (or GASDISPATCH_STRIPE_API_BASE) must name the Stripe-compatible server")
    out = Console(stderr=arguments.json)
    figures = asyncio.run(main(arguments, out))
    if arguments.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        report(figures, out)
