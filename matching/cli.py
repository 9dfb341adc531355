"""`gasdispatch simulate`: run a scenario through greedy or batch matching, or write one.
`gasdispatch plan`: plan routes for a VRPTW instance file. `gasdispatch matching ...`: the live
engine's commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from matching.scenario import ScenarioError, generate, load
from matching.simulate import simulate as run_simulation

app = typer.Typer(add_completion=False)
stderr = Console(stderr=True)


class InstanceFormat(str, Enum):
    solomon = "solomon"


class PolicyName(str, Enum):
    greedy = "greedy"
    batch = "batch"  # v2: adaptive batching with look-ahead values (matching/simulate.py)
    batch_v1 = "batch-v1"  # the batch before issue #17, for comparison


class Switch(str, Enum):
    on = "on"
    off = "off"


@app.command()
def simulate(
    scenario: Annotated[Optional[Path], typer.Option(help="Scenario JSON to run.")] = None,
    policy: Annotated[PolicyName, typer.Option(help="Matching policy.")] = PolicyName.batch,
    window_s: Annotated[float, typer.Option(min=1, help="Batch window in seconds.")] = 60.0,
    escalation: Annotated[Switch, typer.Option(help="Escalation ladder (K at once, cooldown re-offers).")] = Switch.on,
    readiness: Annotated[Switch, typer.Option(help="Emergency reserve, pre-emption, repositioning.")] = Switch.on,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    generate_to: Annotated[
        Optional[Path], typer.Option("--generate", help="Write a generated scenario here and exit.")
    ] = None,
    technicians: Annotated[int, typer.Option(min=1, help="Generator: technicians.")] = 40,
    orders: Annotated[int, typer.Option(min=0, help="Generator: orders.")] = 400,
    hours: Annotated[float, typer.Option(min=0.1, help="Generator: hours of demand.")] = 12.0,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 1,
    acceptance_rate: Annotated[float, typer.Option(min=0, max=1, help="Generator: chance an offer is accepted.")] = 1.0,
) -> None:
    """Simulate dispatching a scenario (--scenario, or one generated from the generator
    options) and print its figures; with --generate, only write the generated scenario."""
    if generate_to is not None:
        generated = generate(technicians, orders, hours, seed, acceptance_rate)
        generate_to.write_text(json.dumps(generated.to_dict(), indent=1) + "\n", encoding="utf-8")
        stderr.print(f"wrote {generate_to}: {technicians} technicians, {orders} orders")
        return
    try:
        chosen = load(scenario) if scenario is not None else generate(technicians, orders, hours, seed, acceptance_rate)
    except ScenarioError as exc:
        stderr.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc

    with Progress(
        TextColumn(f"simulating {policy.value}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=stderr, transient=True, disable=not stderr.is_terminal,
    ) as progress:
        task = progress.add_task("", total=len(chosen.orders))
        result = run_simulation(
            chosen, policy.value, window_s,
            on_progress=lambda done, total: progress.update(task, completed=done),
            escalation=escalation is Switch.on, readiness=readiness is Switch.on,
        )
    if json_out:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:>24}: {value}")


def plan(
    instance: Annotated[Path, typer.Option(help="Instance file (Solomon / Gehring–Homberger text).")],
    format: Annotated[InstanceFormat, typer.Option(help="Instance file format.")] = InstanceFormat.solomon,
    time_limit: Annotated[float, typer.Option(min=0.1, help="Seconds of search, wall clock.")] = 10.0,
    vehicles: Annotated[Optional[int], typer.Option(min=1, help="Fleet cap (default: the file's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first search; each core adds one.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Searches run side by side, best kept.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Serve every customer with at most the fleet, minimising total distance (double
    precision, recomputed from the routes); exit 2 on a malformed file."""
    from matching.planning import plan_routes
    from matching.planning.solomon import SolomonFormatError, read

    try:
        problem = read(instance, vehicles)
    except SolomonFormatError as exc:
        stderr.print(f"[red]error:[/red] {instance}: {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    with Progress(
        TextColumn(f"planning {problem.name}"), BarColumn(), TimeElapsedColumn(),
        console=stderr, transient=True, disable=not stderr.is_terminal,
    ) as progress:
        progress.add_task("", total=None)
        result = plan_routes(problem, time_limit, seed=seed, workers=workers)
    summary = {
        "instance": problem.name,
        "vehicles": len(result.routes),
        "distance": result.travel,
        "feasible": result.feasible,
        "routes": [route.jobs for route in result.routes],
        "seconds": round(result.seconds, 3),
    }
    if json_out:
        typer.echo(json.dumps(summary))
        return
    for key in ("instance", "vehicles", "distance", "feasible", "seconds"):
        typer.echo(f"{key:>9}: {summary[key]}")
    for number, route in enumerate(summary["routes"], start=1):
        typer.echo(f"{'route ' + str(number):>9}: {' '.join(map(str, route))}")


engine_app = typer.Typer(no_args_is_help=True, help="The live matching engine.")


@engine_app.command("rebuild-index")
def rebuild_index_command() -> None:
    """Refill the Redis geo index from positions persisted in PostgreSQL."""
    import asyncio

    from kit.db import get_engine, session_scope
    from kit.redis import get_redis
    from matching.service import geo_index, rebuild_index

    async def run() -> int:
        async with session_scope() as session:
            count = await rebuild_index(session, geo_index(get_redis()))
        await get_engine().dispose()
        return count

    stderr.print(f"[green]{asyncio.run(run())} technicians back in the index[/]")


@engine_app.command("train-eta")
def train_eta_command(
    min_trips: Annotated[int, typer.Option(min=10, help="Fewer usable trips: keep the distance model.")] = 200,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fit the travel-time model on the completed trips (departure -> check-in), measure it on
    the newest 20 % against the distance model, and store it for arrival times."""
    import asyncio
    from dataclasses import asdict

    from kit.db import get_engine, session_scope
    from matching.eta import train

    async def run():  # noqa: ANN202
        async with session_scope() as session:
            training = await train(session, min_trips=min_trips)
        await get_engine().dispose()
        return training

    with Progress(TextColumn("training the ETA model"), TimeElapsedColumn(), console=stderr, transient=True,
                  disable=not stderr.is_terminal) as progress:
        progress.add_task("", total=None)
        training = asyncio.run(run())
    summary = {"trips": training.trips, "model_id": training.model_id,
               "model": training.model,
               **({k: round(v, 3) for k, v in asdict(training.figures).items()} if training.figures else {})}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    if training.figures is None:
        stderr.print(f"{training.trips} usable trips, fewer than {min_trips}: arrival times stay on the distance model")
        return
    f = training.figures
    typer.echo(f"stored model {training.model_id} from {training.trips} trips; on the newest {f.trips}:")
    typer.echo(f"  learned   MAE {f.learned_mae_s / 60:.2f} min, p90 {f.learned_p90_s / 60:.2f} min, "
               f"range holds {f.range_coverage:.0%}")
    typer.echo(f"  distance  MAE {f.baseline_mae_s / 60:.2f} min, p90 {f.baseline_p90_s / 60:.2f} min")
    if training.model == "distance":
        stderr.print("the learned model does no better: arrival times stay on the distance model")


@engine_app.command("train-values")
def train_values_command(
    start: Annotated[datetime, typer.Option("--from", help="Start (inclusive), UTC unless an offset is given.")],
    end: Annotated[datetime, typer.Option("--to", help="End (exclusive).")],
    city: Annotated[Optional[str], typer.Option(help="City id (default: the configured city).")] = None,
) -> None:
    """Learn the look-ahead values per (H3 cell, hour of the day) from the orders completed in
    [--from, --to) and store them as the city's new version; exit 2 on bad input, the current
    values left in place."""
    import asyncio

    from kit.config import get_settings
    from kit.db import get_engine, session_scope
    from matching.values import ValuesInputError, train_and_store

    chosen = city or get_settings().city
    utc = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end)]

    async def run():  # noqa: ANN202
        try:
            async with session_scope() as session:
                return await train_and_store(session, chosen, *utc)
        finally:
            await get_engine().dispose()

    try:
        with Progress(TextColumn("training look-ahead values"), TimeElapsedColumn(), console=stderr,
                      transient=True, disable=not stderr.is_terminal) as progress:
            progress.add_task("", total=None)
            training = asyncio.run(run())
    except ValuesInputError as exc:
        stderr.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    typer.echo(f"stored version {training.version} for {chosen}: {training.states} (cell, hour) values "
               f"from {training.orders} completed orders")
