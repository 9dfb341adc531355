"""Start-up fails fast, naming what it cannot reach, instead of serving errors or looping."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GASDISPATCH_STARTUP_TIMEOUT_S": "2", **env}
    return subprocess.run([sys.executable, *args], check=False, cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_database_url_stops_the_command_naming_the_database(command: str) -> None:
    result = _run("-m", "app", command, GASDISPATCH_DATABASE_URL=(
        f"postgresql+asyncpg://postgres:secret-pw@127.0.0.1:{_closed_port()}/gasdispatch"))
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert "cannot reach the database" in output
    assert "secret-pw" not in output  # the password is never printed


def test_a_bad_redis_url_stops_serve_naming_redis() -> None:
    result = _run("-m", "app", "serve", "--port", str(_closed_port()),
                  GASDISPATCH_REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    assert result.returncode == 3
    assert "cannot reach the redis" in result.stdout + result.stderr


def test_the_asgi_app_never_starts_live_without_its_database() -> None:
    """Served by uvicorn directly (not through `gasdispatch serve`): the lifespan check refuses."""
    result = _run("-m", "uvicorn", "app.asgi:create_app", "--factory", "--port", str(_closed_port()),
                  GASDISPATCH_DATABASE_URL=f"postgresql+asyncpg://postgres:x@127.0.0.1:{_closed_port()}/gasdispatch")
    assert result.returncode != 0
    assert "cannot reach the database" in result.stdout + result.stderr
