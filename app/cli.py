"""The `gasdispatch` command: the building blocks of the two set-up commands and the tools."""

import asyncio
import json
import sys
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="gasdispatch: a dispatch marketplace for city gas utilities.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
console = Console(stderr=True)
ROOT = Path(__file__).resolve().parent.parent
# Commands that touch no database, key or provider: they run before an install has secrets.
OFFLINE_COMMANDS = {"secrets", "plan", "simulate"}
secrets_app = typer.Typer(help="This install's secrets (JWT, QR, webhooks, metrics).", no_args_is_help=True)


@app.callback()
def main(ctx: typer.Context) -> None:
    """Every command logs through the redacting JSON chain; settings are checked up front."""
    from pydantic import ValidationError

    from kit.logs import configure_logging

    if ctx.invoked_subcommand in OFFLINE_COMMANDS or "--help" in sys.argv[1:]:
        return
    try:
        configure_logging()
    except ValidationError as exc:
        console.print(f"[red]{exc.errors()[0]['msg']}[/]")
        raise typer.Exit(2) from None


@secrets_app.command("init")
def secrets_init(
    file: Path = typer.Option(None, help="Where to write them (default: var/secrets.env, read by every command)."),
) -> None:
    """Generate the secrets this install lacks (0600 file); existing values are kept."""
    from kit.config import SECRETS_FILE
    from kit.secrets import ensure_secrets
    from meters.nbiot import load_profiles

    legacy = ROOT / "var" / "jwt-secret"  # written by earlier versions of run.sh
    added = ensure_secrets(file or SECRETS_FILE, sorted({platform for platform, _ in load_profiles()}),
                           legacy_jwt_secret=legacy.read_text().strip() if legacy.exists() else None)
    console.print(f"[green]generated {', '.join(added)}[/]" if added else "secrets already present")


def alembic_config():  # noqa: ANN201
    from alembic.config import Config

    return Config(str(ROOT / "alembic.ini"))


@app.command()
def migrate(revision: str = typer.Argument("heads", help="Target revision (each package has its own branch).")) -> None:
    """Bring the database schema to REVISION (default: every package branch head) with Alembic."""
    from alembic import command

    command.upgrade(alembic_config(), revision)
    console.print(f"[green]database migrated to {revision}[/]")


@app.command()
def seed(city: str = typer.Option("demo", help="Which demo city to seed.")) -> None:
    """Seed a demo city: stations, certified technicians, customers with addresses (idempotent)."""
    from kit.db import get_engine, session_scope
    from dispatch.seed import CITIES, seed_city

    if city not in CITIES:
        console.print(f"[red]unknown city {city!r}; known: {', '.join(CITIES)}[/]")
        raise typer.Exit(2)

    async def run() -> dict:
        async with session_scope() as session:
            result = await seed_city(session, city)
        await get_engine().dispose()
        return result

    console.print(json.dumps(asyncio.run(run()), ensure_ascii=False))


@app.command("create-staff")
def create_staff(
    role: str = typer.Option(..., help="auditor or admin"),
    email: str = typer.Option(...),
    name: str = typer.Option(...),
    password: str = typer.Option(..., prompt=True, hide_input=True),
) -> None:
    """Create an auditor or admin account (staff are never self-registered)."""
    from dispatch import accounts
    from kit.db import get_engine, session_scope

    if role not in ("auditor", "admin"):
        console.print("[red]role must be auditor or admin[/]")
        raise typer.Exit(2)

    async def run() -> None:
        async with session_scope() as session:
            await accounts.create_staff(session, role=role, email=email, password=password, name=name)
        await get_engine().dispose()

    asyncio.run(run())
    console.print(f"[green]{role} {email} created[/]")


@app.command()
def worker(roles: str = typer.Option(
        "urgent,realtime,background,matching",
        help="Comma-separated: urgent (an emergency's deliveries), realtime (other deliveries, offer "
             "expiry), background (payouts, reviews, webhooks, scans), matching (a loop per city).")) -> None:
    """Run the periodic work (events, matching, review finalization, payouts) without serving."""
    import uvloop  # with uvicorn[standard]; the API's loop is uvloop too

    from app.worker import ROLES, prioritise, run_forever

    chosen = [role.strip() for role in roles.split(",") if role.strip()]
    unknown = sorted(set(chosen) - set(ROLES))
    if unknown or not chosen:
        console.print(f"[red]unknown roles: {', '.join(unknown) or '(none given)'}; choose from {', '.join(ROLES)}[/]")
        raise typer.Exit(2)
    _check_connections()
    prioritise(chosen)
    uvloop.run(run_forever(roles=chosen))


def _check_connections() -> None:
    """Exit 3 naming the database or Redis when either cannot be reached (bounded retries)."""
    from kit.preflight import UnreachableService, check_connections

    try:
        asyncio.run(check_connections())
    except UnreachableService as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(3) from None


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000), workers: int = typer.Option(1),
) -> None:
    """Serve the API (and websockets) with uvicorn."""
    import uvicorn

    from kit.config import get_settings

    _check_connections()
    # No per-message deflate: the frames are small JSON (a fix ~150 bytes, its ack ~60), so it
    # saves a few dozen bytes a frame for a zlib stream's CPU on the server and on the phone.
    uvicorn.run("app.asgi:create_app", factory=True, host=host, port=port, workers=workers, log_level="warning",
                ws_max_size=get_settings().ws_max_message_bytes, ws_per_message_deflate=False)


def _mount_subcommands() -> None:
    """Each package owns its commands; they are mounted here so `gasdispatch --help` lists all."""
    from dispatch.field.cli import app as field_app
    from app.tech_client import command as tech_client
    from matching.cli import engine_app, plan, simulate
    from meters.cli import app as meters_app
    from ratings.cli import app as ratings_app
    from scheduling.cli import app as scheduling_app
    from settlement.cli import app as settlement_app
    from settlement.cli import audit_app

    app.command("simulate")(simulate)
    app.command("plan")(plan)
    app.command("tech-client")(tech_client)
    app.add_typer(engine_app, name="matching")
    app.add_typer(meters_app, name="meters")
    app.add_typer(ratings_app, name="ratings")
    app.add_typer(field_app, name="field")
    app.add_typer(settlement_app, name="settlement")
    app.add_typer(scheduling_app, name="scheduling")
    app.add_typer(audit_app, name="audit")
    app.add_typer(secrets_app, name="secrets")


_mount_subcommands()
