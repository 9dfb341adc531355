"""CJ/T 188 (2004 and 2018 link framing): `FE.. 68 T A0..A6 C L DI SER data CS 16`.

Vendor deviations seen in the field are settings of a `VendorProfile`, not code paths.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from meters.protocols import FrameError

START, STOP, PREAMBLE = 0x68, 0x16, 0xFE
HEADER_LEN = 11  # 68 T A0..A6 C L

READ_DATA, READ_ADDRESS, WRITE_DATA = 0x01, 0x03, 0x04
DI_READ_DATA, DI_READ_ADDRESS, DI_VALVE = 0x901F, 0x810A, 0xA017
VALVE_OPEN, VALVE_CLOSE = 0x55, 0x99
BROADCAST_TYPE, BROADCAST_ADDRESS = 0xAA, "AAAAAAAAAAAAAA"

_DIRECTION_BIT, _EXCEPTION_BIT, _FUNCTION_MASK = 0x80, 0x40, 0x3F
# Unit code -> m3 per unit; volumes carry 2 implied decimals on top of this.
_UNIT_M3 = {
    0x29: Decimal("0.001"),
    0x2A: Decimal("0.01"),
    0x2B: Decimal("0.1"),
    0x2C: Decimal(1),
    0x2D: Decimal(10),
    0x2E: Decimal(100),
}
_VALVE = {0b00: "open", 0b01: "closed", 0b10: "abnormal", 0b11: "abnormal"}
_READ_REPLY_LEN = 19  # volume 4+1, settlement 4+1, clock 7, status 2
_READ_REPLY_FRAME_LEN = HEADER_LEN + 3 + _READ_REPLY_LEN + 2
_READ_DI_BYTES = (b"\x1f\x90", b"\x90\x1f")
# Unit code -> divisor of the BCD count (2 implied decimals included); int / int is
# correctly rounded, so this equals float(Decimal(count) / 100 * _UNIT_M3[unit]).
_UNIT_DIVISOR = {0x29: 100_000, 0x2A: 10_000, 0x2B: 1_000, 0x2C: 100, 0x2D: 10, 0x2E: 1}
_NO_CLOCK = bytes(7)
# Meters of one concentrator report at the same few instants: a parsed stamp is reused (as
# the same object, whose hash and conversions callers may cache in turn).
_CLOCKS: dict[bytes, datetime | None] = {}
_CLOCKS_KEPT = 4096
_UNSEEN = object()
# Packed BCD byte -> 0..99; a byte that is not BCD is so negative that any sum with it is.
_BCD_BYTE = tuple((b >> 4) * 10 + (b & 0x0F) if b >> 4 <= 9 and b & 0x0F <= 9 else -10**9 for b in range(256))


@dataclass(frozen=True)
class VendorProfile:
    """Per-vendor quirks. The defaults follow the standard text."""

    # Encode DI low byte first (`1F 90`) or high byte first (`90 1F`); decoding accepts both.
    di_order: Literal["low_first", "high_first"] = "low_first"
    # `reversed` = ss mm hh DD MM YY CC; `auto` tries reversed, then forward.
    clock_order: Literal["auto", "reversed", "forward"] = "auto"
    # Which ST byte holds valve/battery, and where the 2 valve bits and the battery bit sit.
    status_byte: int = 0
    valve_shift: int = 0
    battery_bit: int = 2
    # Some NB-IoT stacks sum the data field only instead of 68..last data byte.
    checksum: Literal["frame", "data"] = "frame"
    write_control: int = WRITE_DATA
    preamble: int = 2


STANDARD = VendorProfile()


@dataclass(frozen=True)
class CJT188Frame:
    meter_type: int
    address: str  # A6..A0, as printed on the meter's label
    control: int
    di: str | None
    ser: int | None
    data: bytes  # the part after DI and SER
    current_volume_m3: float | None = None
    settlement_volume_m3: float | None = None
    clock: datetime | None = None
    valve: str | None = None
    battery_low: bool | None = None
    valve_command: Literal["open", "close"] | None = None

    @property
    def direction(self) -> Literal["request", "reply"]:
        return "reply" if self.control & _DIRECTION_BIT else "request"

    @property
    def exception(self) -> bool:
        return bool(self.control & _EXCEPTION_BIT)

    @property
    def function(self) -> int:
        return self.control & _FUNCTION_MASK

    @property
    def meter_kind(self) -> str:
        return meter_kind(self.meter_type)


def meter_kind(meter_type: int) -> str:
    if 0x30 <= meter_type <= 0x39:
        return "gas"
    if 0x10 <= meter_type <= 0x13:
        return "water"
    if 0x20 <= meter_type <= 0x22:
        return "heat"
    if meter_type == BROADCAST_TYPE:
        return "broadcast"
    return "other"


def frame_span(data: bytes, start: int) -> int | None:
    """Length of the frame whose `68` is at `start`, or None while the header is incomplete."""
    if len(data) - start < HEADER_LEN:
        return None
    return HEADER_LEN + data[start + 10] + 2


def decode(data: bytes, profile: VendorProfile = STANDARD) -> CJT188Frame:
    i = 0
    while i < len(data) and data[i] == PREAMBLE:
        i += 1
    if i == len(data):
        raise FrameError("truncated")
    if data[i] != START:
        raise FrameError("unknown start")
    span = frame_span(data, i)
    if span is None or len(data) - i < span:
        raise FrameError("truncated")
    if len(data) - i > span:
        raise FrameError("bad length")
    frame = data[i:]
    if frame[-1] != STOP:
        raise FrameError("bad stop byte")
    payload = frame[HEADER_LEN:-2]
    summed = payload if profile.checksum == "data" else frame[:-2]
    if sum(summed) & 0xFF != frame[-2]:
        raise FrameError("bad checksum")

    meter_type, control = frame[1], frame[9]
    address = frame[8:1:-1].hex().upper()
    if control & _EXCEPTION_BIT:
        # Exception replies carry SER and the status word, no DI.
        if len(payload) != 3:
            raise FrameError("bad length")
        valve, battery = _status(payload[1:3], profile)
        return CJT188Frame(meter_type, address, control, None, payload[0], b"", valve=valve, battery_low=battery)
    if len(payload) < 3:
        if payload:
            raise FrameError("bad length")
        return CJT188Frame(meter_type, address, control, None, None, b"")

    di = _logical_di(payload[0], payload[1], profile)
    ser, body = payload[2], bytes(payload[3:])
    base = CJT188Frame(meter_type, address, control, f"{di:04X}", ser, body)
    is_reply = bool(control & _DIRECTION_BIT)
    if di == DI_READ_DATA and is_reply:
        return _read_reply(base, body, profile)
    if di == DI_VALVE and is_reply:
        if len(body) != 2:
            raise FrameError("bad length")
        valve, battery = _status(body, profile)
        return replace(base, valve=valve, battery_low=battery)
    if di == DI_VALVE:
        if len(body) != 1:
            raise FrameError("bad length")
        command = {VALVE_OPEN: "open", VALVE_CLOSE: "close"}.get(body[0])
        if command is None:
            raise FrameError("bad valve command")
        return replace(base, valve_command=command)
    return base


def read_reply(
    frame: bytes, profile: VendorProfile = STANDARD,
) -> tuple[str, float, datetime | None, str, bool] | None:
    """(address, current volume m3, clock, valve, battery low) of a well-formed 901F read
    reply, preamble stripped; None for anything else, which `decode` then handles.

    The ingestion hot path: the same values as `decode` without building a frame object.
    """
    if (
        len(frame) != _READ_REPLY_FRAME_LEN
        or frame[0] != START
        or frame[9] & (_DIRECTION_BIT | _EXCEPTION_BIT) != _DIRECTION_BIT
        or frame[11:13] not in _READ_DI_BYTES
        or frame[-1] != STOP
        or frame[10] != 3 + _READ_REPLY_LEN
    ):
        return None
    summed = frame[HEADER_LEN:-2] if profile.checksum == "data" else frame[:-2]
    divisor = _UNIT_DIVISOR.get(frame[18])
    bcd = _BCD_BYTE
    count = bcd[frame[14]] + 100 * bcd[frame[15]] + 10_000 * bcd[frame[16]] + 1_000_000 * bcd[frame[17]]
    if (sum(summed) & 0xFF != frame[-2] or divisor is None or count < 0
            # `decode` rejects a bad settlement volume too
            or frame[23] not in _UNIT_DIVISOR
            or bcd[frame[19]] + bcd[frame[20]] + bcd[frame[21]] + bcd[frame[22]] < 0):
        return None
    stamp = bytes(frame[24:31])  # hashable even when a bytearray came in
    if stamp == _NO_CLOCK:
        clock = None
    elif profile.clock_order == "forward":
        return None
    else:
        clock = _CLOCKS.get(stamp, _UNSEEN)
        if clock is _UNSEEN:
            clock = _reversed_clock(stamp)
            if len(_CLOCKS) >= _CLOCKS_KEPT:
                _CLOCKS.clear()
            _CLOCKS[stamp] = clock
        if clock is None:
            return None
    valve, battery = _STANDARD_STATUS[frame[31]] if profile is STANDARD else _status(frame[31:33], profile)
    return frame[8:1:-1].hex().upper(), count / divisor, clock, valve, battery


def _reversed_clock(stamp: bytes) -> datetime | None:
    """The clock of a `ss mm hh DD MM YY CC` stamp, or None when it is not a valid time."""
    digits = stamp[::-1].hex()  # CC YY MM DD hh mm ss
    if not digits.isdigit() or digits[:2] not in ("19", "20"):
        return None
    try:
        return datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]),
                        int(digits[8:10]), int(digits[10:12]), int(digits[12:]))
    except ValueError:
        return None


def _logical_di(first: int, second: int, profile: VendorProfile) -> int:
    # DI1 (0x90, 0x81, 0xA0, ...) has its top bit set and DI0 (0x1F, 0x0A, 0x17, ...) does not,
    # so the wire order shows itself; the profile decides only when both look alike.
    if first & 0x80 and not second & 0x80:
        return first << 8 | second
    if second & 0x80 and not first & 0x80:
        return second << 8 | first
    if profile.di_order == "high_first":
        return first << 8 | second
    return second << 8 | first


def _read_reply(base: CJT188Frame, body: bytes, profile: VendorProfile) -> CJT188Frame:
    if len(body) != _READ_REPLY_LEN:
        raise FrameError("bad length")
    valve, battery = _status(body[17:19], profile)
    return replace(
        base,
        current_volume_m3=_volume(body[0:4], body[4]),
        settlement_volume_m3=_volume(body[5:9], body[9]),
        clock=_clock(body[10:17], profile),
        valve=valve,
        battery_low=battery,
    )


def _bcd(raw: bytes) -> int:
    """Low byte first packed BCD."""
    value = 0
    for byte in reversed(raw):
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            raise FrameError("bad bcd")
        value = value * 100 + hi * 10 + lo
    return value


def _volume(raw: bytes, unit: int) -> float:
    per_unit = _UNIT_M3.get(unit)
    if per_unit is None:
        raise FrameError("bad unit")
    return float(Decimal(_bcd(raw)) / 100 * per_unit)


def _clock(raw: bytes, profile: VendorProfile) -> datetime | None:
    if not any(raw):
        return None
    orders = ("reversed", "forward") if profile.clock_order == "auto" else (profile.clock_order,)
    for order in orders:
        try:
            digits = [_bcd(bytes([b])) for b in (raw if order == "reversed" else reversed(raw))]
        except FrameError:
            return None
        ss, mm, hh, day, month, yy, cc = digits
        # Bounding the century keeps `20 16 07 15 ...` from reading as the year 5959.
        if cc not in (19, 20):
            continue
        try:
            return datetime(cc * 100 + yy, month, day, hh, mm, ss)
        except ValueError:
            continue
    return None


def _status(st: bytes, profile: VendorProfile) -> tuple[str, bool]:
    byte = st[profile.status_byte]
    return _VALVE[(byte >> profile.valve_shift) & 0b11], bool(byte >> profile.battery_bit & 1)


# ST0 -> (valve, battery low) under the standard profile.
_STANDARD_STATUS = tuple(_status(bytes([b, 0]), STANDARD) for b in range(256))


def encode(
    *,
    meter_type: int,
    address: str,
    control: int,
    di: int,
    ser: int = 0,
    data: bytes = b"",
    profile: VendorProfile = STANDARD,
) -> bytes:
    if len(address) != 14:
        raise ValueError("address must be 14 hex digits (A6..A0)")
    di_bytes = di.to_bytes(2, "little" if profile.di_order == "low_first" else "big")
    payload = di_bytes + bytes([ser]) + data
    frame = bytes([START, meter_type]) + bytes.fromhex(address)[::-1] + bytes([control, len(payload)]) + payload
    checksum = sum(payload if profile.checksum == "data" else frame) & 0xFF
    return bytes([PREAMBLE] * profile.preamble) + frame + bytes([checksum, STOP])


def read_data_request(address: str, *, meter_type: int = 0x30, ser: int = 0, profile: VendorProfile = STANDARD) -> bytes:
    return encode(meter_type=meter_type, address=address, control=READ_DATA, di=DI_READ_DATA, ser=ser, profile=profile)


def read_address_request(*, meter_type: int = BROADCAST_TYPE, ser: int = 0, profile: VendorProfile = STANDARD) -> bytes:
    return encode(
        meter_type=meter_type, address=BROADCAST_ADDRESS, control=READ_ADDRESS, di=DI_READ_ADDRESS, ser=ser, profile=profile
    )


def valve_request(
    address: str, *, open_valve: bool, meter_type: int = 0x30, ser: int = 0, profile: VendorProfile = STANDARD
) -> bytes:
    return encode(
        meter_type=meter_type,
        address=address,
        control=profile.write_control,
        di=DI_VALVE,
        ser=ser,
        data=bytes([VALVE_OPEN if open_valve else VALVE_CLOSE]),
        profile=profile,
    )
