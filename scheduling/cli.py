"""`gasdispatch scheduling ...`: the day planner by hand."""

import asyncio
import json
from datetime import date, datetime

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Scheduling: appointments, shifts and day plans.", no_args_is_help=True)
console = Console(stderr=True)


async def _plan_day(city: str, day: date, time_limit: float) -> dict:
    from kit.db import database_now, get_engine, session_scope
    from scheduling import planner

    try:
        async with session_scope() as session:
            result = await planner.plan_day(session, city_id=city, day=day, now=await database_now(session),
                                            time_limit=time_limit)
    finally:
        await get_engine().dispose()
    return {
        "city": result.city_id, "date": result.day.isoformat(), "timezone": result.timezone,
        "stops": len(result.stops), "travel_s": round(result.travel_s, 1), "seconds": round(result.seconds, 2),
        "routes": {str(t): [str(s.order_id) for s in result.stops if s.technician_id == t]
                   for t in dict.fromkeys(s.technician_id for s in result.stops)},
        "unplanned": [{"order_id": str(u.order_id), "reason": u.reason} for u in result.unplanned],
    }


@app.command("plan-day")
def plan_day(
    city: str = typer.Option(..., "--city", help="the city's id, e.g. hangzhou"),
    day: datetime = typer.Option(..., "--date", formats=["%Y-%m-%d"], help="the local day, YYYY-MM-DD"),
    time_limit: float = typer.Option(10.0, "--time-limit", min=0.1, max=600, help="seconds of search"),
) -> None:
    """Plan a city's booked orders of one local day and store the plan in place of the last one;
    bookings move to their planned technician. Orders that cannot be planned are listed (and
    raised as ops alerts); the exit code is then 1."""
    from kit.errors import NotFound

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        progress.add_task(f"planning {city} {day.date().isoformat()}", total=None)
        try:
            out = asyncio.run(_plan_day(city, day.date(), time_limit))
        except NotFound as error:
            console.print(f"[red]error: {error}[/]")
            raise typer.Exit(2) from None
    print(json.dumps(out))
    colour = "yellow" if out["unplanned"] else "green"
    console.print(f"[{colour}]{out['stops']} stops planned, {len(out['unplanned'])} orders not planned[/]")
    if out["unplanned"]:
        raise typer.Exit(1)
