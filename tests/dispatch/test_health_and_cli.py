import subprocess
import sys

import pytest
from httpx import AsyncClient


async def test_health_checks_database_and_redis(client: AsyncClient, redis, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "health_max_ready_age_s", 10 ** 9)  # jobs left by other tests
    await redis.set("worker:heartbeat:test:1", '{"at": "now", "jobs": {}}', ex=15)  # a worker beats
    response = await client.get("/v1/health")
    assert response.status_code == 200
    assert {k: v for k, v in response.json().items() if k in ("status", "database", "redis", "worker")} == {
        "status": "ok", "database": "ok", "redis": "ok", "worker": "ok"}
    assert (await client.get("/v1/health/live")).status_code == 200


async def test_metrics_expose_route_latency_and_orders_by_state(client: AsyncClient, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "metrics_token", "m" * 40)
    await client.get("/v1/health/live")
    text = (await client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 40})).text
    assert 'gasdispatch_http_request_duration_seconds_count{method="GET",route="/v1/health/live",status="200"}' in text
    assert "gasdispatch_orders" in text


async def test_request_id_is_echoed(client: AsyncClient) -> None:
    response = await client.get("/v1/health/live", headers={"x-request-id": "abc123"})
    assert response.headers["x-request-id"] == "abc123"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60)


def test_cli_help_lists_the_commands() -> None:
    result = _cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command.split()[0] in result.stdout


COMMANDS = ["migrate", "seed", "serve", "worker", "create-staff", "simulate", "tech-client",
            "matching rebuild-index", "meters decode", "meters listen", "meters check-comm-lost",
            "meters check-consumption", "meters reminders", "ratings finalize-due", "field campaign",
            "settlement run-once", "settlement reconcile", "audit verify", "scheduling plan-day"]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    result = _cli(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
