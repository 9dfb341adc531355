"""Fault suite: the marketplace on its own stack, driven by simulated people while faults hit it.

    python bench/faults.py --runs 3 --seed 7 [--redis single|cluster] [--minutes M] [--quick] [--json]

Starts a private PostgreSQL+PostGIS, Redis (one node, or a 3-node Redis Cluster), the
Stripe-compatible server behind a fault proxy, the API on two uvicorn processes and N workers,
all on free loopback ports under /var/tmp/gd-faults-*. Per run (seeded), technicians, customers
and gas detectors in every city of the database drive orders end to end, while faults are
injected at random points: SIGKILL of a worker or an API process (restarted), Redis restarted
empty, PostgreSQL stopped, a provider that declines, times out or answers in 2 s, a process
whose clock is 60 s off (libfaketime). Then the system settles and the figures are computed
from the database, the ledger and the provider's records. --json prints one JSON object.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from rich.console import Console
from rich.table import Table

from bench.faults_support.stack import METERS_SECRET, Stack

FAULT_KINDS = ("kill_worker", "kill_api", "redis_restart_empty", "postgres_down", "provider_decline",
               "provider_timeout", "provider_slow", "clock_skew")


@dataclass(frozen=True)
class Profile:
    """How long and how hard: --quick is the CI variant (under 3 minutes in all)."""

    drive_s: float
    settle_s: float
    stall_s: float
    door_wait_s: float  # below stall_s: a visit nobody opens to ends (no access) before it counts as stuck
    postgres_down_s: float
    provider_fault_s: float
    skew_window_s: float
    technicians_per_city: int
    customers_per_city: int
    households_per_city: int
    order_every_s: float
    alarm_every_s: float
    faults_per_run: int | None  # None: one of each kind


def profile(quick: bool, minutes: float | None) -> Profile:
    if quick:
        return Profile(drive_s=(minutes or 0.67) * 60, settle_s=45, stall_s=40, door_wait_s=30, postgres_down_s=6,
                       provider_fault_s=6, skew_window_s=12, technicians_per_city=6, customers_per_city=6,
                       households_per_city=2, order_every_s=8, alarm_every_s=12, faults_per_run=None)
    drive_s = (minutes or 3.0) * 60
    return Profile(drive_s=drive_s, settle_s=150, stall_s=90, door_wait_s=60, postgres_down_s=30, provider_fault_s=20,
                   skew_window_s=45, technicians_per_city=12, customers_per_city=12, households_per_city=4,
                   order_every_s=10, alarm_every_s=20, faults_per_run=max(len(FAULT_KINDS), int(drive_s / 20)))


class Harness:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.p = profile(args.quick, args.minutes)
        self.stack = Stack(redis_mode=args.redis, workers=args.workers, keep=args.keep)
        self.env = self.stack.env(args.quick)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("GASDISPATCH_")})
        self.faults: Counter[str] = Counter()
        self.fault_log: list[str] = []
        self.locks = {name: asyncio.Lock() for name in ("process", "redis", "postgres", "provider")}
        self.proxy = None
        from bench.faults_support.actors import Observed

        self.observed = Observed()
        self.details: dict = {}
        self.journals: dict[str, dict] = {}
        self.status = console.status("starting the stack")
        self.started = datetime.now(timezone.utc)
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {text}"
        self.fault_log.append(line)
        if not self.args.json:
            self.console.print(f"[dim]{line}[/]")
            self.status.update(f"{text}  [dim](faults so far: {sum(self.faults.values())})[/]")

    # -- set-up ------------------------------------------------------------------------------

    async def up(self) -> None:
        from bench.faults_support.provider import ProviderProxy

        s = self.stack
        await asyncio.to_thread(s.start_postgres_fresh)
        await asyncio.to_thread(s.start_redis)
        await asyncio.to_thread(s.start_stripe)
        self.proxy = ProviderProxy(s.stripe_base, s.proxy_port, timeout_hang_s=4 if self.args.quick else 10)
        await self.proxy.start()
        self.say(f"stack in {s.base}: postgres {s.pg_port}, redis {s.redis_ports} ({s.redis_mode}), "
                 f"stripe {s.stripe_port} via proxy {s.proxy_port}")
        how = await asyncio.to_thread(s.migrate_and_seed, self.env, not self.args.no_seed_cache)
        self.say(f"database: {how}")
        await asyncio.to_thread(s.start_app, self.env)
        self.say(f"api {s.api_urls()}, {len(s.worker_procs)} workers")
        await self._register_webhook()

    async def _register_webhook(self) -> None:
        import httpx

        from bench.faults_support.stack import WEBHOOK_SECRET

        async with httpx.AsyncClient(base_url=self.stack.stripe_base, timeout=10) as http:
            await http.post("/_config/webhooks/faults", data={
                "url": f"{self.stack.api_urls()[0]}/v1/webhooks/stripe", "secret": WEBHOOK_SECRET})

    async def down(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        await asyncio.to_thread(self.stack.stop)

    # -- who is in the database --------------------------------------------------------------

    async def people(self) -> dict[str, dict]:
        """city -> technicians (email, lon, lat) and customers (email, customer id, address id)."""
        conn = await asyncpg.connect(host="127.0.0.1", port=self.stack.pg_port, user="postgres", database="gasdispatch")
        try:
            columns = {r["column_name"] for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'dispatch_service_station'")}
            city = "s.city_id" if "city_id" in columns else "s.city"
            techs = await conn.fetch(f"""
                SELECT {city} AS city, a.email, ST_X(s.location::geometry) AS lon, ST_Y(s.location::geometry) AS lat
                FROM dispatch_technician t JOIN dispatch_account a ON a.id = t.account_id
                JOIN dispatch_service_station s ON s.id = t.station_id
                WHERE t.onboarding = 'active' ORDER BY a.email""")
            customers = await conn.fetch("""
                SELECT a.email, c.id::text AS customer_id,
                       (SELECT ad.id::text FROM dispatch_address ad WHERE ad.customer_id = c.id
                        ORDER BY ad.created_at LIMIT 1) AS address_id
                FROM dispatch_customer c JOIN dispatch_account a ON a.id = c.account_id ORDER BY a.email""")
        finally:
            await conn.close()
        cities: dict[str, dict] = {}
        for t in techs:
            cities.setdefault(t["city"], {"technicians": [], "customers": []})["technicians"].append(
                (t["email"], t["lon"], t["lat"]))
        for c in customers:
            domain = c["email"].split("@", 1)[1].split(".", 1)[0]
            if c["address_id"] and domain in cities:
                cities[domain]["customers"].append((c["email"], c["customer_id"], c["address_id"]))
        return cities

    async def _emails(self, query: str) -> set[str]:
        conn = await asyncpg.connect(host="127.0.0.1", port=self.stack.pg_port, user="postgres", database="gasdispatch")
        try:
            return {r["email"] for r in await conn.fetch(query)}
        finally:
            await conn.close()

    async def customers_with_open_orders(self) -> set[str]:
        return await self._emails("""
            SELECT DISTINCT a.email FROM dispatch_order o JOIN dispatch_customer c ON c.id = o.customer_id
            JOIN dispatch_account a ON a.id = c.account_id
            WHERE o.status NOT IN ('settled', 'cancelled', 'unfulfilled', 'reviewed', 'completed')""")

    async def technicians_with_open_jobs(self) -> set[str]:
        return await self._emails("""
            SELECT DISTINCT a.email FROM dispatch_order o JOIN dispatch_technician t ON t.id = o.technician_id
            JOIN dispatch_account a ON a.id = t.account_id
            WHERE o.status IN ('accepted', 'en_route', 'arrived', 'in_service')""")

    # -- faults ------------------------------------------------------------------------------

    def schedule(self, rng: random.Random) -> list[tuple[float, str]]:
        if self.p.faults_per_run is None:
            kinds = list(FAULT_KINDS)
            rng.shuffle(kinds)
        else:
            kinds = [rng.choice(FAULT_KINDS) for _ in range(self.p.faults_per_run)]
        return sorted((rng.uniform(0.05, 0.7) * self.p.drive_s, kind) for kind in kinds)

    async def inject(self, at_s: float, kind: str, rng: random.Random, run_start: float) -> None:
        await asyncio.sleep(max(0.0, run_start + at_s - time.monotonic()))
        s = self.stack
        if kind in ("kill_worker", "kill_api"):
            async with self.locks["process"]:
                proc = rng.choice(s.worker_procs if kind == "kill_worker" else s.api)
                self.say(f"[fault] SIGKILL {proc.name}")
                self.faults[kind] += 1
                await asyncio.to_thread(proc.kill, signal.SIGKILL)
                await asyncio.sleep(rng.uniform(1, 3))
                await asyncio.to_thread(proc.start, proc.skewed_s)
                if proc in s.api:
                    await asyncio.to_thread(s.wait_api, proc, 60)
                self.say(f"{proc.name} restarted")
        elif kind == "redis_restart_empty":
            async with self.locks["redis"]:
                self.say(f"[fault] redis ({s.redis_mode}) restarted empty")
                self.faults[kind] += 1
                await asyncio.to_thread(s.stop_redis)
                await asyncio.sleep(1)
                await asyncio.to_thread(s.start_redis)
        elif kind == "postgres_down":
            async with self.locks["postgres"]:
                self.say(f"[fault] postgres stopped for {self.p.postgres_down_s:.0f} s")
                self.faults[kind] += 1
                await asyncio.to_thread(s.stop_postgres, "immediate")
                await asyncio.sleep(self.p.postgres_down_s)
                await asyncio.to_thread(s.start_postgres)
                self.say("postgres back")
        elif kind.startswith("provider_"):
            async with self.locks["provider"]:
                mode = kind.removeprefix("provider_")
                self.say(f"[fault] provider {mode} for {self.p.provider_fault_s:.0f} s")
                self.faults[kind] += 1
                assert self.proxy is not None
                self.proxy.mode = mode
                await asyncio.sleep(self.p.provider_fault_s)
                self.proxy.mode = "normal"
        elif kind == "clock_skew":
            async with self.locks["process"]:
                unskewed = [p for p in (*s.worker_procs, *s.api) if not p.skewed_s]
                if not unskewed:
                    return
                proc = rng.choice(unskewed)
                skew = rng.choice([-60, 60])
                self.say(f"[fault] {proc.name} clock {skew:+d} s for {self.p.skew_window_s:.0f} s")
                self.faults[kind] += 1
                await asyncio.to_thread(proc.restart, skew, signal.SIGTERM)
                if proc in s.api:
                    await asyncio.to_thread(s.wait_api, proc, 60)
            await asyncio.sleep(self.p.skew_window_s)
            async with self.locks["process"]:
                await asyncio.to_thread(proc.restart, 0, signal.SIGTERM)
                if proc in s.api:
                    await asyncio.to_thread(s.wait_api, proc, 60)
                self.say(f"{proc.name} clock restored")

    async def supervise(self, stop: asyncio.Event) -> None:
        """What systemd's Restart=on-failure does in production: a process that exited (a worker
        that started while PostgreSQL was down fails fast) is started again after a pause."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 3)
            async with self.locks["process"]:
                for proc in [*self.stack.api, *self.stack.worker_procs]:
                    if not proc.alive() and not stop.is_set():
                        code = proc.popen.returncode if proc.popen else None
                        self.say(f"{proc.name} exited ({code}); restarted by the supervisor")
                        await asyncio.to_thread(proc.start, proc.skewed_s)

    # -- one run -----------------------------------------------------------------------------

    async def run(self, index: int, cities: dict[str, dict]) -> None:
        from bench.faults_support.actors import (
            Customer,
            Detectors,
            Doorstep,
            FaultTolerantTechnician,
            stop_technician,
            technician_options,
        )

        rng = random.Random(f"{self.args.seed}:{index}")
        urls = self.stack.api_urls()
        ordering, stop = asyncio.Event(), asyncio.Event()
        technicians: list[tuple[FaultTolerantTechnician, asyncio.Task]] = []
        customer_tasks: list[asyncio.Task] = []
        detectors: list[Detectors] = []
        owners = await self.customers_with_open_orders()
        holders = await self.technicians_with_open_jobs()
        for city, people in sorted(cities.items()):
            doorstep = Doorstep()
            # Whoever still holds a job from an earlier run is back at work to finish it.
            busy = [t for t in people["technicians"] if t[0] in holders]
            free = [t for t in people["technicians"] if t[0] not in holders]
            crew = busy + rng.sample(free, max(0, min(len(free), self.p.technicians_per_city - len(busy))))
            for i, (email, lon, lat) in enumerate(crew):
                options = technician_options(urls[i % 2], email, lon + rng.uniform(-0.01, 0.01), lat + rng.uniform(-0.01, 0.01),
                                             door_wait_s=self.p.door_wait_s)
                client = FaultTolerantTechnician(options, doorstep, self.observed, email)
                technicians.append((client, asyncio.create_task(client.run())))
            # Whoever still has an order open from an earlier run is home again to open the door.
            waiting = [c for c in people["customers"] if c[0] in owners]
            others = [c for c in people["customers"] if c[0] not in owners]
            chosen = waiting + rng.sample(others, max(0, min(len(others), self.p.customers_per_city
                                                              + self.p.households_per_city - len(waiting))))
            customer_ids = {email: customer_id for email, customer_id, _ in chosen}
            robots = [Customer(urls[i % 2], email, address_id, doorstep, self.observed, random.Random(rng.random()),
                               self.p.order_every_s, cancel_share=0.1)
                      for i, (email, _, address_id) in enumerate(chosen)]
            ordering_robots, households = robots[:self.p.customers_per_city], robots[self.p.customers_per_city:]
            kinds = ["repair", "repair", "inspection"]
            for robot in ordering_robots:
                customer_tasks.append(asyncio.create_task(robot.run(ordering, stop, kinds)))
            for robot in households:
                customer_tasks.append(asyncio.create_task(robot.run(asyncio.Event(), stop, kinds)))
            city_detectors = Detectors(urls[0], city, METERS_SECRET, self.observed, random.Random(rng.random()))
            await city_detectors.register(households, customer_ids)
            detectors.append(city_detectors)
        self.say(f"run {index + 1}: {len(technicians)} technicians, {len(customer_tasks)} customers, "
                 f"{sum(len(d.devices) for d in detectors)} detectors in {len(cities)} cities")

        run_start = time.monotonic()
        supervisor_stop = asyncio.Event()
        supervisor = asyncio.create_task(self.supervise(supervisor_stop))
        ordering.set()
        injections = [asyncio.create_task(self.inject(at, kind, rng, run_start)) for at, kind in self.schedule(rng)]
        while time.monotonic() - run_start < self.p.drive_s:
            await asyncio.sleep(self.p.alarm_every_s * rng.uniform(0.6, 1.4))
            if detectors and time.monotonic() - run_start < self.p.drive_s:
                await rng.choice(detectors).alarm(stop)
        ordering.clear()
        await asyncio.gather(*injections)
        self.say(f"run {index + 1}: driving over, faults done; settling (up to {self.p.settle_s:.0f} s)")
        await self.settle()
        supervisor_stop.set()
        await supervisor
        stop.set()
        await asyncio.gather(*(stop_technician(c, t) for c, t in technicians))
        self.journals[f"run {index + 1}"] = {c.name: {"errors": c.tally.errors[-10:], "said": list(c.journal)}
                                           for c, _ in technicians}
        await asyncio.gather(*customer_tasks, return_exceptions=True)
        for proc in [*self.stack.api, *self.stack.worker_procs]:
            if not proc.alive():
                self.say(f"[red]{proc.name} is not running (exit {proc.popen.returncode if proc.popen else None})[/]")

    async def settle(self) -> None:
        from bench.faults_support.figures import resting

        deadline = time.monotonic() + self.p.settle_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                conn = await asyncpg.connect(host="127.0.0.1", port=self.stack.pg_port, user="postgres",
                                             database="gasdispatch")
                try:
                    rows = await conn.fetch("SELECT status, count(*) AS n FROM dispatch_order GROUP BY status")
                finally:
                    await conn.close()
                waiting = {r["status"]: r["n"] for r in rows if not resting(r["status"])}
                if not waiting:
                    return
            await asyncio.sleep(2)
        self.say(f"settle window over; still moving: {waiting}")

    async def quiesce(self, limit_s: float = 60) -> None:
        """The people stopped: let the engine deliver what their last steps published and finish
        the payouts in flight before counting (a notification still queued is late, not lost),
        for at most `limit_s`."""
        deadline = time.monotonic() + limit_s
        pending = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                conn = await asyncpg.connect(host="127.0.0.1", port=self.stack.pg_port, user="postgres",
                                             database="gasdispatch")
                try:
                    # Payouts in flight too: the reconcile must not list the provider mid-transfer.
                    pending = await conn.fetchval("""
                        SELECT (SELECT count(*) FROM kit_delivery WHERE state = 'pending')
                             + (SELECT count(*) FROM dispatch_outbox WHERE delivered_at IS NULL)
                             + (SELECT count(*) FROM pgqueuer WHERE entrypoint = 'settlement.transfer')""")
                finally:
                    await conn.close()
                if not pending:
                    return
            await asyncio.sleep(1)
        self.say(f"engine still had {pending} deliveries pending after {limit_s:.0f} s")

    async def main(self) -> dict:
        from bench.faults_support.figures import compute

        if not self.args.json:
            self.status.start()
        try:
            await self.up()
            cities = await self.people()
            for index in range(self.args.runs):
                await self.run(index, cities)
            await self.quiesce()
            figures, self.details = await compute(self.stack, self.env, self.observed, runs=self.args.runs,
                                                  started=self.started, stall_s=self.p.stall_s, faults=self.faults)
            return figures
        finally:
            if self.args.keep:
                logs = self.stack.base / "logs"
                (logs / "faults.log").write_text("\n".join(self.fault_log) + "\n")
                (logs / "details.json").write_text(json.dumps(self.details, indent=1, default=str))
                (logs / "technicians.json").write_text(json.dumps(self.journals, indent=1, ensure_ascii=False))
            await self.down()
            self.status.stop()


def show(console: Console, figures: dict, details: dict) -> None:
    table = Table("figure", "value", title="fault suite")
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        table.add_row(key, str(value))
    console.print(table)
    for name in ("unfinished", "stuck", "double_accepts", "double_captures", "double_transfers", "lost"):
        if details.get(name):
            console.print(f"[yellow]{name}[/] ({len(details[name])}): {details[name][:10]}")
    if details.get("dead_letters"):
        console.print(f"[yellow]dead letters by table[/]: {details['dead_letters']}")
        for cause in details["dead_letter_causes"]:
            console.print(f"  {cause}")
    for name, ok in (("audit", figures["audit_ok"]), ("reconcile", figures["reconcile_ok"])):
        if not ok:
            console.print(f"[red]{name} failed:[/]\n{details[name]}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis", choices=("single", "cluster"), default="single")
    parser.add_argument("--minutes", type=float, default=None, help="driving time per run (default 3; --quick 0.67)")
    parser.add_argument("--quick", action="store_true", help="the short CI variant: one fault of each kind, short outages")
    parser.add_argument("--workers", type=int, default=2, help="`gasdispatch worker` processes")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs) afterwards")
    parser.add_argument("--no-seed-cache", action="store_true", help="migrate and seed even when a cached copy exists")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    console = Console(stderr=True)
    harness = Harness(args, console)
    loop = asyncio.new_event_loop()
    task = loop.create_task(harness.main())
    # Stopped from outside: cancel the run so that its `finally` stops every process it started.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, task.cancel)
    try:
        figures = loop.run_until_complete(task)
    except asyncio.CancelledError:
        console.print("[red]stopped; the stack was torn down[/]")
        raise SystemExit(130) from None
    finally:
        loop.close()
    if args.json:
        print(json.dumps(figures, sort_keys=False))
    else:
        show(console, figures, harness.details)
        if args.keep:
            console.print(f"logs in {harness.stack.base / 'logs'}")


if __name__ == "__main__":
    main()
