"""`gasdispatch settlement ...` and `gasdispatch audit ...`."""

import asyncio
import json
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(help="Settlement: transfers, recovery, reconciliation.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit: verify the ledger's hash chains.", no_args_is_help=True)
console = Console(stderr=True)


async def _transfer_pending(daily_batch: bool) -> tuple[int, int]:
    from kit.db import get_engine, session_scope
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
        await webhooks.process_pending(session, gateway)  # also decides pending claw-back reversals
    await get_engine().dispose()
    return len(ids), done


@app.command("run-once")
def run_once() -> None:
    """Release accrued settlements, pay every transfer_pending one, decide pending claw-back reversals,
    retry deferred webhooks."""
    pending, done = asyncio.run(_transfer_pending(daily_batch=False))
    console.print(f"[green]{done} of {pending} pending transfers completed[/]")


@app.command()
def resume() -> None:
    """Recovery after a crash: complete every reserved transfer and claw-back reversal (same keys, no double pay)."""
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
    from kit.db import get_engine, session_scope
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


def _verify() -> None:
    from kit.db import get_engine, session_scope
    from settlement.audit import verify_chain

    async def go():
        async with session_scope() as session:
            with console.status("verifying the ledger's chains and anchors"):
                report = await verify_chain(session)
        await get_engine().dispose()
        return report

    report = asyncio.run(go())
    typer.echo(json.dumps({"ok": report.ok, "checked": report.checked, "chains": report.chains,
                           "anchors": report.anchors, "broken": report.broken}))
    if not report.ok:
        for broken in report.broken:
            where = (f"anchor {broken['anchor']}" if "anchor" in broken
                     else f"entry {broken['entry_id']} ({broken['chain']} #{broken['chain_seq']})")
            console.print(f"[red]{where}: {'; '.join(broken['problems'])}[/]")
        raise typer.Exit(1)
    console.print(f"[green]{report.checked} entries in {report.chains} chains and {report.anchors} anchors verified[/]")


@app.command("audit")
def settlement_audit() -> None:
    """Recompute every ledger chain and daily anchor; exit 1 and name every entry or anchor that was changed."""
    _verify()


@audit_app.command()
def verify() -> None:
    """Recompute the ledger's hash chains and anchors; exit 1 and name every entry that was changed."""
    _verify()


@app.command()
def anchor() -> None:
    """Anchor today's chain tips (once a day; a second run prints the same anchor)."""
    from kit.db import get_engine, session_scope
    from settlement import ledger

    async def go() -> dict:
        async with session_scope() as session:
            made = await ledger.anchor(session)
            result = {"day": made.day.isoformat(), "chains": len(made.tips), "anchor_hash": made.anchor_hash}
        await get_engine().dispose()
        return result

    typer.echo(json.dumps(asyncio.run(go())))
