import pytest

from meters.decode import decode_frame, detect
from meters.protocols import FrameError, mbus

# oms_frame1 from the corpus: ELS gas meter, 28504.27 m3.
OMS_GAS = bytes.fromhex(
    "68 20 20 68 08 FD 72 78 56 34 12 93 15 33 03 2A 00 00 00 0C 14 27 04 85 02 04 6D 32 37 1F 15 02 FD 17 00 00 89 16"
)


def _with_status(status: int) -> bytes:
    frame = bytearray(OMS_GAS)
    frame[16] = status
    frame[-2] = sum(frame[4:-2]) & 0xFF
    return bytes(frame)


@pytest.mark.parametrize("cut", [3, 10, len(OMS_GAS) - 1])
def test_truncated_long_frame_is_rejected(cut):
    with pytest.raises(FrameError, match="^truncated$"):
        mbus.decode(OMS_GAS[:cut])


def test_bad_stop_byte_is_rejected():
    with pytest.raises(FrameError, match="^bad stop byte$"):
        mbus.decode(OMS_GAS[:-1] + b"\x00")


def test_bad_checksum_is_rejected():
    with pytest.raises(FrameError, match="^bad checksum$"):
        mbus.decode(OMS_GAS[:-2] + bytes([OMS_GAS[-2] ^ 0xFF, 0x16]))


def test_mismatched_length_bytes_are_a_bad_length():
    with pytest.raises(FrameError, match="^bad length$"):
        mbus.decode(OMS_GAS[:2] + b"\x21" + OMS_GAS[3:])


def test_unknown_start_is_rejected():
    with pytest.raises(FrameError, match="^unknown start$"):
        decode_frame("mbus", b"\x55\x01\x02")
    with pytest.raises(FrameError, match="^unknown start$"):
        detect(b"\x55\x01\x02")


def test_short_frame_has_no_user_data():
    with pytest.raises(FrameError, match="^no user data$"):
        mbus.decode(bytes.fromhex("10 5B FE 59 16"))


def test_status_bits_map_to_flags():
    reading = mbus.decode(_with_status(0b0001_1111))
    assert (reading.alarm, reading.power_low, reading.permanent_error, reading.temporary_error) == (True, True, True, True)
    quiet = mbus.decode(_with_status(0b0000_0001))  # busy is not an alarm
    assert (quiet.alarm, quiet.power_low, quiet.permanent_error, quiet.temporary_error) == (False, False, False, False)


def test_gas_frame_json_matches_readme_example_shape():
    decoded = decode_frame("mbus", OMS_GAS)
    assert decoded["medium"] == "gas"
    assert decoded["volume_m3"] == 28504.27
    assert decoded["records"][0] == {
        "quantity": "volume", "unit": "m3", "value": 28504.27, "storage": 0, "tariff": 0, "function": "instantaneous"
    }  # fmt: skip


def test_gas_detector_medium_is_named():
    frame = bytearray(OMS_GAS)
    frame[14] = 0x1C
    frame[-2] = sum(frame[4:-2]) & 0xFF
    assert mbus.decode(bytes(frame)).medium == "gas_detector"


def test_frame_without_volume_has_null_volume():
    # wmbus-converted from the corpus: one energy record only.
    frame = bytes.fromhex("68 1F 1F 68 08 00 72 31 77 67 17 2D 2C 01 02 00 00 00 00 2F 2F 04 83 3B 88 13 00 00 2F 2F 2F 2F 2F 2F 2F 00 16")
    assert decode_frame("auto", frame)["volume_m3"] is None


def test_record_cut_short_is_a_frame_error():
    frame = bytearray(OMS_GAS[:4] + OMS_GAS[4:-2])
    body = bytes(frame[:19]) + b"\x0c\x14\x27"  # an 8-digit BCD volume with 1 byte of data
    length = len(body) - 4
    frame = bytes([0x68, length, length, 0x68]) + body[4:]
    frame += bytes([sum(frame[4:]) & 0xFF, 0x16])
    with pytest.raises(FrameError, match="^bad record$"):
        mbus.decode(frame)
