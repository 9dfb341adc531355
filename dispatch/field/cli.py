"""`gasdispatch field ...`: the daily inspection campaign and the open-hazard list for operations."""

import asyncio
import json
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Field execution: inspection campaigns and hazards.")
console = Console(stderr=True)


@app.callback()
def field() -> None:
    """Field execution: inspection campaigns and hazards."""


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2026-12-01T01:00:00+00:00")
    return moment


@app.command("campaign")
def campaign(now: str | None = typer.Option(None, help="Run as of this RFC 3339 time (default: now).")) -> None:
    """The daily job: re-plan no-access visits, plan due households, book tomorrow's inspection visits."""
    from kit.db import get_engine, session_scope
    from dispatch.field import campaigns

    moment = _at(now)

    async def run() -> dict[str, int]:
        async with session_scope() as session:
            stations = await campaigns.stations_count(session)
            with Progress(TextColumn("planning stations"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as progress:
                task = progress.add_task("plan", total=stations)
                result = await campaigns.run_daily(session, moment, on_station=lambda _: progress.advance(task))
        await get_engine().dispose()
        return result.__dict__

    console.print(json.dumps(asyncio.run(run())))


@app.command("hazards")
def hazards(min_age_days: int = typer.Option(0, min=0), limit: int = typer.Option(100, min=1, max=1000)) -> None:
    """Open hazards, oldest first."""
    from kit.db import get_engine, session_scope
    from dispatch.field import reports

    now = datetime.now(timezone.utc)

    async def run() -> list:
        async with session_scope() as session:
            rows = await reports.open_hazards(session, now=now, min_age_days=min_age_days, limit=limit)
        await get_engine().dispose()
        return rows

    table = Table("found", "age (days)", "category", "severity", "deadline", "station", "follow-up order")
    for h in asyncio.run(run()):
        table.add_row(h.found_at.isoformat(timespec="minutes"), str((now - h.found_at).days), h.category, h.severity,
                      h.deadline_at.isoformat(timespec="minutes") if h.deadline_at else "-", str(h.station_id or "-"),
                      str(h.followup_order_id))
    Console().print(table)
