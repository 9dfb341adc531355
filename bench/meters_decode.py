"""Frames decoded per second, CJ/T 188 and M-Bus, over the peer corpus's valid frames.

Run: .venv/bin/python bench/meters_decode.py [--seconds-per-run 1.0] [--runs 5]
"""

import argparse
import sys
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from meters.protocols import cjt188, mbus

DATA = Path(__file__).resolve().parent.parent / "tests" / "meters" / "data"


def _corpus() -> dict[str, tuple[Callable[[bytes], object], list[bytes]]]:
    cjt = json.loads((DATA / "cjt188-peer-frames.json").read_text())["frames"]
    mb = json.loads((DATA / "mbus-peer-frames.json").read_text())["frames"]
    return {
        "cjt188": (cjt188.decode, [bytes.fromhex(f["hex"]) for f in cjt if f["expected_checksum_valid"]]),
        # Wired long frames with readings; error frames and wireless telegrams are left out.
        "mbus": (mbus.decode, [bytes.fromhex(f["hex"]) for f in mb if "expected" in f or "expected_pymeterbus_records" in f]),
    }


def _rate(decode, frames: list[bytes], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for frame in frames:
            decode(frame)
        done += len(frames)
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds-per-run", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    console.print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    corpus = _corpus()
    results = {}
    with Progress(console=console, transient=True) as progress:
        for name, (decode, frames) in corpus.items():
            task = progress.add_task(name, total=args.runs)
            rates = []
            for _ in range(args.runs):
                rates.append(_rate(decode, frames, args.seconds_per_run))
                progress.advance(task)
            results[name] = (statistics.median(rates), len(frames))
    for name, (rate, count) in results.items():
        console.print(f"{name}: {rate:,.0f} frames/s (median of {args.runs} runs, {count} distinct frames)")


if __name__ == "__main__":
    main()
