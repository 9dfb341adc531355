"""Devices and frames for the meters tests."""

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlmodel.ext.asyncio.session import AsyncSession

from meters import service
from meters.models import Device
from meters.protocols import cjt188
from tests.factories import CustomerCtx, make_customer

# A wired M-Bus gas telegram (id 12345678, status byte at offset 16).
MBUS_GAS = bytes.fromhex("68202068 08FD72 78563412 9315 33 03 2A 00 0000 0C14 27048502 046D 32371F15 02FD17 0000 8916".replace(" ", ""))


def mbus_frame(*, alarm: bool = False, power_low: bool = False, volume_bcd: int = 2850427, address: int = 12345678) -> bytes:
    frame = bytearray(MBUS_GAS)
    frame[7:11] = int(str(address), 16).to_bytes(4, "little")
    frame[16] = (0b11 if alarm else 0) | (0b100 if power_low else 0)
    frame[21:25] = int(str(volume_bcd), 16).to_bytes(4, "little")
    frame[-2] = sum(frame[4:-2]) & 0xFF
    return bytes(frame)


def cjt188_reply(address: str, *, volume_hundredths: int = 12345, clock: datetime | None = None,
                 battery_low: bool = False, valve: int = 0) -> bytes:
    """A 901F read reply; the clock is the meter's local time (Asia/Shanghai in tests)."""
    volume = bytes.fromhex(f"{volume_hundredths:08d}")[::-1]
    clock = clock or datetime(2026, 11, 20, 8, 0, 0)
    when = bytes.fromhex(f"{clock.second:02d}{clock.minute:02d}{clock.hour:02d}{clock.day:02d}"
                         f"{clock.month:02d}{clock.year % 100:02d}{clock.year // 100:02d}")
    status = bytes([valve | (0b100 if battery_low else 0), 0])
    body = volume + b"\x2c" + volume + b"\x2c" + when + status
    return cjt188.encode(meter_type=0x30, address=address, control=0x81, di=cjt188.DI_READ_DATA, data=body)


async def make_device(
    session: AsyncSession, *, kind: str = "meter", protocol: str = "cjt188", external_id: str = "00000000000001",
    customer: CustomerCtx | None = None, has_valve: bool = False, interval_s: int = 3600,
    installed_at: datetime | None = None, appliances: list[str] | None = None,
    concentrator_id: uuid.UUID | None = None, address_id: uuid.UUID | None = None,
) -> tuple[Device, CustomerCtx]:
    """NB-IoT devices are registered under the "ctwing" platform."""
    customer = customer or await make_customer(session)
    device = await service.register_device(
        session, kind=kind, protocol=protocol, external_id=external_id, customer_id=customer.customer.id,
        address_id=address_id or customer.address.id,
        installed_at=installed_at or datetime.now(timezone.utc) - timedelta(days=30),
        report_interval_s=interval_s, has_valve=has_valve, appliances=appliances, concentrator_id=concentrator_id,
        platform="ctwing" if protocol == "nbiot" else None)
    return device, customer


async def wait_for(shared, query, expected, timeout: float = 2.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        async with shared() as s:
            value = (await s.exec(query)).scalar()
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.01)
