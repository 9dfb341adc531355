"""Process-wide logging for every gasdispatch process (API, worker, listener, CLI).

JSON lines; tracebacks as plain text without local variables (a local can hold a connection
URL or a key); every known secret redacted from every line, stdlib loggers included; the same
error repeated in a tight loop (an outage) is written once per window with a count.
"""

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import structlog
from structlog.typing import EventDict, WrappedLogger

from kit.config import Settings, get_settings

REDACTED = "[redacted]"
# user:password@ in any URL-like text, whatever the settings say.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s\"']*):[^@\s/\"']+@")
REPEAT_WINDOW_S = 60.0


def known_secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold, longest first (so a secret containing another is
    replaced whole)."""
    values: list[str | None] = [
        settings.jwt_secret, settings.stripe_api_key, settings.stripe_webhook_secret, settings.metrics_token,
        settings.vapid_private_key, *settings.qr_signing_keys.values(), *settings.meters_webhook_secrets.values(),
    ]
    for url in (settings.database_url, settings.redis_url):
        try:
            values.append(urlsplit(url).password)
        except ValueError:
            continue
    # Very short values would redact ordinary words; the guard refuses such secrets anyway.
    return sorted({v for v in values if v and len(v) >= 6}, key=len, reverse=True)


class RedactSecrets:
    """Replaces secret values and URL credentials in every string of the event."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = list(secrets)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _URL_CREDENTIALS.sub(rf"\1:{REDACTED}@", text)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self._clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self._clean(item) for item in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.scrub(str(value))

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return {key: self._clean(value) for key, value in event_dict.items()}


class FoldRepeats:
    """Writes an error that repeats (same event, same exception) once per window; the next line
    written for it carries `repeated`, the number of lines folded since."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic) -> None:  # noqa: ANN001
        self.window_s = window_s
        self.clock = clock
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("level", method) not in ("error", "critical", "exception", "warning"):
            return event_dict
        exc = event_dict.get("exc_info")
        if exc is True:
            exc = sys.exc_info()
        if isinstance(exc, BaseException):
            signature = f"{type(exc).__name__}: {exc}"[:300]
        elif isinstance(exc, tuple) and exc[1] is not None:
            signature = f"{exc[0].__name__}: {exc[1]}"[:300]
        else:
            signature = ""
        key = (str(event_dict.get("event")), signature)
        now = self.clock()
        first_at, folded = self.seen.get(key, (None, 0))
        if first_at is not None and now - first_at < self.window_s:
            self.seen[key] = (first_at, folded + 1)
            raise structlog.DropEvent
        if len(self.seen) > 1000:  # bounded memory under a storm of distinct errors
            self.seen.clear()
        self.seen[key] = (now, 0)
        if folded:
            event_dict["repeated"] = folded
        return event_dict


def _pre_chain() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: int = logging.INFO, settings: Settings | None = None) -> None:
    """Structlog and the stdlib loggers (uvicorn, SQLAlchemy, alembic) through one chain."""
    settings = settings or get_settings()
    redact = RedactSecrets(known_secrets(settings))
    fold = FoldRepeats()
    tail = [
        structlog.processors.format_exc_info,  # plain traceback text: no locals
        redact,
        structlog.processors.JSONRenderer(ensure_ascii=False),
    ]
    structlog.configure(
        processors=[*_pre_chain(), fold, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_pre_chain(), structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that install their own handlers would bypass redaction.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "sqlalchemy", "meterbus"):
        library = logging.getLogger(name)
        library.handlers[:] = []
        library.propagate = True
