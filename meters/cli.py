"""`gasdispatch meters ...`: decode meter frames from the command line."""

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
    """Meter protocol tools (CJ/T 188, M-Bus)."""


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
