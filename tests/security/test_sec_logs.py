"""Issue #13 item 12: no secret in any log line, no local variables in tracebacks, and an error
repeated in a loop (a database outage) is written once per window."""

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import structlog

from kit.config import Settings
from kit.logs import FoldRepeats, RedactSecrets, configure_logging, known_secrets

ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "pg-password-that-must-never-be-logged-42"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_worker_refusing_an_unreachable_database_names_it_without_the_password() -> None:
    environment = {**os.environ, "GASDISPATCH_DATABASE_URL":
                   f"postgresql+asyncpg://postgres:{DB_PASSWORD}@127.0.0.1:{_closed_port()}/gasdispatch"}
    result = subprocess.run([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "database" in output, output[:2000]
    assert DB_PASSWORD not in output
    assert "locals" not in output.lower()


def test_every_known_secret_is_redacted_from_structlog_and_stdlib_lines(capsys) -> None:  # noqa: ANN001
    settings = Settings(environment="test", _env_file=None, jwt_secret="j" * 40, metrics_token="m" * 40,
                        redis_url="redis://:redis-secret-password@127.0.0.1:6379/0",
                        database_url=f"postgresql+asyncpg://postgres:{DB_PASSWORD}@127.0.0.1:1/x",
                        meters_webhook_secrets={"ctwing": "c" * 40})
    try:
        configure_logging(settings=settings)
        structlog.get_logger("t").error("boom", url=settings.database_url, detail={"key": "j" * 40})
        logging.getLogger("sqlalchemy.engine").error("connect to %s failed", settings.redis_url)
        try:
            raise RuntimeError(f"cannot use {'c' * 40} with {settings.database_url}")
        except RuntimeError:
            structlog.get_logger("t").exception("failed")
        logging.getLogger("uvicorn.error").warning("other url https://user:pw-inline@example.invalid/x")
        output = capsys.readouterr().err
    finally:
        configure_logging()
    for secret in (DB_PASSWORD, "j" * 40, "redis-secret-password", "c" * 40, "pw-inline"):
        assert secret not in output
    assert output.count("[redacted]") >= 5
    assert "RuntimeError" in output  # the traceback is there, only the secret is gone


def test_repeated_errors_fold_with_a_count_after_the_window() -> None:
    now = [0.0]
    fold = FoldRepeats(window_s=60, clock=lambda: now[0])
    error = ConnectionRefusedError("refused")

    def emit() -> dict | None:
        try:
            return fold(None, "error", {"event": "worker.relay_failed", "level": "error", "exc_info": error})
        except structlog.DropEvent:
            return None

    assert emit() is not None
    assert [emit() for _ in range(500)] == [None] * 500
    now[0] = 61.0
    assert emit()["repeated"] == 500
    assert fold(None, "info", {"event": "worker.tick", "level": "info"}) is not None


def test_known_secrets_cover_every_secret_setting() -> None:
    settings = Settings(environment="test", _env_file=None, jwt_secret="j" * 40, stripe_api_key="sk_live_" + "s" * 30,
                        stripe_webhook_secret="whsec_" + "w" * 30, metrics_token="m" * 40,
                        qr_signing_keys={"a": "q" * 40}, meters_webhook_secrets={"ctwing": "c" * 40},
                        vapid_private_key="v" * 43, database_url="postgresql+asyncpg://u:dbpassword1@h:1/d")
    redact = RedactSecrets(known_secrets(settings))
    text = " ".join(["j" * 40, "sk_live_" + "s" * 30, "whsec_" + "w" * 30, "m" * 40, "q" * 40, "c" * 40, "v" * 43,
                     "dbpassword1"])
    assert set(redact.scrub(text).split()) == {"[redacted]"}
