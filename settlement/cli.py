"""`gasdispatch settlement ...` and `gasdispatch audit ...`."""

import asyncio
import json
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(help="Settlement: transfers, recovery, reconciliation.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit: verify the ledger's hash chain.", no_args_is_help=True)
console = Console(stderr=True)


async def _transfer_pending(daily_batch: bool) -> tuple[int, int]:
    from dispatch.db import get_engine, session_scope
    from settlement import service, webhooks

    gateway = service.get_gateway()
    async with session_scope() as session:
        await service.release_accrued(session, daily_batch=daily_batch)
    async with session_scope() as session:
        ids = await service.pending_transfer_ids(session)
    done = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("transfers", total=len(ids))
        for settlement_id in ids:
            # One transaction per settlement: a failure or crash leaves the others done.
            async with session_scope() as session:
                done += await service.transfer_settlement(session, settlement_id, gateway)
            progress.advance(task)
    async with session_scope() as session:
        await webhooks.process_pending(session, gateway)
    await get_engine().dispose()
    return len(ids), done


@app.command("run-once")
def run_once() -> None:
    """Release accrued settlements, pay every transfer_pending one, retry deferred webhooks."""
    pending, done = asyncio.run(_transfer_pending(daily_batch=False))
    console.print(f"[green]{done} of {pending} pending transfers completed[/]")


@app.command()
def resume() -> None:
    """Recovery after a crash: complete every settlement left in transfer_pending (same keys, no double pay)."""
    pending, done = asyncio.run(_transfer_pending(daily_batch=False))
    console.print(f"[green]{done} of {pending} pending transfers completed[/]")


@app.command("payout-batch")
def payout_batch() -> None:
    """The daily batch: release accrued settlements under the daily schedule and pay them."""
    pending, done = asyncio.run(_transfer_pending(daily_batch=True))
    console.print(f"[green]{done} of {pending} transfers completed[/]")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@app.command()
def reconcile(
    start: datetime = typer.Option(..., "--from", help="Start (inclusive), UTC unless an offset is given."),
    end: datetime = typer.Option(..., "--to", help="End (exclusive)."),
) -> None:
    """Compare the ledger with the provider's balance transactions; exit 1 on any mismatch."""
    from dispatch.db import get_engine, session_scope
    from settlement import service
    from settlement.reconcile import reconcile as run

    async def go() -> list:
        async with session_scope() as session:
            with console.status("comparing ledger and provider"):
                found = await run(session, service.get_gateway(), _utc(start), _utc(end))
        await get_engine().dispose()
        return found

    mismatches = asyncio.run(go())
    if not mismatches:
        console.print("[green]ledger and provider agree[/]")
        return
    table = Table("provider object", "problem", "ledger", "provider", "currency")
    for m in mismatches:
        table.add_row(m.provider_object_id, m.problem, str(m.ledger_minor), str(m.provider_minor), m.currency)
    console.print(table)
    raise typer.Exit(1)


@audit_app.command()
def verify() -> None:
    """Recompute the ledger's hash chain; exit 1 and name every entry that was changed."""
    from dispatch.db import get_engine, session_scope
    from settlement.audit import verify_chain

    async def go():  # noqa: ANN202
        async with session_scope() as session:
            with console.status("verifying the ledger hash chain"):
                report = await verify_chain(session)
        await get_engine().dispose()
        return report

    report = asyncio.run(go())
    typer.echo(json.dumps({"ok": report.ok, "checked": report.checked, "broken": report.broken}))
    if not report.ok:
        for broken in report.broken:
            console.print(f"[red]entry {broken['entry_id']} (seq {broken['seq']}): {'; '.join(broken['problems'])}[/]")
        raise typer.Exit(1)
    console.print(f"[green]{report.checked} entries verified[/]")
