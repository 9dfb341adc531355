"""Meters throughput: frames decoded per second, and end-to-end ingestion over TCP
(frames -> reassembly -> decode -> stored readings -> rules -> Redis latest state).

Needs GASDISPATCH_DATABASE_URL (migrated) and GASDISPATCH_REDIS_URL. The end-to-end run
registers its own customer and meters, and deletes them (and their readings) at the end.

The end-to-end figure counts a reading once it is committed in `meters_reading` by a batch
that also ran the rules on it and wrote the device's latest state to Redis (one transaction
per batch), from the first byte sent until the database shows them all. One listener process,
in this process (the senders share its event loop), set up as `gasdispatch meters listen` sets
itself up; CPU is this process's CPU per reading.
Each run uses fresh meters, so no run is a replay of another.

Run: .venv/bin/python bench/meters.py [--meters 2000] [--readings 100000] [--connections 4] [--runs 3]
"""

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.meters_decode import _corpus, _rate  # noqa: E402
from kit.config import get_settings
from kit.db import get_engine, session_scope
from kit.redis import get_redis
from meters.ingest import LATEST_KEY  # noqa: E402
from meters.listener import ConcentratorServer, freeze_startup_heap  # noqa: E402
from meters.protocols import cjt188  # noqa: E402


async def _setup(meters: int) -> tuple[uuid.UUID, list[tuple[uuid.UUID, str]]]:
    from kit.geo import point
    from dispatch.models import Account, Address, Customer

    async with session_scope() as session:
        account = Account(role="customer", email=f"bench-{uuid.uuid4().hex[:8]}@bench.local", password_hash="-", display_name="bench")
        session.add(account)
        await session.flush()
        customer = Customer(account_id=account.id, name="bench", phone="-")
        session.add(customer)
        await session.flush()
        address = Address(customer_id=customer.id, label="bench", line="bench", location=point(120.1, 30.2))
        session.add(address)
        await session.flush()
        prefix = uuid.uuid4().int % 10**6
        devices = [(uuid.uuid4(), f"{prefix:06d}{i:08d}") for i in range(meters)]
        await session.execute(text("""
            INSERT INTO meters_device (id, kind, protocol, external_id, customer_id, address_id, has_valve, meter_type,
                                       appliances, report_interval_s, installed_at, created_at, city_id)
            SELECT id, 'meter', 'cjt188', ext, :c, :a, false, 48, '[]', 3600, now(), now(), :city
            FROM unnest(CAST(:ids AS uuid[]), CAST(:exts AS varchar[])) AS t(id, ext)
        """), {"c": customer.id, "a": address.id, "ids": [d[0] for d in devices], "exts": [d[1] for d in devices],
              "city": get_settings().city})
    return account.id, devices


async def _teardown(account_id: uuid.UUID, devices: list[tuple[uuid.UUID, str]]) -> None:
    ids = [d[0] for d in devices]
    async with session_scope() as session:
        await session.execute(text("DELETE FROM meters_reading WHERE device_id = ANY(:ids)"), {"ids": ids})
        await session.execute(text("DELETE FROM meters_device WHERE id = ANY(:ids)"), {"ids": ids})
        await session.execute(text("DELETE FROM dispatch_address WHERE customer_id IN "
                                   "(SELECT id FROM dispatch_customer WHERE account_id = :a)"), {"a": account_id})
        await session.execute(text("DELETE FROM dispatch_customer WHERE account_id = :a"), {"a": account_id})
        await session.execute(text("DELETE FROM dispatch_account WHERE id = :a"), {"a": account_id})
    redis = get_redis()
    for start in range(0, len(ids), 1000):
        await redis.delete(*[LATEST_KEY.format(i) for i in ids[start:start + 1000]])


def _frames(devices: list[tuple[uuid.UUID, str]], readings: int) -> list[bytes]:
    """Hourly read replies, meter by meter, distinct (device, clock) pairs."""
    base = datetime(2026, 11, 1)
    out = []
    per_meter = readings // len(devices)
    for hour in range(per_meter):
        clock = base + timedelta(hours=hour)
        stamp = bytes.fromhex(f"{clock.second:02d}{clock.minute:02d}{clock.hour:02d}{clock.day:02d}"
                              f"{clock.month:02d}{clock.year % 100:02d}{clock.year // 100:02d}")
        for n, (_, ext) in enumerate(devices):
            volume = bytes.fromhex(f"{(n * 1000 + hour) % 10**8:08d}")[::-1]
            body = volume + b"\x2c" + volume + b"\x2c" + stamp + b"\x00\x00"
            out.append(cjt188.encode(meter_type=0x30, address=ext, control=0x81, di=cjt188.DI_READ_DATA, data=body))
    return out


async def _end_to_end(devices, readings: int, connections: int, console: Console) -> tuple[float, int, float]:  # noqa: ANN001
    server = ConcentratorServer(session_factory=session_scope, redis=get_redis(), tz=ZoneInfo("Asia/Shanghai"),
                                plain_allowed=frozenset({"127.0.0.1"}))
    tcp = await server.start("127.0.0.1", 0, ssl_context=None)
    port = tcp.sockets[0].getsockname()[1]
    frames = _frames(devices, readings)
    shards = [b"".join(frames[i::connections]) for i in range(connections)]
    ids = [d[0] for d in devices]
    freeze_startup_heap()  # as `gasdispatch meters listen` does once it is up

    async def stored() -> int:
        async with session_scope() as session:
            return (await session.execute(text("SELECT count(*) FROM meters_reading WHERE device_id = ANY(:ids)"),
                                          {"ids": ids})).scalar()

    async def send(shard: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for start in range(0, len(shard), 1 << 16):
            writer.write(shard[start:start + (1 << 16)])
            await writer.drain()
        writer.close()

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(send(s) for s in shards))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("stored", total=len(frames))
        while (done := await stored()) < len(frames) and time.perf_counter() - started < 300:
            progress.update(task, completed=done)
            await asyncio.sleep(0.2)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    tcp.close()
    return done / elapsed, done, cpu / max(done, 1)


async def main_async(args: argparse.Namespace, console: Console) -> None:
    rates = []
    try:
        for run in range(args.runs):
            account_id, devices = await _setup(args.meters)
            try:
                rate, done, cpu = await _end_to_end(devices, args.readings, args.connections, console)
            finally:
                await _teardown(account_id, devices)
            rates.append(rate)
            console.print(f"run {run + 1}: {rate:,.0f} readings/s, {cpu * 1e6:.0f} µs CPU per reading "
                          f"({done:,} of {args.readings:,} stored)")
    finally:
        await get_redis().aclose()
        await get_engine().dispose()
    console.print(f"end to end (TCP -> decode -> stored -> rules -> Redis, committed): median {statistics.median(rates):,.0f} "
                  f"readings/s, min {min(rates):,.0f}, max {max(rates):,.0f} over {len(rates)} runs "
                  f"({args.meters:,} meters, {args.connections} connections, 1 listener process)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    console.print(f"machine: {_cpu_model()}, {os.cpu_count()} cpus, {platform.platform()}, "
                  f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} (shared machine)")
    for name, (decode, frames) in _corpus().items():
        console.print(f"decode {name}: {_rate(decode, frames, 1.0):,.0f} frames/s")
    asyncio.run(main_async(args, console))


if __name__ == "__main__":
    main()
