"""One entry point from raw bytes to the shared JSON contract (tests/meters/data/README.md)."""

from collections.abc import Mapping
from typing import Any, Literal

from meters.protocols import FrameError, cjt188, mbus

Protocol = Literal["cjt188", "mbus", "auto"]


def detect(data: bytes) -> Literal["cjt188", "mbus"]:
    """Tell the protocols apart by framing alone."""
    if not data:
        raise FrameError("truncated")
    first = data[0]
    if first == cjt188.PREAMBLE:
        return "cjt188"
    if first == mbus.LONG_START:
        is_mbus_long = len(data) >= 4 and data[3] == mbus.LONG_START and data[1] == data[2]
        return "mbus" if is_mbus_long else "cjt188"
    if first in (mbus.SHORT_START, mbus.ACK):
        return "mbus"
    if len(data) > 1 and data[1] in mbus.WIRELESS_C_FIELDS:
        return "mbus"
    raise FrameError("unknown start")


def decode_frame(
    protocol: Protocol,
    data: bytes,
    *,
    profile: cjt188.VendorProfile = cjt188.STANDARD,
    keys: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    if protocol == "auto":
        protocol = detect(data)
    if protocol == "cjt188":
        return cjt188_json(cjt188.decode(data, profile))
    if protocol == "mbus":
        return mbus_json(mbus.decode(data, keys=keys))
    raise ValueError(f"unknown protocol {protocol!r}")


def cjt188_json(frame: cjt188.CJT188Frame) -> dict[str, Any]:
    return {
        "protocol": "cjt188",
        "meter_type": f"0x{frame.meter_type:02X}",
        "meter_kind": frame.meter_kind,
        "address": frame.address,
        "control": f"0x{frame.control:02X}",
        "direction": frame.direction,
        "exception": frame.exception,
        "di": frame.di,
        "ser": frame.ser,
        "current_volume_m3": frame.current_volume_m3,
        "settlement_volume_m3": frame.settlement_volume_m3,
        "clock": frame.clock.isoformat() if frame.clock else None,
        "valve": frame.valve,
        "battery_low": frame.battery_low,
    }


def mbus_json(reading: mbus.MBusReading) -> dict[str, Any]:
    return {
        "protocol": "mbus",
        "id": reading.id,
        "manufacturer": reading.manufacturer,
        "version": reading.version,
        "medium": reading.medium,
        "access_number": reading.access_number,
        "status": reading.status,
        "alarm": reading.alarm,
        "power_low": reading.power_low,
        "volume_m3": reading.volume_m3,
        "records": [
            {
                "quantity": r.quantity,
                "unit": r.unit,
                "value": r.value,
                "storage": r.storage,
                "tariff": r.tariff,
                "function": r.function,
            }
            for r in reading.records
        ],
    }
