"""`gasdispatch meters ...`: decode frames, run the concentrator listener and the periodic checks."""

import asyncio
import json
from enum import Enum
from typing import Annotated, NoReturn

import typer

from meters.decode import decode_frame
from meters.protocols import FrameError

app = typer.Typer(no_args_is_help=True, help="Meter protocol tools.")

EXIT_BAD_FRAME = 2


class ProtocolChoice(str, Enum):
    cjt188 = "cjt188"
    mbus = "mbus"
    auto = "auto"


@app.callback()
def meters() -> None:
    """Meter tools: decoding (CJ/T 188, M-Bus), the concentrator listener, periodic checks."""


@app.command()
def decode(
    hex_frame: Annotated[str, typer.Argument(metavar="HEX", help="Frame as hex; spaces allowed.")],
    protocol: Annotated[ProtocolChoice, typer.Option(help="Protocol, or auto to detect by framing.")] = ProtocolChoice.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Decode one frame and print the reading."""
    try:
        data = bytes.fromhex(hex_frame)
    except ValueError:
        _fail("not hex")
    try:
        result = decode_frame(protocol.value, data)
    except FrameError as exc:
        _fail(exc.reason)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    for key, value in result.items():
        if key == "records":
            typer.echo("records:")
            for record in value:
                typer.echo(f"  {record['quantity']} [{record['function']}, storage {record['storage']}, tariff {record['tariff']}]: "
                           f"{record['value']} {record['unit']}".rstrip())
        else:
            typer.echo(f"{key}: {'-' if value is None else value}")


def _fail(reason: str) -> NoReturn:
    typer.echo(f"error: {reason}", err=True)
    raise typer.Exit(EXIT_BAD_FRAME)


@app.command()
def listen(
    port: Annotated[int, typer.Option(help="TLS port for concentrators.")] = 9188,
    host: Annotated[str, typer.Option()] = "0.0.0.0",
    legacy_port: Annotated[int | None, typer.Option(help="Plain TCP port for legacy concentrators "
                                                    "(needs GASDISPATCH_METERS_PLAIN_TCP_ENABLED).")] = None,
) -> None:
    """Serve concentrators: TLS with per-concentrator tokens; plain TCP only where enabled;
    Prometheus metrics on GASDISPATCH_METERS_METRICS_PORT."""
    from zoneinfo import ZoneInfo

    from kit.config import get_settings
    from kit.db import session_scope
    from kit.redis import get_redis
    from meters.listener import ConcentratorServer, freeze_startup_heap, start_metrics_server, tls_context

    settings = get_settings()
    if not (settings.meters_tls_cert_file and settings.meters_tls_key_file):
        typer.echo("error: set GASDISPATCH_METERS_TLS_CERT_FILE and GASDISPATCH_METERS_TLS_KEY_FILE", err=True)
        raise typer.Exit(2)
    if legacy_port is not None and not settings.meters_plain_tcp_enabled:
        typer.echo("error: plain TCP is disabled (GASDISPATCH_METERS_PLAIN_TCP_ENABLED)", err=True)
        raise typer.Exit(2)

    async def run() -> None:
        server = ConcentratorServer(session_factory=session_scope, redis=get_redis(),
                                    tz=ZoneInfo(settings.meters_device_timezone),
                                    plain_allowed=frozenset(settings.meters_plain_tcp_allowed))
        servers = [await server.start(host, port, ssl_context=tls_context(settings.meters_tls_cert_file,
                                                                           settings.meters_tls_key_file))]
        if legacy_port is not None:
            servers.append(await server.start(host, legacy_port, ssl_context=None))
        if settings.meters_metrics_port:
            start_metrics_server(host, settings.meters_metrics_port)
        typer.echo(f"listening: TLS {host}:{port}" + (f", plain {host}:{legacy_port}" if legacy_port else "")
                   + (f", metrics http://{host}:{settings.meters_metrics_port}/metrics"
                      if settings.meters_metrics_port else ""))
        freeze_startup_heap()
        await asyncio.gather(server.pump_forever(), *(s.serve_forever() for s in servers))

    asyncio.run(run())


@app.command("check-comm-lost")
def check_comm_lost() -> None:
    """Open comm_lost faults (and orders) for devices silent past their interval x the factor."""
    from datetime import datetime, timezone

    from kit.config import get_settings
    from kit.db import get_engine, session_scope
    from kit.redis import get_redis
    from meters import rules

    async def run() -> int:
        async with session_scope() as session:
            orders = await rules.check_comm_lost(session, get_redis(), now=datetime.now(timezone.utc),
                                                 factor=get_settings().meters_comm_lost_factor)
        await get_engine().dispose()
        return len(orders)

    typer.echo(f"comm_lost orders created: {asyncio.run(run())}")


@app.command("check-consumption")
def check_consumption_command() -> None:
    """The daily leak / stopped-meter check over every meter's consumption history."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from kit.config import get_settings
    from kit.db import get_engine, session_scope
    from meters.consumption import check_consumption

    async def run() -> list:
        async with session_scope() as session:
            raised = await check_consumption(session, now=datetime.now(timezone.utc),
                                             tz=ZoneInfo(get_settings().meters_device_timezone))
        await get_engine().dispose()
        return raised

    for item in asyncio.run(run()):
        typer.echo(json.dumps(item))


@app.command()
def reminders() -> None:
    """Publish maintenance reminders that are due (at most one per appliance per period)."""
    from datetime import datetime, timezone

    from kit.config import get_settings
    from kit.db import get_engine, session_scope
    from meters.reminders import due_reminders

    async def run() -> int:
        async with session_scope() as session:
            issued = await due_reminders(session, settings=get_settings(), now=datetime.now(timezone.utc))
        await get_engine().dispose()
        return len(issued)

    typer.echo(f"reminders issued: {asyncio.run(run())}")


@app.command()
def partitions(months: Annotated[int, typer.Option(min=1, max=36, help="Months ahead to create.")] = 3) -> None:
    """Create the monthly reading partitions for this month and the next MONTHS."""
    from sqlalchemy import text

    from kit.db import get_engine, session_scope

    async def run() -> int:
        async with session_scope() as session:
            created = (await session.execute(text(
                "SELECT meters_ensure_reading_partitions(date_trunc('month', now())::date, :n)"), {"n": months + 1})).scalar()
        await get_engine().dispose()
        return int(created or 0)

    typer.echo(f"partitions created: {asyncio.run(run())}")
