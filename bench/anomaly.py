"""Leak-detection benchmark on a real household gas series (pygazpar's daily sample).

Injects a constant extra daily flow from a random day to the end of the series and runs
`meters.anomaly.detect_anomalies` with the first year as history. Reports, per leak size:
precision (findings after onset / all leak findings), recall (trials detected) and median
detection delay; and the false alarm rate on the clean series per meter-year.

    python -m bench.anomaly [--trials 50] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import json
import os
import platform
import random
import statistics
import time
from datetime import date, datetime
from importlib import metadata, resources

from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from meters.anomaly import AnomalyConfig, detect_anomalies

LEAK_SIZES_M3_PER_DAY = (0.5, 1.0, 2.0, 5.0)
MIN_DAYS_TO_DETECT = 90  # a leak must have this long left in the series to count as a trial


def load_sample() -> list[tuple[date, float]]:
    raw = resources.files("pygazpar").joinpath("resources/daily_data_sample.json").read_text()
    return [
        (datetime.strptime(row["time_period"], "%d/%m/%Y").date(), float(row["volume_m3"]))
        for row in json.loads(raw)
    ]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def run(trials: int, seed: int, config: AnomalyConfig, console: Console) -> dict:
    daily = load_sample()
    since = daily[0][0].toordinal() + config.min_history_days
    since_day = date.fromordinal(since)
    first = config.min_history_days
    scored_years = (len(daily) - first) / 365.25

    clean = detect_anomalies("clean", daily, since=since_day, config=config)
    rng = random.Random(seed)
    per_size = {}
    for size in LEAK_SIZES_M3_PER_DAY:
        detected, false_alarms, delays = 0, 0, []
        for _ in track(range(trials), description=f"leak {size:g} m3/day", console=console):
            onset = rng.randrange(first, len(daily) - MIN_DAYS_TO_DETECT)
            leaked = [(d, v + size if i >= onset else v) for i, (d, v) in enumerate(daily)]
            onset_day = daily[onset][0]
            findings = [
                f
                for f in detect_anomalies("leaky", leaked, since=since_day, config=config)
                if f.kind == "suspected_leak"
            ]
            found_on = [date.fromisoformat(f.evidence["detected_on"]) for f in findings]
            false_alarms += sum(1 for d in found_on if d < onset_day)
            after = [d for d in found_on if d >= onset_day]
            if after:
                detected += 1
                delays.append((min(after) - onset_day).days)
        per_size[f"{size:g}"] = {
            "trials": trials,
            "precision": detected / (detected + false_alarms) if detected + false_alarms else None,
            "recall": detected / trials,
            "median_delay_days": statistics.median(delays) if delays else None,
        }
    return {
        "data": "pygazpar daily_data_sample.json (one household, "
        f"{daily[0][0]}..{daily[-1][0]}, median {statistics.median(v for _, v in daily):.2f} m3/day)",
        "pygazpar_version": metadata.version("pygazpar"),
        "machine": machine(),
        "history_days": first,
        "scored_meter_years": round(scored_years, 3),
        "clean_findings": [f"{f.kind} {f.start_day}" for f in clean],
        "false_alarms_per_meter_year": len(clean) / scored_years,
        "leaks": per_size,
        "seed": seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    console = Console(stderr=args.json)
    started = time.perf_counter()
    result = run(args.trials, args.seed, AnomalyConfig(), console)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result))
        return
    console.print(f"machine: {result['machine']}")
    console.print(f"data: {result['data']}, pygazpar {result['pygazpar_version']}")
    console.print(
        f"history {result['history_days']} days; clean series: {len(result['clean_findings'])} "
        f"findings in {result['scored_meter_years']} meter-years = "
        f"{result['false_alarms_per_meter_year']:.2f} false alarms per meter-year"
    )
    table = Table(title=f"injected leaks, {args.trials} seeded trials per size (seed {args.seed})")
    for column in ("leak m3/day", "precision", "recall", "median delay (days)"):
        table.add_column(column, justify="right")
    for size, r in result["leaks"].items():
        table.add_row(
            size,
            "-" if r["precision"] is None else f"{r['precision']:.2f}",
            f"{r['recall']:.2f}",
            "-" if r["median_delay_days"] is None else f"{r['median_delay_days']:g}",
        )
    console.print(table)
    console.print(f"{result['seconds']} s")


if __name__ == "__main__":
    main()
