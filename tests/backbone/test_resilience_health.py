"""Readiness reports the workers and the job backbone, not only the connections."""

import pytest
from httpx import AsyncClient


async def test_not_ready_without_a_fresh_worker_heartbeat(client: AsyncClient, redis, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    # Jobs left queued by other tests (no worker runs here) must not decide this one.
    monkeypatch.setattr(get_settings(), "health_max_ready_age_s", 10 ** 9)
    monkeypatch.setattr(get_settings(), "health_max_dead_letters", 10 ** 9)
    response = await client.get("/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["database"] == "ok" and body["redis"] == "ok"
    assert body["worker"].startswith("error")

    await redis.set("worker:heartbeat:host-a:123", '{"at": "2026-11-30T12:00:00Z", "jobs": {}}', ex=15)
    response = await client.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["worker"] == "ok"


async def test_ready_without_workers_when_none_are_expected(client: AsyncClient, monkeypatch) -> None:  # noqa: ANN001
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "health_min_workers", 0)
    monkeypatch.setattr(get_settings(), "health_max_ready_age_s", 10 ** 9)
    monkeypatch.setattr(get_settings(), "health_max_dead_letters", 10 ** 9)
    assert (await client.get("/v1/health")).status_code == 200


@pytest.mark.parametrize(("backbone", "problem"), [
    ({"workers": 1, "dead_letters": 4, "oldest_ready_age_s": 0}, "dead letters"),
    ({"workers": 1, "dead_letters": 0, "oldest_ready_age_s": 120.0}, "oldest ready job"),
])
def test_a_backbone_past_its_limits_is_not_ready(monkeypatch, backbone: dict, problem: str) -> None:  # noqa: ANN001
    from api.routers.health import _backbone_checks
    from kit.config import get_settings

    monkeypatch.setattr(get_settings(), "health_max_dead_letters", 3)
    monkeypatch.setattr(get_settings(), "health_max_ready_age_s", 60.0)
    checks = _backbone_checks(backbone)
    assert checks["worker"] == "ok"
    assert problem in checks["engine"]
    assert _backbone_checks({"workers": 1, "dead_letters": 3, "oldest_ready_age_s": 59.0}) == {"worker": "ok", "engine": "ok"}
