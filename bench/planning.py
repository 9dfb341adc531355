"""Route planning on the public VRPTW benchmarks, beside VROOM.

    .venv/bin/python bench/planning.py [--set solomon --set homberger_200] [--only 'R1*']
        [--solomon-seconds 10] [--homberger-seconds 30] [--workers 2] [--no-vroom] [--json]

Runs every instance of Solomon's 100-customer set and Gehring & Homberger's 200-customer set
(tests/matching/data/vrptw, see SOURCE.md there) with the fleet capped at the best-known vehicle
count, through `matching.planning.plan_routes` (the code path of `gasdispatch plan`), and then
through VROOM (pyvroom, exploration level 5, the same cores and the same time limit) on the same
instance. Both plans are scored by the same double-precision `evaluate`, so a plan that misses a
customer or a window is counted infeasible whoever made it. Prints per instance and per set the
gap to the best-known distance and the seconds used. Targets (issue #15): every plan feasible;
Solomon mean gap <= 0.1 % at 10 s; Gehring–Homberger 200 mean gap <= 1.0 % at <= 30 s.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not this folder's namesakes

from bench.matching_assign import machine  # noqa: E402
from matching.planning import Plan, Problem, evaluate, plan_routes  # noqa: E402
from matching.planning.solomon import read  # noqa: E402
from matching.planning.solver import SCALE  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "matching" / "data" / "vrptw"
SETS = ("solomon", "homberger_200")
console = Console(width=None if sys.stdout.isatty() else 150)


def vroom_plan(problem: Problem, seconds: float, threads: int) -> Plan:
    """VROOM on the same instance: integer durations scaled like PyVRP's (rounded up), the
    fleet as given; its routes are re-scored by `evaluate`."""
    import vroom

    began = time.perf_counter()
    instance = vroom.Input()
    instance.set_durations_matrix("car", np.ceil(problem.travel * SCALE - 1e-6).astype(np.uint32))
    for vehicle in problem.vehicles:
        instance.add_vehicle(vroom.Vehicle(
            id=int(vehicle.id) + 1,  # VROOM ids are positive
            start=vehicle.start, end=vehicle.end,
            capacity=[vehicle.capacity],
            time_window=vroom.TimeWindow(round(vehicle.earliest * SCALE), round(vehicle.latest * SCALE)),
        ))
    for job in problem.jobs:
        instance.add_job(vroom.Job(
            id=int(job.id), location=job.location, default_service=round(job.service * SCALE),
            delivery=[job.demand],
            time_windows=[vroom.TimeWindow(round(job.earliest * SCALE), round(job.latest * SCALE))],
        ))
    solution = instance.solve(exploration_level=5, nb_threads=threads, timeout=timedelta(seconds=seconds))
    routes = {
        route["vehicle"] - 1: [step["id"] for step in route["steps"] if step["type"] == "job"]
        for route in solution.to_dict()["routes"]
    }
    return evaluate(problem, routes, seconds=time.perf_counter() - began)


def gap(plan: Plan, best_known: float) -> float:
    return 100.0 * (plan.travel / best_known - 1.0)


def summary(plans: list[Plan], best: list[dict]) -> dict:
    feasible = [(p, b) for p, b in zip(plans, best) if p.feasible]
    return {
        "instances": len(plans),
        "feasible": len(feasible),
        "mean_gap_pct": statistics.fmean(gap(p, b["distance"]) for p, b in feasible) if feasible else None,
        "mean_seconds": statistics.fmean(p.seconds for p in plans),
    }


def run(args: argparse.Namespace) -> dict:
    best_known = json.loads((DATA / "best_known.json").read_text())
    chosen = [
        (name, entry) for name, entry in best_known.items()
        if entry["set"] in args.set and any(fnmatch.fnmatch(name, p) for p in args.only)
    ]
    limits = {"solomon": args.solomon_seconds, "homberger_200": args.homberger_seconds}
    rows: list[dict] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("planning", total=len(chosen))
        for name, entry in chosen:
            progress.update(task, description=f"planning {name}")
            problem = read(DATA / entry["set"] / f"{name}.txt", vehicles=entry["vehicles"])
            ours = plan_routes(problem, limits[entry["set"]], seed=args.seed, workers=args.workers)
            row = {"name": name, "set": entry["set"], "best": entry, "ours": ours}
            if not args.no_vroom:
                progress.update(task, description=f"VROOM {name}")
                row["vroom"] = vroom_plan(problem, limits[entry["set"]], args.workers)
            rows.append(row)
            progress.advance(task)

    report: dict = {"machine": machine(), "workers": args.workers, "instances": [], "sets": {}}
    for row in rows:
        item = {"name": row["name"], "set": row["set"], "best_known": row["best"]}
        for solver in ("ours", "vroom"):
            if solver in row:
                plan = row[solver]
                item[solver] = {
                    "feasible": plan.feasible, "vehicles": len(plan.routes), "unserved": len(plan.unassigned),
                    "distance": round(plan.travel, 2), "gap_pct": round(gap(plan, row["best"]["distance"]), 3),
                    "seconds": round(plan.seconds, 2),
                }
        report["instances"].append(item)
    for name in args.set:
        in_set = [row for row in rows if row["set"] == name]
        if in_set:
            best = [row["best"] for row in in_set]
            report["sets"][name] = {
                solver: summary([row[solver] for row in in_set], best)
                for solver in ("ours", "vroom") if solver in in_set[0]
            }
    return report


def show(report: dict) -> None:
    console.print(f"[bold]Route planning[/] on {report['machine']}, {report['workers']} workers")
    table = Table("instance", "BKS veh", "BKS dist", "ours veh", "ours dist", "gap %", "s", "VROOM veh",
                  "VROOM dist", "gap %", "unserved", "s")
    for item in report["instances"]:
        cells = [item["name"], str(item["best_known"]["vehicles"]), f"{item['best_known']['distance']:.2f}"]
        for solver in ("ours", "vroom"):
            result = item.get(solver)
            if result is None:
                cells += ["-"] * (4 if solver == "ours" else 5)
                continue
            mark = "" if result["feasible"] else " [red]infeasible[/]"
            cells += [str(result["vehicles"]), f"{result['distance']:.2f}", f"{result['gap_pct']:.2f}{mark}"]
            if solver == "vroom":
                cells.append(str(result["unserved"]))
            cells.append(f"{result['seconds']:.1f}")
        table.add_row(*cells)
    console.print(table)
    for name, solvers in report["sets"].items():
        for solver, figures in solvers.items():
            mean_gap = figures["mean_gap_pct"]
            console.print(
                f"{name:>14} {solver:>5}: {figures['feasible']}/{figures['instances']} feasible, mean gap "
                f"{'-' if mean_gap is None else f'{mean_gap:.3f} %'} (over feasible plans), "
                f"mean {figures['mean_seconds']:.1f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", choices=SETS, help="instance set (repeatable; default both)")
    parser.add_argument("--only", action="append", default=None, help="instance name pattern, e.g. 'R1*'")
    parser.add_argument("--solomon-seconds", type=float, default=10.0)
    parser.add_argument("--homberger-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="searches side by side (cores); VROOM threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-vroom", action="store_true", help="skip the VROOM comparison")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.set = args.set or list(SETS)
    args.only = args.only or ["*"]
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        show(report)


if __name__ == "__main__":
    main()
