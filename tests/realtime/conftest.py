"""Real API worker processes (uvicorn) on loopback, sharing the test database and Redis."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_worker(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """start(**env) -> base URL of a fresh uvicorn worker; all are stopped at the end."""
    processes: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        port = _free_port()
        environment = {**os.environ, "GASDISPATCH_EMBEDDED_WORKER": "false", **env}
        log = open(tmp_path / f"worker-{port}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"worker on {port} did not start: {(tmp_path / f'worker-{port}.log').read_text()}")

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
