"""`gasdispatch ratings ...`: the review-closing job from the command line (cron, systemd timers)."""

import asyncio

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(no_args_is_help=True, help="Reviews and reputation.")
console = Console(stderr=True)


@app.callback()
def ratings() -> None:
    """Reviews and reputation."""


@app.command("finalize-due")
def finalize_due(
    batch: int = typer.Option(500, min=1, help="Reviews per transaction."),
) -> None:
    """Freeze reviews whose edit window ended and review automatically orders past their review window."""
    from datetime import datetime, timezone

    from kit.db import get_engine, session_scope
    from ratings import jobs

    async def run() -> int:
        now = datetime.now(timezone.utc)
        async with session_scope() as session:
            due = await jobs.count_due(session, now)
        total = 0
        with Progress(TextColumn("finalizing reviews"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("finalize", total=due)
            while True:
                # One transaction per batch: a failure loses at most one batch of work.
                async with session_scope() as session:
                    done = await jobs.finalize_due(session, now, limit=batch,
                                                   on_finalized=lambda: progress.advance(task))
                total += done
                if done == 0:
                    break
        await get_engine().dispose()
        return total

    console.print(f"[green]{asyncio.run(run())} reviews finalized[/]")
