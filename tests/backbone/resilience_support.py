"""What the resilience tests share: API processes given a start-up allowance for a loaded machine."""

import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import sockets

ROOT = Path(__file__).resolve().parents[2]
START_ALLOWANCE_S = 120


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator:
    """start(**env) -> base URL of an API process (as conftest's api_worker, with a longer
    start-up allowance); its output goes to tmp_path/worker-{port}.log."""
    processes: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(tmp_path / f"worker-{port}.log", "w")  # noqa: SIM115
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.asgi:create_app", "--factory", "--port", str(port),
             "--log-level", "warning"], cwd=ROOT,
            env={**os.environ, "GASDISPATCH_EMBEDDED_WORKER": "false", **env}, stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_ALLOWANCE_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError((tmp_path / f"worker-{port}.log").read_text())

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


# Sockets that outlive a Redis restart or a cluster's start: longer waits than the default.
recv_until = functools.partial(sockets.recv_until, timeout=30.0)
