from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meters.protocols import FrameError, cjt188

READ_REPLY = bytes.fromhex(
    "68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C 31 01 22 11 05 15 20 21 84 13 16"
)
ADDRESS = "78330011223344"


def _with_checksum(frame: bytes) -> bytes:
    start = frame.index(0x68)
    return frame[:-2] + bytes([sum(frame[start:-2]) & 0xFF, 0x16])


@pytest.mark.parametrize("cut", [1, 11, len(READ_REPLY) - 1])
def test_truncated_frame_is_rejected(cut):
    with pytest.raises(FrameError, match="^truncated$"):
        cjt188.decode(READ_REPLY[:cut])


def test_only_preamble_is_truncated():
    with pytest.raises(FrameError, match="^truncated$"):
        cjt188.decode(b"\xfe\xfe")


def test_bad_stop_byte_is_rejected():
    with pytest.raises(FrameError, match="^bad stop byte$"):
        cjt188.decode(READ_REPLY[:-1] + b"\x17")


def test_bad_checksum_is_rejected():
    with pytest.raises(FrameError, match="^bad checksum$"):
        cjt188.decode(READ_REPLY[:-2] + bytes([READ_REPLY[-2] ^ 1, 0x16]))


def test_unknown_start_is_rejected():
    with pytest.raises(FrameError, match="^unknown start$"):
        cjt188.decode(b"\x69" + READ_REPLY[1:])


def test_trailing_bytes_are_a_bad_length():
    with pytest.raises(FrameError, match="^bad length$"):
        cjt188.decode(READ_REPLY + b"\x00")


def test_read_reply_with_short_data_is_a_bad_length():
    frame = bytearray(READ_REPLY[:-4] + b"\x00\x00")  # drop the status word
    frame[10] = 0x14
    with pytest.raises(FrameError, match="^bad length$"):
        cjt188.decode(_with_checksum(bytes(frame)))


def test_volume_with_non_bcd_digit_is_rejected():
    frame = bytearray(READ_REPLY)
    frame[15] = 0x7A
    with pytest.raises(FrameError, match="^bad bcd$"):
        cjt188.decode(_with_checksum(bytes(frame)))


@pytest.mark.parametrize(("unit", "m3"), [(0x29, 556.677), (0x2B, 55667.7), (0x2C, 556677.0), (0x2E, 55667700.0)])
def test_volume_unit_codes_convert_to_m3(unit, m3):
    frame = bytearray(READ_REPLY)
    frame[18] = unit
    assert cjt188.decode(_with_checksum(bytes(frame))).current_volume_m3 == m3


def test_battery_low_and_abnormal_valve_come_from_status_byte_one():
    frame = bytearray(READ_REPLY)
    frame[-4] = 0b0000_0111
    decoded = cjt188.decode(_with_checksum(bytes(frame)))
    assert (decoded.valve, decoded.battery_low) == ("abnormal", True)


def test_vendor_status_layout_is_a_profile_setting():
    frame = bytearray(READ_REPLY)
    frame[-4], frame[-3] = 0x00, 0b0000_0101  # this vendor reports in ST byte 2
    profile = cjt188.VendorProfile(status_byte=1)
    decoded = cjt188.decode(_with_checksum(bytes(frame)), profile)
    assert (decoded.valve, decoded.battery_low) == ("closed", True)


def test_clock_order_can_be_forced():
    frame = bytearray(READ_REPLY)
    frame[24:31] = bytes.fromhex("20 16 07 15 09 59 59")
    frame = _with_checksum(bytes(frame))
    assert cjt188.decode(frame, cjt188.VendorProfile(clock_order="reversed")).clock is None
    assert cjt188.decode(frame).clock.isoformat() == "2016-07-15T09:59:59"


@pytest.mark.parametrize("order", ["low_first", "high_first"])
def test_read_request_round_trips(order):
    profile = cjt188.VendorProfile(di_order=order)
    frame = cjt188.decode(cjt188.read_data_request(ADDRESS, ser=7, profile=profile), profile)
    assert (frame.address, frame.meter_kind, frame.control, frame.di, frame.ser) == (ADDRESS, "gas", 0x01, "901F", 7)
    assert frame.direction == "request"


def test_di_order_on_encode_follows_profile():
    low = cjt188.read_data_request(ADDRESS, profile=cjt188.VendorProfile(preamble=0))
    high = cjt188.read_data_request(ADDRESS, profile=cjt188.VendorProfile(preamble=0, di_order="high_first"))
    assert low[11:13] == b"\x1f\x90"
    assert high[11:13] == b"\x90\x1f"


def test_encoder_reproduces_corpus_request_byte_for_byte():
    expected = bytes.fromhex("FE FE FE 68 30 03 00 00 00 00 00 00 01 03 1F 90 FF 4D 16")
    assert cjt188.read_data_request("00000000000003", ser=0xFF, profile=cjt188.VendorProfile(preamble=3)) == expected


def test_broadcast_read_address_round_trips():
    frame = cjt188.decode(cjt188.read_address_request())
    assert (frame.meter_kind, frame.address, frame.control, frame.di) == ("broadcast", "AAAAAAAAAAAAAA", 0x03, "810A")


@pytest.mark.parametrize(("open_valve", "command"), [(True, "open"), (False, "close")])
def test_valve_request_round_trips(open_valve, command):
    frame = cjt188.decode(cjt188.valve_request(ADDRESS, open_valve=open_valve))
    assert (frame.control, frame.di, frame.valve_command) == (0x04, "A017", command)


def test_vendor_write_control_code_is_a_profile_setting():
    profile = cjt188.VendorProfile(write_control=0x2A)
    frame = cjt188.decode(cjt188.valve_request(ADDRESS, open_valve=True, profile=profile))
    assert frame.control == 0x2A


def test_unknown_valve_command_is_rejected():
    frame = bytearray(cjt188.valve_request(ADDRESS, open_valve=True))
    frame[-3] = 0x11
    with pytest.raises(FrameError, match="^bad valve command$"):
        cjt188.decode(_with_checksum(bytes(frame)))


@given(
    address=st.text(alphabet="0123456789", min_size=14, max_size=14),
    meter_type=st.integers(0, 255),
    ser=st.integers(0, 255),
    order=st.sampled_from(["low_first", "high_first"]),
    checksum=st.sampled_from(["frame", "data"]),
)
def test_any_request_round_trips(address, meter_type, ser, order, checksum):
    profile = cjt188.VendorProfile(di_order=order, checksum=checksum)
    raw = cjt188.read_data_request(address, meter_type=meter_type, ser=ser, profile=profile)
    frame = cjt188.decode(raw, profile)
    assert (frame.address, frame.meter_type, frame.ser, frame.di) == (address, meter_type, ser, "901F")


def _fast_path_agrees_with_decode(frame: bytes, profile: cjt188.VendorProfile = cjt188.STANDARD) -> bool:
    fast = cjt188.read_reply(frame, profile)
    if fast is None:
        return True  # the caller falls back to decode
    full = cjt188.decode(frame, profile)
    assert (full.direction, full.di) == ("reply", "901F")
    assert fast == (full.address, full.current_volume_m3, full.clock, full.valve, full.battery_low)
    return True


def test_read_reply_fast_path_takes_the_standard_reply():
    assert cjt188.read_reply(READ_REPLY) == (ADDRESS, 556677.0, datetime(2015, 5, 11, 22, 1, 31), "closed", False)


@given(
    body=st.binary(min_size=19, max_size=19),
    unit=st.sampled_from([0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F]),
    control=st.sampled_from([0x81, 0xC1, 0x01]),
    order=st.sampled_from(["low_first", "high_first"]),
    clock_order=st.sampled_from(["auto", "reversed", "forward"]),
    bcd=st.lists(st.integers(0, 99), min_size=11, max_size=11),
)
def test_read_reply_fast_path_agrees_with_decode(body, unit, control, order, clock_order, bcd):
    # Mostly valid BCD volumes and clocks, so the fast path is exercised, not just refused.
    digits = bytes(int(str(n), 16) for n in bcd)
    body = digits[:4] + bytes([unit]) + digits[:4] + bytes([unit]) + digits[4:11] + body[17:]
    profile = cjt188.VendorProfile(di_order=order, clock_order=clock_order)
    frame = cjt188.encode(meter_type=0x30, address=ADDRESS, control=control, di=cjt188.DI_READ_DATA, data=body,
                          profile=profile)
    assert _fast_path_agrees_with_decode(frame[profile.preamble:], profile)


@given(body=st.binary(min_size=19, max_size=19))
def test_read_reply_fast_path_agrees_with_decode_on_any_body(body):
    frame = cjt188.encode(meter_type=0x30, address=ADDRESS, control=0x81, di=cjt188.DI_READ_DATA, data=body)
    assert _fast_path_agrees_with_decode(frame[2:])
