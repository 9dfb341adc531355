"""Telemetry from IoT platforms (HMAC-signed webhooks) and device administration."""

import json
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert

from api.deps import Admin, RedisDep, SessionDep, Staff
from dispatch.config import get_settings
from dispatch.schemas import Page
from meters import ingest, nbiot, service
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
    concentrator_id: uuid.UUID | None = None


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
    status: Literal["stored", "duplicate", "quarantined", "ignored"]
    order_ids: list[uuid.UUID] = Field(default_factory=list)


def _device(device: Any, latest: dict[str, Any] | None = None) -> DevicePublic:
    return DevicePublic(**{k: getattr(device, k) for k in DevicePublic.model_fields if k != "latest"}, latest=latest)


@router.post("/v1/telemetry/{platform}", responses={401: {}, 404: {}, 409: {"description": "replayed message"}})
async def receive_telemetry(
    platform: Annotated[str, Path(max_length=32)], request: Request, session: SessionDep, redis: RedisDep,
    x_timestamp: Annotated[str | None, Header(max_length=20)] = None,
    x_signature: Annotated[str | None, Header(max_length=128)] = None,
    x_message_id: Annotated[str | None, Header(max_length=128)] = None,
) -> TelemetryAccepted:
    """A platform push. Authenticated by HMAC-SHA256 (see meters/nbiot.py), not by a bearer token."""
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
        if not x_message_id:
            raise nbiot.WebhookSignatureInvalid("X-Message-Id is required")
    except nbiot.WebhookSignatureInvalid:
        ingest.REJECTED.labels("webhook", "signature").inc()
        raise
    first = (await session.execute(insert(InboxMessage).values(platform=platform, message_id=x_message_id)
                                   .on_conflict_do_nothing().returning(InboxMessage.message_id))).first()
    if first is None:
        ingest.REJECTED.labels("webhook", "replayed").inc()
        raise nbiot.WebhookReplayed()
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        ingest.REJECTED.labels("webhook", "malformed").inc()
        raise nbiot.MalformedReport("the body is not JSON") from exc
    try:
        report = nbiot.map_data_report(platform, envelope, now)
    except LookupError:
        await ingest.quarantine_raw(session, channel="webhook", source=platform, reason="unknown product",
                                    raw={"envelope": envelope}, protocol="nbiot")
        return TelemetryAccepted(status="quarantined")
    except nbiot.MalformedReport:
        ingest.REJECTED.labels("webhook", "malformed").inc()
        raise
    if report is None:
        return TelemetryAccepted(status="ignored")
    result = await _ingestor.ingest(session, redis, [report], channel="webhook", source=platform, now=now)
    state = "quarantined" if result.quarantined else "stored" if result.stored else "duplicate"
    return TelemetryAccepted(status=state, order_ids=result.order_ids)


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
) -> Page[QuarantinePublic]:
    rows = await service.list_quarantine(session, limit=limit)
    return Page(data=[QuarantinePublic.model_validate(r, from_attributes=True) for r in rows])
