"""Event backbone throughput: events/s delivered to 4 subscribers by 2 worker processes.

Each event is published in its own committed transaction (outbox row, 4 deliveries, 4 jobs);
the workers run the engine's `events.deliver` job (one transaction per delivery, the order
check, a handler that records nothing). The figure is events whose 4 deliveries are all done,
per second, from the first publish to the last delivery. Uses the configured database (bench
rows are deleted afterwards).

    python bench/backbone.py [--events 2000] [--workers 2] [--publishers 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from sqlalchemy import text  # noqa: E402

from kit import events, jobs  # noqa: E402
from kit.db import get_engine, session_scope  # noqa: E402

TOPIC = "bench.backbone"
SUBSCRIBERS = ("bench_a", "bench_b", "bench_c", "bench_d")


async def _nothing(_session: object, _payload: dict) -> None:
    return None


def _subscribe() -> None:
    for name in SUBSCRIBERS:
        async def handler(session: object, payload: dict, _name: str = name) -> None:
            await _nothing(session, payload)
        handler.__name__ = name
        events.subscribe(TOPIC, handler, subscriber=name)
    events.mark_wired()


async def _worker() -> None:
    """A worker process: the engine's delivery lane with the bench's subscribers."""
    _subscribe()
    stop = asyncio.Event()
    spec = jobs.JobSpec(jobs.DELIVER, lambda payload: events.deliver(payload["delivery_id"]), max_attempts=10)
    await jobs.run_lane([spec], stop, batch_size=20, pool_size=4)


async def _publish(count: int, orders: int) -> None:
    for i in range(count):
        async with session_scope() as session:
            await events.publish(session, TOPIC, {"order_id": f"bench-{i % orders}", "n": i})


async def _delivered() -> tuple[int, int]:
    async with get_engine().connect() as conn:
        row = (await conn.execute(text(
            "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FROM kit_delivery WHERE topic = :t"),
            {"t": TOPIC})).one()
    return row[0], row[1]


async def _clean() -> None:
    async with get_engine().begin() as conn:
        await conn.execute(text("DELETE FROM dispatch_outbox WHERE topic = :t"), {"t": TOPIC})


def _machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


async def _run(args: argparse.Namespace, console: Console) -> dict[str, object]:
    _subscribe()
    await _clean()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    workers = [subprocess.Popen([sys.executable, __file__, "--worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(args.workers)]
    try:
        await asyncio.sleep(3)  # the workers connect and listen
        total = args.events * len(SUBSCRIBERS)
        started = time.perf_counter()
        per_publisher = args.events // args.publishers
        publishing = asyncio.gather(*(_publish(per_publisher, args.orders) for _ in range(args.publishers)))
        with Progress(console=console, transient=not console.is_terminal) as progress:
            task = progress.add_task("deliveries", total=total)
            while True:
                done, _ = await _delivered()
                progress.update(task, completed=done)
                if done >= per_publisher * args.publishers * len(SUBSCRIBERS) and publishing.done():
                    break
                if any(w.poll() is not None for w in workers):
                    raise SystemExit("a worker process exited")
                await asyncio.sleep(0.2)
        await publishing
        elapsed = time.perf_counter() - started
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        await _clean()
        await get_engine().dispose()
    published = per_publisher * args.publishers
    return {"events": published, "subscribers": len(SUBSCRIBERS), "workers": args.workers,
            "publishers": args.publishers, "seconds": round(elapsed, 2),
            "events_per_s": round(published / elapsed, 1),
            "deliveries_per_s": round(published * len(SUBSCRIBERS) / elapsed, 1), "machine": _machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--orders", type=int, default=200, help="distinct order ids (deliveries of one order run in sequence)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker())
        return
    console = Console(stderr=args.json)
    result = asyncio.run(_run(args, console))
    if args.json:
        print(json.dumps(result))
        return
    console.print(f"[bold]{result['events']}[/] events x {result['subscribers']} subscribers, "
                  f"{result['workers']} workers: [bold]{result['events_per_s']} events/s[/] "
                  f"({result['deliveries_per_s']} deliveries/s) in {result['seconds']} s")
    console.print(f"machine: {result['machine']}")


if __name__ == "__main__":
    main()
