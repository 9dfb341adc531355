"""Every frame of the peer corpus decodes to what its source expects, or is rejected."""

import math

import pytest

from meters.decode import decode_frame
from meters.protocols import FrameError, cjt188, mbus

from meters_corpus import frames, raw

CJT = frames("cjt188-peer-frames.json")
MBUS = frames("mbus-peer-frames.json")

# ---------------------------------------------------------------- CJ/T 188


def _cjt_expected(layout: dict) -> dict:
    status = layout.get("st_decoded_per_CJT188_2004", {})
    clock = layout.get("realtime_if_reversed_ssmmhhDDMMYYCC")  # the common order; absent when all zero
    return {
        "meter_type": layout["meter_type"],
        "address": layout["address_A6_to_A0"],
        "control": layout["control"],
        "direction": "reply" if layout["direction"] == "slave->master" else "request",
        "exception": layout["abnormal_flag_D6"],
        "di": layout["di_logical"],
        "ser": int(layout["ser"], 16),
        "current_volume_m3": layout.get("current_volume"),
        "settlement_volume_m3": layout.get("settlement_volume"),
        "clock": clock.replace(" ", "T") if clock else None,
        "valve": status.get("valve"),
        "battery_low": status.get("battery_low"),
    }


@pytest.mark.parametrize("entry", [e for e in CJT if e["expected_checksum_valid"]], ids=lambda e: e["id"])
def test_cjt188_valid_frame_decodes_to_standard_layout(entry):
    decoded = decode_frame("cjt188", raw(entry))
    expected = _cjt_expected(entry["decoded_by_standard_layout"])
    assert {key: decoded[key] for key in expected} == expected
    assert decode_frame("auto", raw(entry)) == decoded


@pytest.mark.parametrize("entry", [e for e in CJT if not e["expected_checksum_valid"]], ids=lambda e: e["id"])
def test_cjt188_negative_frame_is_rejected_for_its_checksum(entry):
    with pytest.raises(FrameError) as err:
        decode_frame("cjt188", raw(entry))
    assert err.value.reason == "bad checksum"


@pytest.mark.parametrize("entry", CJT, ids=lambda e: e["id"])
def test_cjt188_ingestion_fast_path_agrees_with_the_decoder_or_declines(entry):
    frame = raw(entry).lstrip(b"\xfe")
    fast = cjt188.read_reply(frame)
    if fast is None:
        return
    decoded = cjt188.decode(frame)
    assert fast == (decoded.address, decoded.current_volume_m3, decoded.clock, decoded.valve, decoded.battery_low)


# ---------------------------------------------------------------- M-Bus: libmbus

LIBMBUS = [e for e in MBUS if "expected" in e]
LIBMBUS_MEDIUM = {
    "Gas": "gas",
    "Water": "water",
    "Heat: Outlet": "heat_outlet",
    "Electricity": "electricity",
    "Warm water (30-90°C)": "warm_water",
}
LIBMBUS_FUNCTION = {
    "Instantaneous value": "instantaneous",
    "Actual value": "instantaneous",
    "Maximum value": "maximum",
    "Manufacturer specific": "manufacturer_specific",
}
LIBMBUS_QUANTITY = {
    "Volume": "volume",
    "Volume flow": "volume_flow",
    "Energy": "energy",
    "Power": "power",
    "Flow temperature": "flow_temperature",
    "Return temperature": "return_temperature",
    "Temperature difference": "temperature_difference",
    "On time": "on_time",
    "Time point (date & time)": "date_time",
    "Time point (date)": "date",
    "Fabrication No": "fabrication_no",
    "Digital Output": "digital_output",
    "Error flags": "error_flags",
    "Special supplier information": "special_supplier_information",
    "": "manufacturer_specific",
}
# libmbus prints an invalid (IV bit) type F date as this; we decode it as no date.
LIBMBUS_INVALID_DATE = "1900-01-00T00:00:00Z"
# Fixed-structure (CI 0x73) records carry a unit, not a quantity. libmbus leaves the historic
# counter (unit 3E) unscaled; EN 1434-3 says it has counter 1's unit, which is what we do.
LIBMBUS_FIXED_UNIT_M3 = {"l": 0.001}


def _same_value(ours, theirs: str) -> bool:
    if theirs == LIBMBUS_INVALID_DATE:
        return ours is None
    if isinstance(ours, str):
        return ours == theirs.removesuffix("Z")
    return math.isclose(float(ours), float(theirs), rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("entry", LIBMBUS, ids=lambda e: e["name"])
def test_mbus_frame_decodes_like_libmbus(entry):
    reading = mbus.decode(raw(entry))
    slave = entry["expected"]["slave"]
    assert int(reading.id) == int(slave["Id"])
    assert reading.medium == LIBMBUS_MEDIUM[slave["Medium"]]
    assert reading.access_number == int(slave["AccessNumber"])
    assert reading.status == int(slave["Status"], 16)
    if "Manufacturer" in slave:
        assert reading.manufacturer == slave["Manufacturer"]
        assert reading.version == int(slave["Version"])

    expected = entry["expected"]["records"]
    assert len(reading.records) == len(expected)
    factor = 1.0
    for ours, theirs in zip(reading.records, expected, strict=True):
        assert ours.function == LIBMBUS_FUNCTION[theirs["Function"]], theirs
        assert ours.storage == int(theirs.get("StorageNumber", ours.storage)), theirs
        assert ours.tariff == int(theirs.get("Tariff", 0)), theirs
        assert ours.device == int(theirs.get("Device", 0)), theirs
        if "Quantity" in theirs:
            assert ours.quantity == LIBMBUS_QUANTITY.get(theirs["Quantity"], theirs["Quantity"]), theirs
            assert _same_value(ours.value, theirs["Value"]), (ours, theirs)
        else:
            factor = LIBMBUS_FIXED_UNIT_M3.get(theirs["Unit"], factor)
            assert (ours.quantity, ours.unit) == ("volume", "m3")
            assert math.isclose(ours.value, float(theirs["Value"]) * factor)


@pytest.mark.parametrize("entry", LIBMBUS, ids=lambda e: e["name"])
def test_mbus_frame_json_follows_contract(entry):
    decoded = decode_frame("auto", raw(entry))
    assert decoded["protocol"] == "mbus"
    assert set(decoded) == {
        "protocol", "id", "manufacturer", "version", "medium", "access_number",
        "status", "alarm", "power_low", "volume_m3", "records",
    }  # fmt: skip
    for record in decoded["records"]:
        assert set(record) == {"quantity", "unit", "value", "storage", "tariff", "function"}


ERROR_FRAMES = [e for e in MBUS if "expected_xml" in e]
LIBMBUS_ERROR = {"Unspecified error": "application error: unspecified", "Application busy": "application error: busy"}


@pytest.mark.parametrize("entry", ERROR_FRAMES, ids=lambda e: e["name"])
def test_mbus_application_error_frame_is_an_error_not_a_reading(entry):
    message = entry["expected_xml"].split("<Error>")[1].split("</Error>")[0]
    with pytest.raises(FrameError) as err:
        decode_frame("mbus", raw(entry))
    assert err.value.reason == LIBMBUS_ERROR[message]


# ---------------------------------------------------------------- M-Bus: wmbusmeters

WMBUS = [e for e in MBUS if "expected_json" in e]
# wmbusmeters renders the all-zero type G date as 1999-11-30; it means "not set", we say None.
WMBUS_UNSET_DATE = "1999-11-30"


def _key(entry: dict) -> dict[str, bytes]:
    _, _, meter_id, key = entry["wmbusmeters_args"].split()
    return {} if key == "NOKEY" else {meter_id: bytes.fromhex(key)}


def _first(reading, quantity: str, *, historic: bool):
    matches = [r for r in reading.records if r.quantity == quantity and (r.storage > 0) == historic]
    return min(matches, key=lambda r: r.storage).value


@pytest.mark.parametrize("entry", WMBUS, ids=lambda e: e["name"])
def test_wmbus_telegram_decodes_like_wmbusmeters(entry):
    reading = mbus.decode(raw(entry), keys=_key(entry))
    want = entry["expected_json"]
    assert reading.transport == "wireless"
    assert reading.id == want["id"]
    assert reading.medium == want["media"]
    assert reading.volume_m3 == pytest.approx(want["total_m3"])
    checks = {
        "target_m3": lambda: _first(reading, "volume", historic=True),
        "flow_m3h": lambda: _first(reading, "volume_flow", historic=False),
        "temperature_c": lambda: _first(reading, "flow_temperature", historic=False),
        "actuality_duration_s": lambda: _first(reading, "actuality_duration", historic=False),
        "total_datetime": lambda: _first(reading, "date_time", historic=False)[:16].replace("T", " "),
        "target_datetime": lambda: _first(reading, "date_time", historic=True)[:16].replace("T", " "),
        "target_date": lambda: _first(reading, "date", historic=True) or WMBUS_UNSET_DATE,
    }
    compared = [name for name in checks if name in want]
    for name in compared:
        assert checks[name]() == pytest.approx(want[name]), name
    assert compared, "nothing compared beyond the header"


def test_encrypted_wmbus_telegram_without_key_says_so():
    entry = next(e for e in WMBUS if e["name"] == "wmbus_gas_unismart_aes")
    with pytest.raises(FrameError) as err:
        mbus.decode(raw(entry))
    assert err.value.reason == "encrypted, no key"


def test_wmbus_telegram_with_wrong_key_is_rejected():
    entry = next(e for e in WMBUS if e["name"] == "wmbus_gas_unismart_aes")
    with pytest.raises(FrameError) as err:
        mbus.decode(raw(entry), keys={"00043094": bytes([1] * 16)})
    assert err.value.reason == "decryption failed"


# ---------------------------------------------------------------- M-Bus: pyMeterBus

PYMETERBUS = [e for e in MBUS if "expected_pymeterbus_records" in e]
PYMETERBUS_UNIT = {"m^3": "m3", "m^3/h": "m3/h", "none": "", "seconds": "s"}
# The corpus marks these as implementation-specific: BCD with invalid nibbles (BD EB DD).
PYMETERBUS_IMPLEMENTATION_SPECIFIC = {("pymeterbus_hyd_heat", 7), ("pymeterbus_hyd_heat", 8)}


@pytest.mark.parametrize("entry", PYMETERBUS, ids=lambda e: e["name"])
def test_mbus_frame_decodes_like_pymeterbus_tests(entry):
    reading = mbus.decode(raw(entry))
    for want in entry["expected_pymeterbus_records"]:
        if (entry["name"], want["i"]) in PYMETERBUS_IMPLEMENTATION_SPECIFIC:
            continue
        ours = reading.records[want["i"]]
        assert ours.value == pytest.approx(want["value"]), want
        assert ours.unit == PYMETERBUS_UNIT.get(want["unit"], want["unit"]), want


# ---------------------------------------------------------------- vendor profile


def test_data_only_checksum_vendor_decodes_with_its_profile():
    entry = next(e for e in CJT if e["id"] == "mfun_gas_T30_read_response_nonstd_cs")
    frame = cjt188.decode(raw(entry), cjt188.VendorProfile(checksum="data"))
    assert frame.meter_kind == "gas"
    assert frame.current_volume_m3 == 433323.13
    assert frame.settlement_volume_m3 == 443424.14
    assert frame.clock.isoformat() == "2016-07-15T09:59:59"  # forward order, as the note says
    assert frame.valve == "closed"


def test_exception_reply_carries_status_and_no_di():
    entry = next(e for e in CJT if e["id"] == "mfun_exception_reply_nonstd_cs")
    decoded = decode_frame("cjt188", raw(entry), profile=cjt188.VendorProfile(checksum="data"))
    assert (decoded["exception"], decoded["di"], decoded["ser"], decoded["valve"]) == (True, None, 1, "closed")
