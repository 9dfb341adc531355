"""M-Bus (EN 13757-2/-3) wired long frames and wireless (EN 13757-4) telegrams.

pyMeterBus (0.8.5) splits the data records (DIF/DIFE/VIF/VIFE) and looks up VIF units.
What it gets wrong or lacks is done here instead:
- link layer: it checks the checksum only after parsing, and has no error reasons to match on;
- CI 0x70 application errors: read as a control frame or "not a variable data long frame";
- CI 0x73 fixed-structure frames: rejected;
- date/time: a 6-byte type I date (DIF x6, VIF 6D) is read as type F (LGB G350: 2008-06-08
  instead of 2016-07-22), and the invalid bit of type F is ignored (a "not set" clock reads as
  a real date); day or month 0 gives "2000-00-00";
- values: scaled by a binary float (6842.7840000000005602...), so they are rounded here;
- FD 74 (remaining battery, days) is "reserved" in its VIF table;
- wireless: a key is looked up under a different type than it is stored, so without a match
  the ciphertext is parsed as records (garbage, no error); headers and AES mode 5 are done
  here with pycryptodome.
No pyMeterBus type leaves this module.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Literal

import logging

from Crypto.Cipher import AES

# pyMeterBus calls logging.basicConfig(level=INFO) when imported (meterbus/serial.py); the
# application owns its logging, so the root logger is put back as it was.
_root = logging.getLogger()
_root_level, _root_handlers = _root.level, list(_root.handlers)
import meterbus  # noqa: E402
from meterbus.core_objects import DataEncoding, FunctionType, MeasureUnit  # noqa: E402

_root.setLevel(_root_level)
_root.handlers[:] = _root_handlers

from meters.protocols import FrameError

LONG_START, SHORT_START, STOP, ACK = 0x68, 0x10, 0x16, 0xE5
CI_VARIABLE, CI_FIXED, CI_APPLICATION_ERROR = 0x72, 0x73, 0x70
CI_WIRELESS_SHORT_TPL, CI_WIRELESS_LONG_TPL = 0x7A, 0x72
WIRELESS_C_FIELDS = frozenset({0x44, 0x46, 0x08})
IDLE_FILLER = 0x2F

MEDIUM = {
    0x00: "other",
    0x01: "oil",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat_outlet",
    0x05: "steam",
    0x06: "warm_water",
    0x07: "water",
    0x08: "heat_cost_allocator",
    0x09: "compressed_air",
    0x0A: "cooling_outlet",
    0x0B: "cooling_inlet",
    0x0C: "heat_inlet",
    0x0D: "heat_cooling",
    0x0E: "bus_system",
    0x0F: "unknown",
    0x15: "hot_water",
    0x16: "cold_water",
    0x17: "dual_water",
    0x18: "pressure",
    0x19: "ad_converter",
    0x1A: "smoke_detector",
    0x1B: "room_sensor",
    0x1C: "gas_detector",
    0x20: "breaker",
    0x21: "valve",
    0x25: "customer_unit",
    0x28: "waste_water",
    0x29: "garbage",
    0x2A: "carbon_dioxide",
    0x31: "communication_controller",
    0x32: "unidirectional_repeater",
    0x33: "bidirectional_repeater",
    0x36: "radio_converter_system",
    0x37: "radio_converter_meter",
}
APPLICATION_ERRORS = {
    0x00: "unspecified",
    0x01: "unimplemented ci",
    0x02: "buffer too long",
    0x03: "too many records",
    0x04: "premature end of record",
    0x05: "too many difes",
    0x06: "too many vifes",
    0x08: "busy",
    0x09: "too many readouts",
}
_FUNCTION = {
    FunctionType.INSTANTANEOUS_VALUE: "instantaneous",
    FunctionType.MAXIMUM_VALUE: "maximum",
    FunctionType.MINIMUM_VALUE: "minimum",
    FunctionType.ERROR_STATE_VALUE: "error",
    FunctionType.SPECIAL_FUNCTION: "manufacturer_specific",
    FunctionType.MORE_RECORDS_FOLLOW: "more_records_follow",
}
# pyMeterBus unit -> (our unit, factor to it)
_UNIT = {
    MeasureUnit.M3: ("m3", 1),
    MeasureUnit.L: ("m3", Decimal("0.001")),
    MeasureUnit.M3_H: ("m3/h", 1),
    MeasureUnit.M3_MIN: ("m3/h", 60),
    MeasureUnit.M3_S: ("m3/h", 3600),
    MeasureUnit.WH: ("Wh", 1),
    MeasureUnit.KWH: ("Wh", 1000),
    MeasureUnit.SECONDS: ("s", 1),
    MeasureUnit.MINUTES: ("s", 60),
    MeasureUnit.HOURS: ("s", 3600),
    MeasureUnit.DAYS: ("s", 86400),
    MeasureUnit.NONE: ("", 1),
}
_QUANTITY = {
    "energy_wh": "energy",
    "energy_j": "energy",
    "power_w": "power",
    "power_j_h": "power",
    "date_time_general": "date_time",
    "volume_flow_ext": "volume_flow",
    "volume_flow_ext_s": "volume_flow",
}
_DATE_UNITS = (MeasureUnit.DATE, MeasureUnit.DATE_TIME, MeasureUnit.DATE_TIME_S)
# Fixed-structure (CI 0x73) counter units that are volumes, in m3 per count.
_FIXED_VOLUME_UNIT = {
    0x29: Decimal("0.001"),
    0x2A: Decimal("0.01"),
    0x2B: Decimal("0.1"),
    0x2C: Decimal(1),
    0x2D: Decimal(10),
    0x2E: Decimal(100),
}
_FIXED_HISTORIC_UNIT = 0x3E  # "same unit as counter 1, historic value"
# FD 74 (remaining battery lifetime, days) is "reserved" in pyMeterBus's table.
_REMAINING_BATTERY_VIF = [0xFD, 0x74]
_LSB_FIRST = SimpleNamespace(bodyHeader=SimpleNamespace(isLSBOrder=True))


@dataclass(frozen=True)
class MBusRecord:
    quantity: str
    unit: str
    value: float | int | str | None
    storage: int
    tariff: int
    device: int
    function: str


@dataclass(frozen=True)
class MBusReading:
    id: str
    manufacturer: str | None
    version: int | None
    medium_code: int
    access_number: int
    status: int
    records: tuple[MBusRecord, ...]
    transport: Literal["wired", "wireless"] = "wired"

    @property
    def medium(self) -> str:
        return MEDIUM.get(self.medium_code, "reserved")

    # EN 13757-3 status byte: bits 0-1 application state (11 = abnormal/alarm), then
    # power low, permanent error, temporary error.
    @property
    def alarm(self) -> bool:
        return self.status & 0b11 == 0b11

    @property
    def power_low(self) -> bool:
        return bool(self.status & 0x04)

    @property
    def permanent_error(self) -> bool:
        return bool(self.status & 0x08)

    @property
    def temporary_error(self) -> bool:
        return bool(self.status & 0x10)

    @property
    def volume_m3(self) -> float | None:
        volumes = [
            r for r in self.records if r.quantity == "volume" and r.function == "instantaneous" and r.unit == "m3"
        ]
        if not volumes:
            return None
        return min(volumes, key=lambda r: (r.storage, r.device, r.tariff)).value


def long_frame_span(data: bytes, start: int) -> int | None:
    """Length of the long frame at `start` (`68 L L 68`), or None while its header is incomplete."""
    if len(data) - start < 4:
        return None
    return data[start + 1] + 6


def decode(data: bytes, *, keys: Mapping[str, bytes] | None = None) -> MBusReading:
    if not data:
        raise FrameError("truncated")
    if data[0] == LONG_START:
        return _decode_long(data)
    if data[0] in (SHORT_START, ACK):
        raise FrameError("no user data")
    if len(data) > 1 and data[1] in WIRELESS_C_FIELDS:
        return _decode_wireless(data, keys or {})
    raise FrameError("unknown start")


def _decode_long(data: bytes) -> MBusReading:
    if len(data) < 4:
        raise FrameError("truncated")
    if data[3] != LONG_START:
        raise FrameError("unknown start")
    length = data[1]
    if data[2] != length:
        raise FrameError("bad length")
    if len(data) < length + 6:
        raise FrameError("truncated")
    if len(data) > length + 6:
        raise FrameError("bad length")
    if data[-1] != STOP:
        raise FrameError("bad stop byte")
    if sum(data[4:-2]) & 0xFF != data[-2]:
        raise FrameError("bad checksum")
    if length < 3:
        raise FrameError("bad length")
    ci, body = data[6], data[7:-2]
    if ci == CI_APPLICATION_ERROR:
        code = body[0] if body else 0
        raise FrameError(f"application error: {APPLICATION_ERRORS.get(code, f'0x{code:02X}')}")
    if ci == CI_FIXED:
        return _decode_fixed(body)
    if ci != CI_VARIABLE:
        raise FrameError(f"unsupported ci 0x{ci:02X}")
    if len(body) < 12:
        raise FrameError("truncated")
    return MBusReading(
        id=_bcd_id(body[0:4]),
        manufacturer=_manufacturer(body[4:6]),
        version=body[6],
        medium_code=body[7],
        access_number=body[8],
        status=body[9],
        records=_records(body[12:]),
    )


def _decode_wireless(data: bytes, keys: Mapping[str, bytes]) -> MBusReading:
    if len(data) < data[0] + 1:
        raise FrameError("truncated")
    if len(data) > data[0] + 1:
        raise FrameError("bad length")
    if len(data) < 11:
        raise FrameError("truncated")
    ci, rest = data[10], data[11:]
    if ci == CI_WIRELESS_SHORT_TPL and len(rest) >= 4:
        manufacturer, address = data[2:4], data[4:10]
        access, status, config, records = rest[0], rest[1], rest[2] | rest[3] << 8, rest[4:]
    elif ci == CI_WIRELESS_LONG_TPL and len(rest) >= 12:
        # The long TPL names the meter; the link-layer address is the radio module's.
        manufacturer, address = rest[4:6], rest[0:4] + rest[6:8]
        access, status, config, records = rest[8], rest[9], rest[10] | rest[11] << 8, rest[12:]
    elif ci in (CI_WIRELESS_SHORT_TPL, CI_WIRELESS_LONG_TPL):
        raise FrameError("truncated")
    else:
        raise FrameError(f"unsupported ci 0x{ci:02X}")
    meter_id = _bcd_id(address[0:4])
    mode = config >> 8 & 0x1F
    # Gateways often forward telegrams already decrypted: the 2F 2F check bytes are in clear.
    if mode == 5 and records[:2] != bytes([IDLE_FILLER, IDLE_FILLER]):
        key = keys.get(meter_id)
        if key is None:
            raise FrameError("encrypted, no key")
        records = _decrypt_mode5(records, config, key, manufacturer + address, access)
    elif mode not in (0, 5):
        raise FrameError(f"unsupported security mode {mode}")
    return MBusReading(
        id=meter_id,
        manufacturer=_manufacturer(manufacturer),
        version=address[4],
        medium_code=address[5],
        access_number=access,
        status=status,
        records=_records(records, wireless=True),
        transport="wireless",
    )


def _decrypt_mode5(records: bytes, config: int, key: bytes, header: bytes, access: int) -> bytes:
    encrypted = (config >> 4 & 0x0F) * 16
    if encrypted > len(records):
        raise FrameError("truncated")
    iv = header + bytes([access]) * 8
    plain = AES.new(key, AES.MODE_CBC, iv).decrypt(records[:encrypted])
    if plain[:2] != bytes([IDLE_FILLER, IDLE_FILLER]):
        raise FrameError("decryption failed")
    return plain + records[encrypted:]


def _decode_fixed(body: bytes) -> MBusReading:
    if len(body) != 16:
        raise FrameError("bad length")
    status, units = body[5], body[6:8]
    medium = (units[0] >> 6) | (units[1] >> 6) << 2
    binary = bool(status & 0x80)
    counters = [int.from_bytes(body[8:12], "little"), int.from_bytes(body[12:16], "little")]
    if not binary:
        counters = [int(_bcd_id(body[8:12])), int(_bcd_id(body[12:16]))]
    first = _fixed_record(counters[0], units[0] & 0x3F, storage=0)
    second_unit = units[0] & 0x3F if units[1] & 0x3F == _FIXED_HISTORIC_UNIT else units[1] & 0x3F
    second = _fixed_record(counters[1], second_unit, storage=1 if units[1] & 0x3F == _FIXED_HISTORIC_UNIT else 0)
    return MBusReading(
        id=_bcd_id(body[0:4]),
        manufacturer=None,
        version=None,
        medium_code=medium,
        access_number=body[4],
        status=status,
        records=(first, second),
    )


def _fixed_record(count: int, unit: int, *, storage: int) -> MBusRecord:
    per_count = _FIXED_VOLUME_UNIT.get(unit)
    if per_count is None:
        return MBusRecord(f"unit_0x{unit:02X}", "", count, storage, 0, 0, "instantaneous")
    return MBusRecord("volume", "m3", float(count * per_count), storage, 0, 0, "instantaneous")


def _bcd_id(raw: bytes) -> str:
    return raw[::-1].hex().upper()


def _manufacturer(raw: bytes) -> str:
    code = raw[0] | raw[1] << 8
    return "".join(chr((code >> shift & 0x1F) + 64) for shift in (10, 5, 0))


def _records(raw: bytes, *, wireless: bool = False) -> tuple[MBusRecord, ...]:
    payload = meterbus.TelegramBodyPayload(payload=list(raw), parent=_LSB_FIRST)
    try:
        payload.parse()
        records = payload.records
        # Radio telegrams may end in a partial record after the encrypted blocks; like
        # wmbusmeters, keep what came before it. On a wire, a cut record is a broken frame.
        if wireless and records and not _complete(records[-1]):
            records = records[:-1]
        if not all(_complete(rec) for rec in records):
            raise FrameError("bad record")
        return tuple(_record(rec) for rec in records)
    except (IndexError, KeyError, ValueError, meterbus.MBusFrameDecodeError) as exc:
        raise FrameError("bad record") from exc


def _complete(rec) -> bool:
    # pyMeterBus keeps a record whose data runs past the end, with value None.
    length, encoding = rec.dib.length_encoding
    if encoding == DataEncoding.ENCODING_VARIABLE_LENGTH or rec.dib.function_type == FunctionType.SPECIAL_FUNCTION:
        return True
    return len(rec.dataField.parts) == length


def _record(rec) -> MBusRecord:
    function = rec.dib.function_type
    storage, tariff, device = rec.dib.parse_dife()
    if function == FunctionType.SPECIAL_FUNCTION:
        return MBusRecord("manufacturer_specific", "", bytes(rec.dataField.parts).hex(" ").upper(), 0, 0, 0, _FUNCTION[function])
    if rec.vib.parts[:2] == _REMAINING_BATTERY_VIF:
        return MBusRecord("remaining_battery", "d", rec.parsed_value, storage, tariff or 0, device or 0, _FUNCTION[function])
    # _parse_vifx is pyMeterBus's only way to get the VIF type; pinned by the version we test.
    _, unit, vif_type, _ = rec._parse_vifx()
    if isinstance(unit, str):  # plain-text VIF (0x7C): the text names the quantity
        quantity, unit_name, factor = unit, "", 1
    else:
        quantity = _QUANTITY.get(vif_type.name.lower(), vif_type.name.lower())
        unit_name, factor = _UNIT.get(unit, (unit.value, 1))
    if unit in _DATE_UNITS:
        value = _date_value(bytes(rec.dataField.parts))
        unit_name = ""
    else:
        value = _number(rec.parsed_value, factor)
    return MBusRecord(quantity, unit_name, value, storage, tariff or 0, device or 0, _FUNCTION[function])


def _number(value, factor) -> float | int | str | None:
    if isinstance(value, str) or value is None:
        return value
    # pyMeterBus multiplies by a binary float (0.001 -> 6842.7840000000005...); round it off.
    scaled = Decimal(value) * Decimal(factor)
    if scaled == scaled.to_integral_value() and isinstance(value, int):
        return int(scaled)
    return round(float(scaled), 9)


def _date_value(raw: bytes) -> str | None:
    """Types G (2 bytes), F (4) and I (6) of EN 13757-3 annex A; None when marked invalid."""
    try:
        if len(raw) == 2:
            return date(_year(raw[0], raw[1]), raw[1] & 0x0F, raw[0] & 0x1F).isoformat()
        if len(raw) == 4:
            if raw[0] & 0x80:
                return None
            return datetime(
                _year(raw[2], raw[3]), raw[3] & 0x0F, raw[2] & 0x1F, raw[1] & 0x1F, raw[0] & 0x3F
            ).isoformat()
        if len(raw) == 6:
            if raw[1] & 0x80:
                return None
            return datetime(
                _year(raw[3], raw[4]), raw[4] & 0x0F, raw[3] & 0x1F, raw[2] & 0x1F, raw[1] & 0x3F, raw[0] & 0x3F
            ).isoformat()
    except ValueError:  # day or month 0: the meter's "not set"
        return None
    return None


def _year(day_byte: int, month_byte: int) -> int:
    years = (day_byte & 0xE0) >> 5 | (month_byte & 0xF0) >> 1
    return 2000 + years if years < 81 else 1900 + years
