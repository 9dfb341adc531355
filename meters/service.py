"""Devices and concentrators: registration, lookup, concentrator authentication."""

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime

from sqlalchemy import and_, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.errors import AuthenticationFailed
from kit.errors import Conflict, InvalidInput, NotFound
from kit.events import subscribe
from kit.pagination import decode_cursor, encode_cursor, page_of, paginate
from meters.models import Concentrator, Device, Fault, Quarantine, Reading, ValveCommand


class DeviceAlreadyRegistered(Conflict):
    """A device with this address or IMEI is already registered."""

    slug = "device-already-registered"


class ConcentratorRejected(AuthenticationFailed):
    """Unknown concentrator or wrong token."""

    slug = "concentrator-rejected"


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough; argon2 would only slow reconnects.
    return hashlib.sha256(token.encode()).hexdigest()


async def register_concentrator(session: AsyncSession, *, code: str, description: str = "") -> tuple[Concentrator, str]:
    """Returns the concentrator and its token; the token is shown once and stored hashed."""
    token = secrets.token_urlsafe(32)
    concentrator = Concentrator(code=code, token_hash=hash_token(token), description=description)
    session.add(concentrator)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("a concentrator with this code exists") from exc
    return concentrator, token


async def authenticate_concentrator(session: AsyncSession, code: str, token: str) -> Concentrator:
    concentrator = (await session.exec(select(Concentrator).where(Concentrator.code == code))).first()
    expected = concentrator.token_hash if concentrator else hash_token(secrets.token_urlsafe(32))
    if not hmac.compare_digest(expected, hash_token(token)) or concentrator is None:
        raise ConcentratorRejected()
    return concentrator


async def register_device(
    session: AsyncSession, *, kind: str, protocol: str, external_id: str, customer_id: uuid.UUID,
    address_id: uuid.UUID, installed_at: datetime, report_interval_s: int, has_valve: bool = False,
    meter_type: int = 0x30, product: str | None = None, appliances: list[str] | None = None,
    concentrator_id: uuid.UUID | None = None, platform: str | None = None,
) -> Device:
    """A wired device is bound to its concentrator (none: legacy plain TCP only); an NB-IoT
    device to its IoT platform, which it must name."""
    from dispatch.cities import city_at  # a device is in its address's city, as an order is
    from dispatch.queries import find_address  # the address must belong to the customer

    address = await find_address(session, address_id)
    if address is None or address.customer_id != customer_id:
        raise NotFound("no such address for this customer")
    if (protocol == "nbiot") != (platform is not None) or (protocol == "nbiot" and concentrator_id is not None):
        raise InvalidInput("an NB-IoT device names its platform and no concentrator; a wired device no platform")
    if concentrator_id is not None and await session.get(Concentrator, concentrator_id) is None:
        raise NotFound("no such concentrator")
    device = Device(
        kind=kind, protocol=protocol, external_id=external_id.upper() if protocol != "nbiot" else external_id,
        customer_id=customer_id, address_id=address_id, city_id=await city_at(session, address.location),
        installed_at=installed_at, report_interval_s=report_interval_s, has_valve=has_valve, meter_type=meter_type,
        product=product, appliances=appliances or [], concentrator_id=concentrator_id, platform=platform,
    )
    session.add(device)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise DeviceAlreadyRegistered() from exc
    return device


async def get_device(session: AsyncSession, device_id: uuid.UUID) -> Device:
    device = await session.get(Device, device_id)
    if device is None:
        raise NotFound("no such device")
    return device


async def list_devices(session: AsyncSession, *, limit: int, cursor: str | None) -> tuple[list[Device], str | None]:
    rows = list((await session.exec(paginate(select(Device), Device, limit, cursor))).all())
    return page_of(rows, limit)


async def list_quarantine(
    session: AsyncSession, *, limit: int, cursor: str | None = None,
) -> tuple[list[Quarantine], str | None]:
    """Newest first; the cursor carries the last id seen."""
    query = select(Quarantine)
    if cursor:
        query = query.where(Quarantine.id < _int_key(cursor))
    rows = list((await session.exec(query.order_by(Quarantine.id.desc()).limit(limit + 1))).all())
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].received_at, rows[limit - 1].id)
    return rows, None


async def device_readings(
    session: AsyncSession, device_id: uuid.UUID, *, limit: int, cursor: str | None,
) -> tuple[list[Reading], str | None]:
    """A device's readings, newest first, by (read_at, digest)."""
    query = select(Reading).where(Reading.device_id == device_id)
    if cursor:
        read_at, _ = decode_cursor(cursor)
        key = _int_key(cursor)
        query = query.where(or_(Reading.read_at < read_at, and_(Reading.read_at == read_at, Reading.digest < key)))
    rows = list((await session.exec(
        query.order_by(Reading.read_at.desc(), Reading.digest.desc()).limit(limit + 1))).all())
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].read_at, rows[limit - 1].digest)
    return rows, None


async def list_commands(
    session: AsyncSession, *, status: str | None, limit: int,
) -> list[tuple[ValveCommand, str]]:
    """Valve commands with their device's external id, newest first; `failed` ones gave up."""
    query = select(ValveCommand, Device.external_id).join(Device, Device.id == ValveCommand.device_id)
    if status is not None:
        query = query.where(ValveCommand.status == status)
    rows = (await session.exec(query.order_by(ValveCommand.created_at.desc()).limit(limit))).all()
    return [(command, external_id) for command, external_id in rows]


async def order_evidence(session: AsyncSession, order_id: uuid.UUID) -> list[tuple[Fault, str]]:
    """Every device fault attached to an order (one emergency per home), with the device id."""
    rows = (await session.exec(select(Fault, Device.external_id).join(Device, Device.id == Fault.device_id)
                               .where(Fault.order_id == order_id).order_by(Fault.opened_at))).all()
    return [(fault, external_id) for fault, external_id in rows]


def _int_key(cursor: str) -> int:
    _, key = decode_cursor(cursor)
    try:
        return int(key)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("malformed cursor") from exc


def register() -> None:
    """The meters package's reactions to other packages' events."""
    from meters import reminders, rules

    subscribe("dispatch.order_status_changed", rules.on_order_status_changed)
    subscribe("dispatch.order_status_changed", reminders.on_order_status_changed)
