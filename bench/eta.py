"""Travel-time error: the learned ETA model against the distance model (straight line x detour / speed).

    .venv/bin/python bench/eta.py [--days 28] [--orders-per-day 400] [--seed 1] [--real] [--json]

Simulated trips: the simulator's city days (matching/scenario.py geography and demand) driven
through matching/city_traffic.py (per-district speed and kerb-to-door time, rush hours, kind,
log-normal luck); 20 % of them, drawn at random, are held out. With --real, also the trips this
deployment recorded (`matching_trip_time` in the database named by GASDISPATCH_DATABASE_URL),
the newest 20 % held out, as `gasdispatch matching train-eta` does. Errors are of the point
estimate (the learned median, the distance model's value) in minutes; "range holds" is the share
of held-out trips that arrived inside the learned 10th-90th percentile range. "Thin data": the
same held-out trips against models fitted on only the first N training trips (--sizes), which is
where the fallback to the distance model (fewer than MIN_TRIPS, or no better on held-out trips)
earns its keep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import sklearn
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from matching.city_traffic import generate_trips
from matching.eta import (
    HOLDOUT_SHARE,
    MIN_TRIPS,
    Figures,
    TravelModel,
    Trip,
    distance_config,
    evaluate,
    usable,
)

console = Console(stderr=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}")


def measure(train: list[Trip], held_out: list[Trip]) -> tuple[Figures, float]:
    started = time.process_time()
    model = TravelModel(distance_config()).fit(train)
    return evaluate(model, held_out), time.process_time() - started


def in_minutes(figures: Figures, fit_cpu_s: float, trained: int) -> dict:
    out = {k: round(v / 60, 2) if k.endswith("_s") else v for k, v in asdict(figures).items()}
    return {"trained_on": trained, "held_out": out.pop("trips"), **{k.replace("_s", "_min"): v for k, v in out.items()},
            "range_coverage": round(figures.range_coverage, 3), "fit_cpu_s": round(fit_cpu_s, 1)}


async def real_trips() -> list[Trip]:
    from kit.db import get_engine, session_scope
    from matching.eta import completed_trips

    async with session_scope() as session:
        trips = await completed_trips(session)
    await get_engine().dispose()
    return usable(trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--orders-per-day", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real", action="store_true", help="also the deployment's recorded trips")
    parser.add_argument("--min-real", type=int, default=50, help="fewer recorded trips: not measured")
    parser.add_argument("--sizes", default="25,50,100,200,400,1000",
                        help="training-set sizes for the thin-data rows (comma-separated; empty: none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        days = progress.add_task("simulating city days", total=args.days)
        trips = usable(generate_trips(args.days, args.orders_per_day, args.seed,
                                      on_day=lambda done: progress.update(days, completed=done)))
        random.Random(args.seed).shuffle(trips)
        cut = int(len(trips) * (1 - HOLDOUT_SHARE))
        progress.add_task(f"fitting on {cut} trips", total=None)
        simulated = in_minutes(*measure(trips[:cut], trips[cut:]), cut)
        thin = [in_minutes(*measure(trips[:n], trips[cut:]), n) for n in sizes if n < cut]
    result: dict = {"machine": machine(), "load_average": [round(v, 1) for v in os.getloadavg()],
                    "simulated": {"trips": len(trips), "days": args.days, "seed": args.seed, **simulated},
                    "thin": thin, "min_trips": MIN_TRIPS, "real": None}
    if args.real:
        recorded = asyncio.run(real_trips())
        if len(recorded) >= args.min_real:
            cut = int(len(recorded) * (1 - HOLDOUT_SHARE))  # oldest to learn, newest to measure
            result["real"] = {"trips": len(recorded), **in_minutes(*measure(recorded[:cut], recorded[cut:]), cut)}
        else:
            result["real"] = {"trips": len(recorded), "skipped": f"fewer than {args.min_real} recorded trips"}
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title="held-out travel-time error (minutes)")
    for column in ("trips", "model", "MAE", "p90 abs error", "range holds"):
        table.add_column(column, justify="right")
    for name, figures in (("simulated", result["simulated"]), ("real", result["real"])):
        if not figures or "skipped" in figures:
            continue
        table.add_row(f"{name} {figures['held_out']}", "learned", f"{figures['learned_mae_min']:.2f}",
                      f"{figures['learned_p90_min']:.2f}", f"{figures['range_coverage']:.0%}")
        table.add_row("", "distance", f"{figures['baseline_mae_min']:.2f}", f"{figures['baseline_p90_min']:.2f}", "")
    Console().print(table)
    if thin:
        curve = Table(title=f"thin data: the same held-out trips, fitted on fewer (learned used from {MIN_TRIPS} "
                            "trips, and only when it beats the distance model on both)")
        for column in ("trained on", "learned MAE", "learned p90", "range holds", "distance MAE", "distance p90"):
            curve.add_column(column, justify="right")
        for f in thin:
            curve.add_row(str(f["trained_on"]), f"{f['learned_mae_min']:.2f}", f"{f['learned_p90_min']:.2f}",
                          f"{f['range_coverage']:.0%}", f"{f['baseline_mae_min']:.2f}", f"{f['baseline_p90_min']:.2f}")
        Console().print(curve)
    if result["real"] and "skipped" in result["real"]:
        print(f"real trips: {result['real']['trips']}, {result['real']['skipped']}")
    print(f"{result['machine']}; load average {result['load_average']}; "
          f"fit CPU {result['simulated']['fit_cpu_s']} s")


if __name__ == "__main__":
    main()
