"""Valve commands for NB-IoT devices, through an IoT platform adapter (a port).

Concentrator commands are frames written to a TCP connection (meters/listener.py); an NB-IoT
valve is reached only through its platform's command API. `deliver_due` hands queued
platform commands to the platform's adapter, retrying with a doubling backoff up to
`meters_command_max_attempts`; a command that runs out of attempts is `failed`, logged at
warning and counted, and listed for operations. The platform's `commandResponse` push
(webhook) acknowledges it (`record_response`).

Adapters: `HttpPlatformAdapter` POSTs a signed JSON command to the URL configured for the
platform (`meters_platform_command_urls`); without one, `RecordingAdapter` keeps and logs the
command, so an install without a platform integration still shows what it would have sent.
"""

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx
import structlog
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import Settings
from meters.ingest import COMMANDS, acknowledge_command
from meters.models import Device, ValveCommand

log = structlog.get_logger(__name__)
BATCH = 100


@dataclass(frozen=True)
class PlatformCommand:
    command_id: uuid.UUID
    platform: str
    external_id: str
    product: str | None
    command: str


class CommandDeliveryFailed(Exception):
    """The adapter could not hand the command to the platform; `reason` is short."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PlatformAdapter(Protocol):
    async def send(self, command: PlatformCommand) -> None:
        """Hand the command to the platform; raise CommandDeliveryFailed if it was not taken."""


class RecordingAdapter:
    def __init__(self, keep: int = 1000) -> None:
        self.sent: deque[PlatformCommand] = deque(maxlen=keep)

    async def send(self, command: PlatformCommand) -> None:
        self.sent.append(command)
        log.warning("meters.platform_command_recorded", platform=command.platform, device=command.external_id,
                    command=command.command, command_id=str(command.command_id),
                    detail="no command URL configured for this platform")


class HttpPlatformAdapter:
    """POST {"taskId", "IMEI", "productId", "command"} signed like the platform's pushes:
    X-Timestamp and X-Signature = HMAC-SHA256 over "ts." + body with the platform's secret."""

    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0) -> None:
        self.url, self.secret, self.timeout_s = url, secret, timeout_s

    async def send(self, command: PlatformCommand) -> None:
        from meters.nbiot import sign

        body = json.dumps({"taskId": str(command.command_id), "IMEI": command.external_id,
                           "productId": command.product, "command": command.command}).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Timestamp": stamp,
                   "X-Signature": sign(self.secret, stamp, body)}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CommandDeliveryFailed(type(exc).__name__) from exc
        if response.status_code >= 300:
            raise CommandDeliveryFailed(f"HTTP {response.status_code}")


_recording = RecordingAdapter()


def adapter_for(platform: str, settings: Settings) -> PlatformAdapter:
    url = settings.meters_platform_command_urls.get(platform)
    if url is None:
        return _recording
    return HttpPlatformAdapter(url, settings.meters_webhook_secrets[platform])


async def deliver_due(
    session: AsyncSession, *, settings: Settings, now: datetime,
    adapters: dict[str, PlatformAdapter] | None = None,
) -> int:
    """Hand due platform commands to their adapters; returns how many were taken. Rows are
    locked (SKIP LOCKED) so several workers share the queue without sending one twice."""
    rows = (await session.execute(
        select(ValveCommand.id, ValveCommand.command, ValveCommand.attempts, Device.platform, Device.external_id,
               Device.product)
        .join(Device, Device.id == ValveCommand.device_id)
        .where(ValveCommand.channel == "platform", ValveCommand.status == "queued",
               ValveCommand.next_attempt_at <= now)
        .order_by(ValveCommand.next_attempt_at).limit(BATCH)
        .with_for_update(of=ValveCommand, skip_locked=True)
    )).all()
    taken = 0
    for command_id, command, attempts, platform, external_id, product in rows:
        adapter = (adapters or {}).get(platform) or adapter_for(platform, settings)
        attempts += 1
        try:
            await adapter.send(PlatformCommand(command_id, platform, external_id, product, command))
        except CommandDeliveryFailed as exc:
            await _failed_attempt(session, command_id, attempts, exc.reason, settings=settings, now=now,
                                  device=external_id)
            continue
        await session.execute(update(ValveCommand).where(ValveCommand.id == command_id).values(
            status="sent", sent_at=now, attempts=attempts, next_attempt_at=None, last_error=None))
        COMMANDS.labels("platform", "sent").inc()
        taken += 1
    return taken


async def _failed_attempt(
    session: AsyncSession, command_id: uuid.UUID, attempts: int, reason: str, *, settings: Settings,
    now: datetime, device: str,
) -> None:
    if attempts >= settings.meters_command_max_attempts:
        await session.execute(update(ValveCommand).where(ValveCommand.id == command_id).values(
            status="failed", attempts=attempts, next_attempt_at=None, last_error=reason[:200]))
        COMMANDS.labels("platform", "failed").inc()
        log.warning("meters.command_gave_up", command_id=str(command_id), device=device, attempts=attempts,
                    reason=reason)
        return
    delay = settings.meters_command_backoff_s * 2 ** (attempts - 1)
    await session.execute(update(ValveCommand).where(ValveCommand.id == command_id).values(
        attempts=attempts, next_attempt_at=now + timedelta(seconds=delay), last_error=reason[:200]))
    COMMANDS.labels("platform", "retried").inc()
    log.info("meters.command_retry", command_id=str(command_id), device=device, attempts=attempts, reason=reason,
             retry_in_s=delay)


async def record_response(
    session: AsyncSession, *, device_id: uuid.UUID, command_id: str, succeeded: bool, detail: str, at: datetime,
) -> bool:
    """The platform's answer to one of our commands: acknowledged, or failed with its reason."""
    try:
        command_uuid = uuid.UUID(command_id)
    except ValueError:
        return False
    if succeeded:
        return await acknowledge_command(session, device_id, reply_hex=None, at=at, channel="platform",
                                         command_id=command_uuid)
    failed = (await session.execute(update(ValveCommand).where(
        ValveCommand.id == command_uuid, ValveCommand.device_id == device_id,
        ValveCommand.status.in_(("sent", "queued"))).values(
        status="failed", replied_at=at, last_error=detail[:200]).returning(ValveCommand.id))).first()
    if failed is not None:
        COMMANDS.labels("platform", "failed").inc()
        log.warning("meters.command_refused_by_device", command_id=command_id, detail=detail)
    return failed is not None
