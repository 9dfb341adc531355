"""The live matching path at city scale, on a Redis of its own, each figure beside what Redis
itself does with the same data in the same run.

    .venv/bin/python bench/matching.py [--techs 100000] [--queries 2000] [--updates 100000] [--json]

1. K-nearest query latency (GeoIndex.nearby, expanding radius, k=16) with 100,000 online
   technicians in one city, p50 / p99 (`knn_p99_ms`), against a bare GEOSEARCH of the same
   query (same point, COUNT 16 ASC WITHDIST, at the radius the index settled on), interleaved
   query by query (`raw_geosearch_p99_ms`). Target: knn p99 <= 2 x raw.
2. One batch round for 2,000 open orders against 20,000 technicians, median: live
   (`batch_live_ms`: matching.service.supply_near, i.e. one read of the city's supply from
   Redis, then the k-d tree search, the technician views and the live round's assignment,
   matching.adaptive.assign_round: adaptive split, first-arrival offers, the batch) against
   the pure core (`batch_pure_ms`: the same search and assignment on a supply already in
   memory). Target: live <= 1.5 x pure. (Technician views come from the Redis states with
   verified certifications; the PostgreSQL lookups of the live engine are in neither figure.)
3. Position updates per second through GeoIndex.update_position, the function the REST route
   and the websocket call, 64 concurrent callers (`updates_per_s`), against the same fixes as
   bare GEOADDs, one per fix, pipelined 500 at a time (`raw_geoadd_per_s`).
   Target: updates >= 25 % of raw.

The script starts its own redis-server on a free loopback port and stops it at the end.
"""

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from redis.asyncio import Redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from bench.matching_assign import machine  # noqa: E402
from matching import adaptive  # noqa: E402
from matching.index import SEARCH_RADII_M, GeoIndex, geo_key, live_key  # noqa: E402
from matching.service import nearest_in, supply_near  # noqa: E402
from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView  # noqa: E402

CENTER = (120.155, 30.274)
HALF_SPAN_DEG = 0.12  # a ~26 km square city
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(redis: Redis, city: str, n: int, rng: np.random.Generator, now: datetime) -> np.ndarray:
    points = np.column_stack([rng.normal(CENTER[0], HALF_SPAN_DEG / 2, n), rng.normal(CENTER[1], HALF_SPAN_DEG / 2, n)])
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"loading {n:,} technicians into {city}", total=n)
        for start in range(0, n, 5000):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(n, start + 5000)):
                    tid = f"{city}-{i}"
                    lon, lat = (float(v) for v in points[i])
                    pipe.geoadd(geo_key(city), (float(lon), float(lat), tid))
                    pipe.hset(live_key(city), tid, json.dumps({"lon": repr(lon), "lat": repr(lat), "ts": repr(now.timestamp()),
                                                               "status": "online", "active_jobs": "0", "max_jobs": "1"}))
                await pipe.execute()
            progress.advance(task, min(5000, n - start))
    return points


async def knn(index: GeoIndex, queries: int, rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Each query through the index, then the bare GEOSEARCH it amounts to."""
    samples, raw = [], []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("k-nearest queries", total=queries)
        for _ in range(queries):
            lon, lat = float(rng.normal(CENTER[0], HALF_SPAN_DEG / 2)), float(rng.normal(CENTER[1], HALF_SPAN_DEG / 2))
            started = time.perf_counter()
            found = await index.nearby("big", lon, lat, k=16, max_radius_m=15_000)
            samples.append((time.perf_counter() - started) * 1000)
            farthest = max((t.distance_m for t in found), default=15_000)
            radius = min([r for r in SEARCH_RADII_M if r >= farthest] + [15_000])
            started = time.perf_counter()
            await index.redis.geosearch(geo_key("big"), longitude=lon, latitude=lat, radius=radius, unit="m",
                                        sort="ASC", count=16, withdist=True)
            raw.append((time.perf_counter() - started) * 1000)
            progress.advance(task)
    return samples, raw


def _round_orders(rng: np.random.Generator, now: datetime) -> list[OrderView]:
    pts = np.column_stack([rng.normal(CENTER[0], HALF_SPAN_DEG / 2, 2000), rng.normal(CENTER[1], HALF_SPAN_DEG / 2, 2000)])
    return [OrderView(f"o{i}", float(lon), float(lat), "repair", "routine", now - timedelta(minutes=5), now + timedelta(hours=4))
            for i, (lon, lat) in enumerate(pts)]


def _assign(orders: list[OrderView], live: list, now: datetime, config: MatchingConfig) -> int:
    cert = (CertificationView("repair", True),)
    views: dict[str, TechnicianView] = {}
    candidates = {}
    for order, group in zip(orders, live):
        for t in group:
            if t.id not in views:
                views[t.id] = TechnicianView(t.id, t.lon, t.lat, "online", cert, t.active_jobs, t.max_jobs, 4.5, t.seen_at)
        candidates[order.id] = [views[t.id] for t in group]
    return len(adaptive.assign_round(orders, candidates, now, config)[0])


async def batch_rounds(index: GeoIndex, runs: int, rng: np.random.Generator, now: datetime,
                       config: MatchingConfig) -> tuple[list[float], list[float], int]:
    """Live and pure rounds alternate on the same orders, so load on the machine hits both."""
    live_ms, pure_ms = [], []
    supply = await index.supply("mid")
    assigned = 0
    for _ in range(runs):
        orders = _round_orders(rng, now)
        started = time.perf_counter()
        assigned = _assign(orders, await supply_near(index, "mid", orders, config), now, config)
        live_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        _assign(orders, nearest_in(supply, orders, config), now, config)
        pure_ms.append((time.perf_counter() - started) * 1000)
    return live_ms, pure_ms, assigned


def _moves(points: np.ndarray, count: int) -> list[tuple[str, float, float]]:
    """Each technician moves ~5 m: prepared up front, so the figures time the index, not numpy."""
    n = len(points)
    jitter = np.random.default_rng(3).normal(0, 0.00003, size=(count, 2))
    return [(f"big-{i % n}", float(points[i % n][0] + jitter[i][0]), float(points[i % n][1] + jitter[i][1]))
            for i in range(count)]


async def updates(index: GeoIndex, points: np.ndarray, count: int, now: datetime) -> float:
    """64 concurrent callers, each fix 2 s after the technician's last, as phone streams would."""
    concurrency = 64
    moves = _moves(points, count)
    n = len(points)
    at = [now + timedelta(seconds=2, milliseconds=i // n) for i in range(count)]
    received = now + timedelta(seconds=3)

    async def worker(offset: int) -> None:
        for i in range(offset, count, concurrency):
            technician_id, lon, lat = moves[i]
            fix = await index.update_position(technician_id=technician_id, city="big", lon=lon, lat=lat, at=at[i], now=received)
            assert fix.outcome == "accepted", fix

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return count / (time.perf_counter() - started)


async def raw_geoadds(redis: Redis, points: np.ndarray, count: int) -> float:
    moves = _moves(points, count)
    started = time.perf_counter()
    for start in range(0, count, 500):
        async with redis.pipeline(transaction=False) as pipe:
            for technician_id, lon, lat in moves[start:start + 500]:
                pipe.geoadd(geo_key("raw"), (lon, lat, technician_id))
            await pipe.execute()
    return count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(port),
                                   "--save", "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            redis = Redis(host="127.0.0.1", port=port, decode_responses=True, max_connections=128)
            for _ in range(100):
                try:
                    await redis.ping()
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            now = datetime.now(UTC)
            rng = np.random.default_rng(args.seed)
            index = GeoIndex(redis, persist_every_s=1e9)
            big = await load(redis, "big", args.techs, rng, now)
            knn_ms, raw_knn_ms = await knn(index, args.queries, rng)
            await load(redis, "mid", 20_000, rng, now)
            live_ms, pure_ms, assigned = await batch_rounds(index, args.runs, rng, now, MatchingConfig())
            rate = await updates(index, big, args.updates, now)
            raw_rate = await raw_geoadds(redis, big, args.updates)
            await redis.aclose()
        finally:
            server.kill()
            server.wait()

    figures = {
        "machine": machine(),
        "knn_p50_ms": round(statistics.median(knn_ms), 3), "knn_p99_ms": round(float(np.percentile(knn_ms, 99)), 3),
        "raw_geosearch_p50_ms": round(statistics.median(raw_knn_ms), 3),
        "raw_geosearch_p99_ms": round(float(np.percentile(raw_knn_ms, 99)), 3),
        "batch_live_ms": round(statistics.median(live_ms), 1), "batch_pure_ms": round(statistics.median(pure_ms), 1),
        "batch_assigned": assigned,
        "updates_per_s": round(rate), "raw_geoadd_per_s": round(raw_rate),
    }
    figures["knn_vs_raw"] = round(figures["knn_p99_ms"] / figures["raw_geosearch_p99_ms"], 2)
    figures["live_vs_pure"] = round(figures["batch_live_ms"] / figures["batch_pure_ms"], 2)
    figures["updates_vs_raw"] = round(figures["updates_per_s"] / figures["raw_geoadd_per_s"], 3)
    if args.json:
        print(json.dumps(figures))
        return
    table = Table(title=f"matching bench — {figures['machine']}, redis-server on loopback")
    for column in ("figure", "value", "same on bare Redis", "ratio", "target"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    table.add_row(f"KNN p99 ({args.techs:,} online, k=16)", f"{figures['knn_p99_ms']:.3f} ms",
                  f"{figures['raw_geosearch_p99_ms']:.3f} ms", f"{figures['knn_vs_raw']:.2f}", "<= 2")
    table.add_row(f"batch 2,000 x 20,000 (median of {args.runs}, {assigned} assigned): live vs in memory",
                  f"{figures['batch_live_ms']:.0f} ms", f"{figures['batch_pure_ms']:.0f} ms", f"{figures['live_vs_pure']:.2f}", "<= 1.5")
    table.add_row("position updates through GeoIndex.update_position", f"{rate:,.0f} /s", f"{raw_rate:,.0f} /s",
                  f"{figures['updates_vs_raw']:.3f}", ">= 0.25")
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--techs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    asyncio.run(main(parser.parse_args()))
