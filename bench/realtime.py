"""Realtime at load: N technician sockets on real uvicorn workers, positions in, offers out.

    GASDISPATCH_DATABASE_URL=... GASDISPATCH_REDIS_URL=... GASDISPATCH_JWT_SECRET=... \\
        .venv/bin/python bench/realtime.py [--sockets 2000] [--workers 2] [--duration-s 60] [--json]

Needs a migrated PostgreSQL/PostGIS and a Redis, taken from GASDISPATCH_DATABASE_URL and
GASDISPATCH_REDIS_URL (run `gasdispatch migrate` first). The bench inserts its own
technicians and customers (committed, emails under @bench.local) and deletes them, with the
orders, offers and other rows that reference them, at the end.

It starts `--workers` uvicorn processes on free loopback ports and one `gasdispatch worker`
process (outbox relay and matching; `--embedded-worker` runs it inside the first API process
instead), connects N technician sockets spread over them, goes
online, and sends a position every `--interval-s` (jittered start) for `--duration-s`.
Meanwhile customers place orders over HTTP at `--orders-per-s`, each next to a random
technician; nobody accepts, so offers also lapse and move on, as they would.

Offer delivery latency is measured from the offer row's `created_at` (set by the matcher
when it builds the offer, before the insert commits) to the moment the `offer` frame is read
off the socket here. Both are the same machine's wall clock, so the figure includes the
commit, the outbox relay, the handler, Redis pub/sub and the worker's socket write; it does
not include the batch window an order waits before it is matched, which is reported
separately as order created -> offer received.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import websockets
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the project, not this folder's namesakes

from bench.matching_assign import machine  # noqa: E402

CENTER = (120.155, 30.274)
SPREAD_DEG = 0.05  # technicians over ~10 x 10 km
CONNECT_CONCURRENCY = 100


@dataclass
class Figures:
    acks: int = 0
    ack_window_s: float = 0.0
    offers: dict[str, float] = field(default_factory=dict)  # offer_id -> received (unix s)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = min(hard, max(needed, soft)) if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def start_periodic_worker(log_dir: Path) -> subprocess.Popen:
    """`gasdispatch worker` in its own process, as production runs it: its loop is not
    shared with thousands of sockets."""
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT,
                            env={**os.environ, "GASDISPATCH_DB_POOL_SIZE": "5"},
                            stdout=open(log_dir / "periodic-worker.log", "w"), stderr=subprocess.STDOUT)


def start_workers(count: int, fd_limit: int, log_dir: Path, embedded: bool) -> list[tuple[subprocess.Popen, str]]:
    started = []
    for i in range(count):
        port = _free_port()
        env = {**os.environ, "GASDISPATCH_EMBEDDED_WORKER": "true" if embedded and i == 0 else "false",
               # Enough pooled connections for the socket load; the default suits a small demo.
               "GASDISPATCH_DB_POOL_SIZE": os.environ.get("GASDISPATCH_DB_POOL_SIZE", "20")}
        log = open(log_dir / f"worker-{port}.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({fd_limit}, "
             f"resource.getrlimit(resource.RLIMIT_NOFILE)[1])); import uvicorn; uvicorn.main()",
             "app.asgi:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", "--ws-ping-interval", "60"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
    """Bulk insert, committed: technicians certified for repairs, customers each with one address."""
    from kit.db import session_scope
    from kit.geo import point
    from dispatch.models import Account, Address, Certification, Customer, Technician
    from dispatch.security import hash_password, issue_token

    now = datetime.now(timezone.utc)
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
            certs.append(Certification(technician_id=tech.id, kind="repair", number=f"B-{run}-{i}", issuer="bench",
                                       valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
                                       status="verified", decided_at=now))
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
        "account_ids": [a.id for a in accounts],
    }


async def purge(account_ids: list[uuid.UUID], technician_ids: list[str]) -> None:
    """Delete the bench's accounts and, child tables first, every row that references them."""
    from sqlalchemy import text

    from kit.db import session_scope
    from kit.redis import get_redis
    from matching.service import geo_index

    async with session_scope() as session:
        conn = await session.connection()
        fks = (await conn.execute(text("""
            SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text
            FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1 AND r.attname = 'id'"""))).all()
        has_id = {t for (t,) in (await conn.execute(text(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'id' AND table_schema = 'public'"))).all()}
        children: dict[str, list[tuple[str, str]]] = {}
        for child, column, parent in fks:
            children.setdefault(parent, []).append((child, column))

        async def delete(table: str, ids: list, depth: int = 0) -> None:
            if not ids or depth > 8:
                return
            for child, column in children.get(table, []):
                if child == table:
                    await conn.execute(text(f'UPDATE {child} SET "{column}" = NULL WHERE "{column}" = ANY(:ids)'),
                                          {"ids": ids})
                    continue
                if child in has_id:
                    rows = (await conn.execute(text(f'SELECT id FROM {child} WHERE "{column}" = ANY(:ids)'),
                                                  {"ids": ids})).scalars().all()
                    await delete(child, list(rows), depth + 1)
                await conn.execute(text(f'DELETE FROM {child} WHERE "{column}" = ANY(:ids)'), {"ids": ids})
            await conn.execute(text(f"DELETE FROM {table} WHERE id = ANY(:ids)"), {"ids": ids})

        await conn.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        await delete("dispatch_account", account_ids)
    index = geo_index(get_redis())
    from kit.config import get_settings

    for technician_id in technician_ids:
        await index.remove(technician_id, get_settings().city)


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
                    self.figures.offers.setdefault(message["offer"]["offer_id"], received)
                elif kind in ("ack", "error"):
                    sent = self.sent.pop(message.get("id") or "", None)
                    if kind == "error":
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
                                 "ts": datetime.now(timezone.utc).isoformat()})
            except websockets.ConnectionClosed:
                return
            await asyncio.sleep(self.interval_s)


async def place_orders(bases: list[str], customers: list[tuple[str, uuid.UUID]], rate: float, until: float,
                       figures: Figures, placed: dict[str, float]) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        async def one(base: str, token: str, address_id: uuid.UUID) -> None:
            try:
                response = await http.post(f"{base}/v1/orders", headers={"Authorization": f"Bearer {token}"},
                                           json={"kind": "repair", "address_id": str(address_id)})
                if response.status_code == 201:
                    placed[response.json()["id"]] = time.time()
                else:
                    figures.error(f"order: HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                figures.error(f"order: {type(exc).__name__}")

        tasks, start = [], time.monotonic()
        for i, (token, address_id) in enumerate(customers):
            due = start + i / rate
            if due >= until:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(bases[i % len(bases)], token, address_id)))
        await asyncio.gather(*tasks)


async def offer_rows(offer_ids: list[str]) -> dict[str, tuple[float, uuid.UUID]]:
    from sqlmodel import col, select

    from kit.db import session_scope
    from matching.models import Offer

    async with session_scope() as session:
        rows = (await session.exec(select(Offer).where(col(Offer.id).in_([uuid.UUID(i) for i in offer_ids])))).all()
    return {str(o.id): (o.created_at.timestamp(), o.order_id) for o in rows}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def main(args: argparse.Namespace, console: Console) -> dict:
    from kit.db import get_engine

    fd_limit = _raise_fd_limit(args.sockets * 2 + 1024)
    rng = random.Random(args.seed)
    run = uuid.uuid4().hex[:8]
    order_count = int(args.orders_per_s * args.duration_s) + 1
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"gasdispatch-bench-realtime-{run}"
    log_dir.mkdir(parents=True)
    figures = Figures()
    result: dict = {"machine": machine(), "sockets": args.sockets, "workers": args.workers,
                    "duration_s": args.duration_s, "interval_s": args.interval_s, "orders_per_s": args.orders_per_s}
    console.print(f"[bold]realtime bench[/] on {result['machine']}; fd limit {fd_limit}; logs in {log_dir}")
    people = await create_people(args.sockets, order_count, run, rng)
    workers = start_workers(args.workers, fd_limit, log_dir, embedded=args.embedded_worker)
    if not args.embedded_worker:
        workers.append((start_periodic_worker(log_dir), ""))
    technicians = []
    try:
        bases = [base for _, base in workers if base]
        before = [_rss_kib(p.pid) for p, base in workers if base]
        for i, (token, _, home) in enumerate(people["technicians"]):
            url = bases[i % len(bases)].replace("http://", "ws://") + "/v1/ws/technician"
            technicians.append(Technician(url, token, home, figures, args.interval_s))
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("connecting sockets", total=len(technicians))

            async def connect(tech: Technician) -> None:
                async with gate:
                    try:
                        await tech.connect()
                    except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError) as exc:
                        figures.error(f"connect: {type(exc).__name__}")
                progress.advance(task)

            connect_started = time.monotonic()
            await asyncio.gather(*(connect(t) for t in technicians))
            result["connect_s"] = round(time.monotonic() - connect_started, 1)
            await asyncio.sleep(2)
            # Opened and still open: a worker may accept the handshake and then fail the socket.
            open_sockets = [t for t in technicians if t.ws is not None and t.ws.state is websockets.State.OPEN]
            after = [_rss_kib(p.pid) for p, base in workers if base]
            result["open_sockets"] = len(open_sockets)
            result["rss_mib_before"] = [round(k / 1024, 1) for k in before]
            result["rss_mib_after_connect"] = [round(k / 1024, 1) for k in after]
            result["kib_per_socket"] = round((sum(after) - sum(before)) / max(1, len(open_sockets)), 1)

            warmup = min(2 * args.interval_s, args.duration_s / 4)
            until = time.monotonic() + args.duration_s
            placed: dict[str, float] = {}
            streams = [asyncio.create_task(t.stream(until)) for t in open_sockets]
            orders = asyncio.create_task(place_orders(bases, people["customers"], args.orders_per_s, until, figures, placed))
            run_task = progress.add_task("streaming positions", total=args.duration_s)
            await asyncio.sleep(warmup)
            for t in open_sockets:
                t.counting = True
            window_start = time.monotonic()
            while time.monotonic() < until:
                await asyncio.sleep(1)
                progress.update(run_task, completed=args.duration_s - (until - time.monotonic()))
            for t in open_sockets:
                t.counting = False
            figures.ack_window_s = time.monotonic() - window_start
            await asyncio.gather(*streams, orders)
            await asyncio.sleep(2 * args.interval_s)  # the last offers and acks in flight
            result["rss_mib_end"] = [round(_rss_kib(p.pid) / 1024, 1) for p, base in workers if base]
            unanswered = sum(len(t.sent) for t in open_sockets)

        rows = await offer_rows(list(figures.offers))
        delivery = [(figures.offers[i] - created) * 1000 for i, (created, _) in rows.items()]
        first_offer: dict[str, float] = {}
        for offer_id, (_, order_id) in rows.items():
            first_offer[str(order_id)] = min(first_offer.get(str(order_id), float("inf")), figures.offers[offer_id])
        order_to_offer = [(first_offer[o] - placed[o]) * 1000 for o in first_offer if o in placed]
        result.update({
            "position_acks_per_s": round(figures.acks / figures.ack_window_s, 1) if figures.ack_window_s else 0,
            "position_sent_per_s_nominal": round(len(open_sockets) / args.interval_s, 1),
            "orders_placed": len(placed), "offers_received": len(delivery),
            "offer_delivery_ms": {"p50": round(percentile(delivery, 50), 1), "p99": round(percentile(delivery, 99), 1),
                                  "max": round(max(delivery), 1)} if delivery else None,
            "order_to_offer_ms": {"p50": round(percentile(order_to_offer, 50), 1),
                                  "p99": round(percentile(order_to_offer, 99), 1)} if order_to_offer else None,
            "unanswered_messages": unanswered,
            "errors": figures.errors,
            "target": "2,000 sockets, offer delivery p99 < 100 ms",
        })
        result["target_met"] = bool(delivery) and result["open_sockets"] >= 2000 and result["offer_delivery_ms"]["p99"] < 100
    finally:
        await asyncio.gather(*(t.ws.close() for t in technicians if t.ws is not None), return_exceptions=True)
        for process, _ in workers:
            process.terminate()
        for process, _ in workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        await purge(people["account_ids"], [str(t) for _, t, _ in people["technicians"]])
        await get_engine().dispose()
    return result


def report(result: dict, console: Console) -> None:
    table = Table(title=f"realtime: {result['open_sockets']} sockets on {result['workers']} workers, "
                        f"{result['duration_s']:g} s", show_header=False)
    delivery, o2o = result["offer_delivery_ms"] or {}, result["order_to_offer_ms"] or {}
    for name, value in [
        ("machine", result["machine"]),
        ("sockets connected in", f"{result['connect_s']} s"),
        ("position updates acknowledged", f"{result['position_acks_per_s']}/s "
                                          f"(sent nominally {result['position_sent_per_s_nominal']}/s)"),
        ("offer delivery (created -> on socket)", f"p50 {delivery.get('p50')} ms, p99 {delivery.get('p99')} ms, "
                                                   f"max {delivery.get('max')} ms over {result['offers_received']} offers"),
        ("order placed -> first offer on socket", f"p50 {o2o.get('p50')} ms, p99 {o2o.get('p99')} ms "
                                                   f"({result['orders_placed']} orders)"),
        ("memory per socket", f"{result['kib_per_socket']} KiB (worker RSS MiB before {result['rss_mib_before']}, "
                              f"after connect {result['rss_mib_after_connect']}, end {result['rss_mib_end']})"),
        ("unanswered messages at the end", str(result["unanswered_messages"])),
        ("errors", json.dumps(result["errors"], ensure_ascii=False) if result["errors"] else "none"),
        ("target", f"{result['target']}: {'met' if result['target_met'] else 'NOT met'}"),
    ]:
        table.add_row(name, value)
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--interval-s", type=float, default=2.0, help="seconds between a socket's positions")
    parser.add_argument("--orders-per-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--embedded-worker", action="store_true",
                        help="run the periodic worker inside the first API process (the demo's set-up) "
                             "instead of as its own `gasdispatch worker` process")
    arguments = parser.parse_args()
    out = Console(stderr=arguments.json)
    figures = asyncio.run(main(arguments, out))
    if arguments.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        report(figures, out)
