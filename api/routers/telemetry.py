"""Telemetry from IoT platforms (HMAC-signed webhooks) and device administration."""

import json
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert

from api.deps import Admin, RedisDep, SessionDep, Staff
from kit.config import get_settings
from kit.schemas import Page
from kit.after_commit import defer
from kit.db import session_scope
from meters import commands, ingest, nbiot, service
from meters.models import InboxMessage

router = APIRouter(tags=["meters"])
_ingestor = ingest.Ingestor()


class DeviceCreate(BaseModel):
    kind: Literal["meter", "detector"]
    protocol: Literal["cjt188", "mbus", "nbiot"]
    external_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")
    customer_id: uuid.UUID
    address_id: uuid.UUID
    installed_at: datetime
    report_interval_s: int = Field(ge=60, le=31 * 86400)
    has_valve: bool = False
    meter_type: int = Field(default=0x30, ge=0, le=255)
    product: str | None = Field(default=None, max_length=64)
    appliances: list[Literal["boiler", "stove", "hose"]] = Field(default_factory=list)
    # Binding: a wired device reports only through this concentrator (none: legacy plain TCP);
    # an NB-IoT device only through this platform (required for NB-IoT).
    concentrator_id: uuid.UUID | None = None
    platform: str | None = Field(default=None, max_length=32, pattern=r"^[0-9a-z_-]+$")


class DevicePublic(BaseModel):
    id: uuid.UUID
    kind: str
    protocol: str
    external_id: str
    customer_id: uuid.UUID
    address_id: uuid.UUID
    installed_at: datetime
    report_interval_s: int
    has_valve: bool
    appliances: list[str]
    concentrator_id: uuid.UUID | None = None
    platform: str | None = None
    latest: dict[str, Any] | None = None


class ConcentratorCreate(BaseModel):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    description: str = Field(default="", max_length=200)


class ConcentratorCreated(BaseModel):
    id: uuid.UUID
    code: str
    token: str = Field(description="Shown once; the server keeps only its hash.")


class QuarantinePublic(BaseModel):
    id: int
    channel: str
    source: str
    external_id: str | None
    protocol: str | None
    reason: str
    raw: dict[str, Any]
    received_at: datetime


class TelemetryAccepted(BaseModel):
    status: Literal["stored", "duplicate", "quarantined", "ignored", "acknowledged"]
    order_ids: list[uuid.UUID] = Field(default_factory=list)


def _device(device: Any, latest: dict[str, Any] | None = None) -> DevicePublic:
    return DevicePublic(**{k: getattr(device, k) for k in DevicePublic.model_fields if k != "latest"}, latest=latest)


@router.post("/v1/telemetry/{platform}", responses={401: {}, 404: {}, 409: {"description": "replayed message"}})
async def receive_telemetry(
    platform: Annotated[str, Path(max_length=32)], request: Request, session: SessionDep, redis: RedisDep,
    x_timestamp: Annotated[str | None, Header(max_length=20)] = None,
    x_signature: Annotated[str | None, Header(max_length=128)] = None,
) -> TelemetryAccepted:
    """A platform push. Authenticated by HMAC-SHA256 (see meters/nbiot.py), not by a bearer token;
    a second delivery of the same signed timestamp and body is refused (409)."""
    settings = get_settings()
    secret = settings.meters_webhook_secrets.get(platform)
    if secret is None:
        ingest.REJECTED.labels("webhook", "unknown platform").inc()
        raise nbiot.UnknownPlatform()
    body = await request.body()
    now = datetime.now(timezone.utc)
    try:
        nbiot.verify_signature(secret, timestamp=x_timestamp, signature=x_signature, body=body, now=now,
                               tolerance_s=settings.meters_webhook_tolerance_s)
    except nbiot.WebhookSignatureInvalid:
        ingest.REJECTED.labels("webhook", "signature").inc()
        raise
    key = nbiot.replay_key(x_timestamp or "", body)
    first = (await session.execute(insert(InboxMessage).values(platform=platform, message_id=key)
                                   .on_conflict_do_nothing().returning(InboxMessage.message_id))).first()
    if first is None:
        ingest.REJECTED.labels("webhook", "replayed").inc()
        raise nbiot.WebhookReplayed()
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        ingest.REJECTED.labels("webhook", "malformed").inc()
        raise nbiot.MalformedReport("the body is not JSON") from exc
    source = f"platform:{platform}"
    try:
        response = nbiot.map_command_response(platform, envelope)
        report = nbiot.map_data_report(platform, envelope, now) if response is None else None
    except LookupError:
        await ingest.quarantine_raw(session, channel="webhook", source=source, reason="unknown product",
                                    raw={"envelope": envelope}, protocol="nbiot")
        return TelemetryAccepted(status="quarantined")
    except nbiot.MalformedReport:
        ingest.REJECTED.labels("webhook", "malformed").inc()
        raise
    if response is not None:
        return await _command_response(session, response, source=source, now=now)
    if report is None:
        return TelemetryAccepted(status="ignored")
    result = await _ingestor.ingest(session, redis, [report], channel="webhook", source=source, now=now)
    if result.order_ids or result.stored:
        defer(session, _deliver_platform_commands)
    state = "quarantined" if result.quarantined else "stored" if result.stored else "duplicate"
    return TelemetryAccepted(status=state, order_ids=result.order_ids)


async def _command_response(
    session: SessionDep, response: nbiot.CommandResponse, *, source: str, now: datetime,
) -> TelemetryAccepted:
    devices = await _ingestor.registry.resolve(session, [response.external_id])
    device = devices.get(response.external_id)
    reason = "unknown device" if device is None else ingest.binding_violation(
        device, source, get_settings().meters_binding_alternates)
    if device is None or reason is not None:
        await ingest.quarantine_raw(session, channel="webhook", source=source, reason=reason or "unknown device",
                                    raw={"command_response": response.detail, "taskId": response.command_id},
                                    external_id=response.external_id, protocol="nbiot")
        return TelemetryAccepted(status="quarantined")
    matched = await commands.record_response(session, device_id=device.id, command_id=response.command_id,
                                             succeeded=response.succeeded, detail=json.dumps(response.detail), at=now)
    return TelemetryAccepted(status="acknowledged" if matched else "ignored")


async def _deliver_platform_commands() -> None:
    """After the commit: hand the valve closes this alarm queued to the platform at once (the
    worker retries what fails)."""
    async with session_scope() as session:
        await commands.deliver_due(session, settings=get_settings(), now=datetime.now(timezone.utc))


@router.post("/v1/devices", status_code=status.HTTP_201_CREATED)
async def register_device(body: DeviceCreate, session: SessionDep, principal: Admin) -> DevicePublic:
    device = await service.register_device(session, **body.model_dump())
    return _device(device)


@router.get("/v1/devices")
async def list_devices(
    session: SessionDep, principal: Staff,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DevicePublic]:
    rows, next_cursor = await service.list_devices(session, limit=limit, cursor=cursor)
    return Page(data=[_device(d) for d in rows], next_cursor=next_cursor)


@router.get("/v1/devices/{device_id}")
async def get_device(device_id: uuid.UUID, session: SessionDep, redis: RedisDep, principal: Staff) -> DevicePublic:
    device = await service.get_device(session, device_id)
    return _device(device, await ingest.latest_state(redis, device.id))


@router.post("/v1/concentrators", status_code=status.HTTP_201_CREATED)
async def register_concentrator(body: ConcentratorCreate, session: SessionDep, principal: Admin) -> ConcentratorCreated:
    concentrator, token = await service.register_concentrator(session, code=body.code, description=body.description)
    return ConcentratorCreated(id=concentrator.id, code=concentrator.code, token=token)


@router.get("/v1/telemetry-quarantine")
async def list_quarantine(
    session: SessionDep, principal: Staff, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[QuarantinePublic]:
    """Reports kept aside (unknown device or product, a device reporting through a source it
    is not bound to), newest first."""
    rows, next_cursor = await service.list_quarantine(session, limit=limit, cursor=cursor)
    return Page(data=[QuarantinePublic.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor)


class ReadingPublic(BaseModel):
    read_at: datetime
    received_at: datetime
    digest: str = Field(description="Content hash: a retransmission has the same one.")
    volume_m3: float | None
    lel_pct: float | None
    valve: str | None
    battery_low: bool | None
    alarm: bool | None
    tamper: bool | None


class CommandPublic(BaseModel):
    id: uuid.UUID
    device_id: uuid.UUID
    external_id: str
    command: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    replied_at: datetime | None


class EvidencePublic(BaseModel):
    fault_id: uuid.UUID
    device_id: uuid.UUID
    external_id: str
    fault_kind: str
    occurrences: int
    notes: list[dict[str, Any]]
    opened_at: datetime


@router.get("/v1/devices/{device_id}/readings")
async def device_readings(
    device_id: uuid.UUID, session: SessionDep, principal: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ReadingPublic]:
    """The device's stored readings, newest first."""
    await service.get_device(session, device_id)
    rows, next_cursor = await service.device_readings(session, device_id, limit=limit, cursor=cursor)
    return Page(data=[ReadingPublic(**{**r.model_dump(), "digest": f"{r.digest & (2**64 - 1):016x}"}) for r in rows],
                next_cursor=next_cursor)


class FramePublic(BaseModel):
    received_at: datetime
    read_at: datetime | None
    raw: str | None = Field(description="The frame as hex, or the platform message as JSON.")
    outcome: str = Field(description="stored, or quarantined: <reason>")
    source: str | None


@router.get("/v1/devices/{device_id}/frames")
async def device_frames(
    device_id: uuid.UUID, session: SessionDep, principal: Admin, limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[FramePublic]:
    """The last frames (or platform reports) of this device, newest first: those stored as
    readings and those quarantined under its id, with the reason."""
    device = await service.get_device(session, device_id)
    frames = await ingest.last_frames(session, device.id, device.external_id, limit=limit)
    return Page(data=[FramePublic(**f) for f in frames])


@router.get("/v1/valve-commands")
async def list_valve_commands(
    session: SessionDep, principal: Admin,
    status: Annotated[Literal["queued", "sent", "acknowledged", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[CommandPublic]:
    """Valve commands, newest first; `failed` are those the platform refused or that ran out
    of delivery attempts."""
    rows = await service.list_commands(session, status=status, limit=limit)
    return Page(data=[CommandPublic(**c.model_dump(), external_id=external_id) for c, external_id in rows])


@router.get("/v1/orders/{order_id}/meter-evidence")
async def order_evidence(order_id: uuid.UUID, session: SessionDep, principal: Staff) -> Page[EvidencePublic]:
    """Every device alarm or fault attached to the order (one emergency per home)."""
    rows = await service.order_evidence(session, order_id)
    return Page(data=[EvidencePublic(fault_id=f.id, device_id=f.device_id, external_id=external_id,
                                     fault_kind=f.fault_kind, occurrences=f.occurrences, notes=f.notes,
                                     opened_at=f.opened_at) for f, external_id in rows])
