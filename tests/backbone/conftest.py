"""A 3-node Redis Cluster for the backbone tests: the test script's (GASDISPATCH_TEST_REDIS_CLUSTER_PORTS),
else three `redis-server --cluster-enabled yes` started here and joined by `redis-cli --cluster create`."""

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backbone.engine_support import empty_queue  # noqa: F401 (fixtures shared by the backbone tests)
from tests.backbone.resilience_support import api_process  # noqa: F401


def _free_ports(n: int) -> list[int]:
    """Free ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@pytest.fixture(scope="session")
def cluster_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """The test script's cluster, else three masters on loopback joined by `redis-cli --cluster
    create` and stopped afterwards."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed to start a Redis Cluster")
    given = os.environ.get("GASDISPATCH_TEST_REDIS_CLUSTER_PORTS")
    if given:
        yield [int(port) for port in given.split(",")]
        return
    root: Path = tmp_path_factory.mktemp("redis-cluster")
    ports = _free_ports(3)
    processes = []
    for port in ports:
        folder = root / str(port)
        folder.mkdir()
        processes.append(subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
             "--cluster-config-file", str(folder / "nodes.conf"), "--dir", str(folder), "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    try:
        for port in ports:
            _wait(lambda p=port: _cli(p, "ping") == "PONG", f"redis on {port}")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in ports:
            _wait(lambda p=port: "cluster_state:ok" in _cli(p, "cluster", "info"), f"cluster state on {port}")
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def _wait(ready, what: str, timeout_s: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s} s")


