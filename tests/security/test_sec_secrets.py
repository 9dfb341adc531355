"""Issue #13 items 1, 2 and part of 13: no development secret outside tests, per-install secrets,
metrics behind a token."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dotenv import dotenv_values
from httpx import AsyncClient
from py_vapid import Vapid02
from pydantic import ValidationError

from kit.config import DEV_QR_KEY, DEV_VAPID_PRIVATE_KEY, Settings
from kit.secrets import ensure_secrets

ROOT = Path(__file__).resolve().parents[2]
SECRET_VARIABLES = ("GASDISPATCH_JWT_SECRET", "GASDISPATCH_QR_SIGNING_KEYS", "GASDISPATCH_QR_ACTIVE_KEY_ID",
                    "GASDISPATCH_STRIPE_WEBHOOK_SECRET", "GASDISPATCH_METRICS_TOKEN",
                    "GASDISPATCH_METERS_WEBHOOK_SECRETS", "GASDISPATCH_STRIPE_API_KEY", "GASDISPATCH_VAPID_PRIVATE_KEY",
                    "GASDISPATCH_ENVIRONMENT")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("environment", ["development", "production"])
def test_every_default_secret_is_refused_outside_tests(clean_environment: None, environment: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment=environment, payment_gateway="stripe", meters_webhook_secrets={"ctwing": "short"},
                 _env_file=None)
    message = str(refused.value)
    for name in ("GASDISPATCH_JWT_SECRET", "GASDISPATCH_QR_SIGNING_KEYS", "GASDISPATCH_STRIPE_WEBHOOK_SECRET",
                 "GASDISPATCH_STRIPE_API_KEY", "GASDISPATCH_METERS_WEBHOOK_SECRETS", "GASDISPATCH_VAPID_PRIVATE_KEY"):
        assert name in message


def test_weak_metrics_token_is_refused(clean_environment: None, tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.env"
    ensure_secrets(secrets_file, ["ctwing"])
    with pytest.raises(ValidationError, match="GASDISPATCH_METRICS_TOKEN"):
        Settings(environment="production", metrics_token="letmein", _env_file=secrets_file)


def test_generated_secrets_start_a_non_test_install(clean_environment: None, tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.env"
    added = ensure_secrets(secrets_file, ["ctwing", "onenet"])
    assert "GASDISPATCH_STRIPE_WEBHOOK_SECRET" in added
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    settings = Settings(environment="development", _env_file=secrets_file)
    assert settings.weak_secrets() == []
    assert set(settings.meters_webhook_secrets) == {"ctwing", "onenet"}
    assert DEV_QR_KEY not in settings.qr_signing_keys.values()
    assert settings.stripe_webhook_secret != "whsec_local"
    assert settings.vapid_private_key != DEV_VAPID_PRIVATE_KEY
    Vapid02.from_raw(settings.vapid_private_key.encode())  # a usable P-256 key for pywebpush


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.env"
    ensure_secrets(secrets_file, ["ctwing"])
    first = dotenv_values(secrets_file)
    assert ensure_secrets(secrets_file, ["ctwing"]) == []
    assert ensure_secrets(secrets_file, ["ctwing", "onenet"]) == ["GASDISPATCH_METERS_WEBHOOK_SECRETS"]
    second = dotenv_values(secrets_file)
    assert second["GASDISPATCH_JWT_SECRET"] == first["GASDISPATCH_JWT_SECRET"]
    assert json.loads(second["GASDISPATCH_METERS_WEBHOOK_SECRETS"])["ctwing"] == \
        json.loads(first["GASDISPATCH_METERS_WEBHOOK_SECRETS"])["ctwing"]
    other_install = tmp_path / "other.env"
    ensure_secrets(other_install, ["ctwing"])
    assert dotenv_values(other_install)["GASDISPATCH_JWT_SECRET"] != first["GASDISPATCH_JWT_SECRET"]


def test_server_refuses_to_start_with_development_secrets(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    environment["GASDISPATCH_ENVIRONMENT"] = "development"
    environment["GASDISPATCH_SECRETS_FILE"] = str(tmp_path / "none.env")  # not this checkout's var/secrets.env
    result = subprocess.run([sys.executable, "-m", "app", "worker"], capture_output=True, text=True,
                            timeout=60, env=environment, cwd=tmp_path)
    assert result.returncode == 2
    assert "GASDISPATCH_JWT_SECRET" in result.stdout + result.stderr


def _forge_qr(order_id: uuid.UUID, technician_id: uuid.UUID, key_id: str, key: str) -> str:
    expires = int((datetime.now(timezone.utc) + timedelta(minutes=5)).timestamp())
    body = json.dumps({"exp": expires, "kid": key_id, "o": str(order_id), "t": str(technician_id)},
                      sort_keys=True, separators=(",", ":")).encode()
    signature = hmac.new(key.encode(), body, hashlib.sha256).digest()
    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return f"{encode(body)}.{encode(signature)}"


def test_qr_forged_with_the_development_key_fails_on_a_default_install(
    clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dispatch.field.identity import InvalidQrToken, read_qr, sign_qr

    secrets_file = tmp_path / "secrets.env"
    ensure_secrets(secrets_file, [])
    installed = Settings(environment="development", _env_file=secrets_file)
    monkeypatch.setattr("dispatch.field.identity.get_settings", lambda: installed)
    order_id, technician_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(timezone.utc)
    genuine, _ = sign_qr(order_id, technician_id, now)
    assert read_qr(genuine, now).order_id == order_id
    for key_id in ("dev", installed.qr_active_key_id):
        with pytest.raises(InvalidQrToken):
            read_qr(_forge_qr(order_id, technician_id, key_id, DEV_QR_KEY), now)


async def test_metrics_need_the_token(client: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.config import get_settings

    assert (await client.get("/metrics")).status_code == 404  # no token configured: not served
    monkeypatch.setattr(get_settings(), "metrics_token", "t" * 40)
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    served = await client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 40})
    assert served.status_code == 200 and "gasdispatch_orders" in served.text


def test_a_platform_command_url_needs_that_platforms_secret(clean_environment: None) -> None:
    with pytest.raises(ValidationError, match="no secret for onenet"):
        Settings(environment="test", _env_file=None, meters_platform_command_urls={"onenet": "http://127.0.0.1:1/cmd"})
