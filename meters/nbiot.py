"""IoT platform pushes: signature check and CTWing (AEP) `dataReport` mapping.

Each product's thing model differs, so the mapping from `payload.serviceData` to our fields
is a YAML profile per product (meters/profiles/*.yaml), not code.

Webhook authentication (our contract with each platform's push adapter): headers
`X-Timestamp` (unix seconds) and `X-Signature` = hex HMAC-SHA256 over `"{timestamp}." + raw
body` with the platform's secret. A timestamp outside the tolerance is refused, and so is a
second delivery of the same signed material: the replay key is the hash of timestamp and
body, both covered by the signature (an `X-Message-Id` header is not, so it is not trusted).
A platform that retries re-signs with a new timestamp; the reading is then deduplicated on
its content (`Telemetry.digest`).

A report's identity is the device, the platform's timestamp (milliseconds, kept), the
upstream packet sequence number when the platform gives one (`upPacketSN`) and the
serviceData: a retransmission is a no-op, a different report at the same instant is new.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from dispatch.errors import AuthenticationFailed
from kit.errors import Conflict, InvalidInput, NotFound
from meters.ingest import digest_of
from meters.telemetry import Telemetry

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
_FIELDS = ("volume_m3", "lel_pct", "valve", "battery_low", "alarm", "tamper")


class WebhookSignatureInvalid(AuthenticationFailed):
    """The webhook signature or timestamp is not valid."""

    slug = "webhook-signature-invalid"


class WebhookReplayed(Conflict):
    """This signed message was already received."""

    slug = "webhook-replayed"


class UnknownPlatform(NotFound):
    """No such IoT platform is configured."""

    slug = "unknown-platform"


class MalformedReport(InvalidInput):
    """The report is not a well-formed platform message."""

    slug = "malformed-report"


@dataclass(frozen=True)
class Profile:
    platform: str
    product_id: str
    kind: str
    device_id_field: str
    fields: dict[str, dict[str, Any]]


@lru_cache
def load_profiles(directory: Path = PROFILES_DIR) -> dict[tuple[str, str], Profile]:
    profiles = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        profile = Profile(str(data["platform"]), str(data["product_id"]), data["kind"],
                          data.get("device_id_field", "IMEI"), data["fields"])
        unknown = set(profile.fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"{path.name}: unknown fields {sorted(unknown)}")
        profiles[(profile.platform, profile.product_id)] = profile
    return profiles


def verify_signature(
    secret: str, *, timestamp: str | None, signature: str | None, body: bytes, now: datetime, tolerance_s: int,
) -> None:
    if not timestamp or not signature:
        raise WebhookSignatureInvalid("X-Timestamp and X-Signature are required")
    try:
        sent = int(timestamp)
    except ValueError as exc:
        raise WebhookSignatureInvalid("X-Timestamp must be unix seconds") from exc
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise WebhookSignatureInvalid("signature mismatch")
    if abs(now.timestamp() - sent) > tolerance_s:
        raise WebhookSignatureInvalid("timestamp outside the tolerance")


def replay_key(timestamp: str, body: bytes) -> str:
    """The inbox key of a verified message: only what the signature covers."""
    return hashlib.sha256(timestamp.encode() + b"." + body).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """What a platform adapter sends in X-Signature (used by tests and the bench)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CommandResponse:
    """The platform's answer to a command we sent (`taskId` is our command id)."""

    external_id: str
    command_id: str
    succeeded: bool
    detail: dict[str, Any]


def map_command_response(platform: str, envelope: Any) -> CommandResponse | None:
    """A CTWing `commandResponse`, or None for other messages."""
    if not isinstance(envelope, dict) or envelope.get("messageType") != "commandResponse":
        return None
    profile = load_profiles().get((platform, str(envelope.get("productId", ""))))
    external_id = envelope.get(profile.device_id_field if profile else "IMEI")
    task_id = envelope.get("taskId")
    result = envelope.get("result")
    if not isinstance(external_id, str) or not isinstance(task_id, str | int) or not isinstance(result, dict):
        raise MalformedReport("IMEI, taskId and result are required in a commandResponse")
    return CommandResponse(external_id, str(task_id), result.get("resultCode") in ("SUCCESS", 0, "0"), result)


def map_data_report(platform: str, envelope: Any, received_at: datetime) -> Telemetry | None:
    """A CTWing message as telemetry; None for messages that carry no report (online/offline
    events, command responses). Raises MalformedReport, or LookupError for an unknown product."""
    if not isinstance(envelope, dict):
        raise MalformedReport("the body must be a JSON object")
    if envelope.get("messageType") != "dataReport":
        return None
    profile = load_profiles().get((platform, str(envelope.get("productId", ""))))
    if profile is None:
        raise LookupError("unknown product")
    external_id = envelope.get(profile.device_id_field)
    payload = envelope.get("payload")
    service_data = payload.get("serviceData") if isinstance(payload, dict) else None
    if not isinstance(external_id, str) or not external_id or not isinstance(service_data, dict):
        raise MalformedReport(f"{profile.device_id_field} and payload.serviceData are required")
    try:
        millis = int(envelope["timestamp"])
        read_at = datetime.fromtimestamp(millis // 1000, timezone.utc).replace(microsecond=millis % 1000 * 1000)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        raise MalformedReport("timestamp (ms since epoch) is required") from exc
    values: dict[str, Any] = {}
    for name, rule in profile.fields.items():
        if rule["path"] in service_data:
            values[name] = _convert(name, rule, service_data[rule["path"]])
    identity = json.dumps([external_id, millis, envelope.get("upPacketSN"), service_data], sort_keys=True, default=str)
    return Telemetry(external_id, "nbiot", read_at, received_at,
                     raw={"envelope": envelope},
                     digest=digest_of(identity.encode()), **values)


def _convert(name: str, rule: dict[str, Any], value: Any) -> Any:
    if "true_if" in rule:
        return value in rule["true_if"]
    if "map" in rule:
        return rule["map"].get(value, "abnormal")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedReport(f"{name} must be a number")
    return float(value) * float(rule.get("scale", 1))
