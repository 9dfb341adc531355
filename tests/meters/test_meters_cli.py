import json

from typer.testing import CliRunner

from meters.cli import app

runner = CliRunner()
GAS_READ_REPLY = "FE FE 68 30 03 00 00 00 00 00 00 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C 31 01 22 11 05 15 20 21 84 {cs} 16"


def _gas_reply() -> str:
    body = bytes.fromhex(GAS_READ_REPLY.format(cs="00"))[2:-2]
    return GAS_READ_REPLY.format(cs=f"{sum(body) & 0xFF:02X}")


def test_decode_json_prints_one_contract_object():
    result = runner.invoke(app, ["decode", "--protocol", "cjt188", _gas_reply(), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "protocol": "cjt188", "meter_type": "0x30", "meter_kind": "gas", "address": "00000000000003",
        "control": "0x81", "direction": "reply", "exception": False, "di": "901F", "ser": 0,
        "current_volume_m3": 556677.0, "settlement_volume_m3": 556677.0, "clock": "2015-05-11T22:01:31",
        "valve": "closed", "battery_low": False,
    }  # fmt: skip


def test_decode_auto_renders_readably():
    result = runner.invoke(app, ["decode", _gas_reply()])
    assert result.exit_code == 0
    assert "meter_kind: gas" in result.stdout
    assert "clock: 2015-05-11T22:01:31" in result.stdout


def test_bad_frame_exits_2_with_one_error_line():
    result = runner.invoke(app, ["decode", "--protocol", "mbus", "68 03 03 68 08 01 70 78 16"])
    assert result.exit_code == 2
    assert result.output == "error: bad checksum\n"


def test_non_hex_input_exits_2_without_traceback():
    result = runner.invoke(app, ["decode", "68 zz"])
    assert result.exit_code == 2
    assert result.output == "error: not hex\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_application_error_frame_is_reported_as_error():
    result = runner.invoke(app, ["decode", "68 04 04 68 08 01 70 08 81 16", "--json"])
    assert (result.exit_code, result.output) == (2, "error: application error: busy\n")
