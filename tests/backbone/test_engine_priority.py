"""A worker process that runs the urgent lane alone raises its CPU priority; others keep theirs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from app import worker

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import os, sys; from app.worker import prioritise; "
         "print(prioritise(sys.argv[1].split(',')), os.getpriority(os.PRIO_PROCESS, 0))")


def _probe(roles: str, **env: str) -> list[str]:
    """`prioritise` in a process of its own: the test runner's priority stays as it is."""
    return subprocess.run([sys.executable, "-c", PROBE, roles], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root (scripts/test.sh runs as root)")
def test_a_process_with_the_urgent_lane_alone_raises_its_priority() -> None:
    assert _probe("urgent", GASDISPATCH_URGENT_WORKER_NICE="-3") == ["-3", "-3"]


def test_a_process_with_routine_work_or_the_setting_at_zero_keeps_its_priority() -> None:
    own = str(os.getpriority(os.PRIO_PROCESS, 0))
    assert _probe("urgent,realtime") == ["None", own]
    assert _probe("urgent", GASDISPATCH_URGENT_WORKER_NICE="0") == ["None", own]


def test_without_the_right_the_worker_says_so_and_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refused)
    monkeypatch.setattr(os, "getpriority", lambda *args: 0)
    with capture_logs() as logs:
        assert worker.prioritise(["urgent"]) is None
    assert [entry["event"] for entry in logs] == ["worker.priority_not_raised"]
