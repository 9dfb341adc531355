"""Every text the apps look up by a literal key (`t("…")`) exists in the zh-CN and the English
dictionary, and both dictionaries hold the same keys, so no screen shows a raw key or falls back
to the other language. A refusal names the field at fault only by a `field.*` text, which every
field the apps send has."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "api" / "web"
LANGUAGES = ("zh-CN", "en")
_LOOKUP = re.compile(r'\bt\(\s*"([A-Za-z0-9_.-]+)"')
_KEY = re.compile(r'^\s*"([^"]+)":', re.M)


def keys(language: str) -> set[str]:
    return {key for name in (f"{language}.js", f"problems.{language}.js")
            for key in _KEY.findall((WEB / "shared" / "i18n" / name).read_text(encoding="utf-8"))}


def looked_up() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in WEB.rglob("*.js"):
        if "vendor" in path.parts or "i18n" in path.parts:
            continue
        for key in _LOOKUP.findall(path.read_text(encoding="utf-8")):
            found.setdefault(key, set()).add(str(path.relative_to(WEB)))
    return found


def test_the_lookup_finds_the_apps_keys() -> None:
    """Guards the walk itself: finding nothing would make the next test pass."""
    assert {"customer.finalPrice", "money.openReceipt", "earnings.title"} <= set(looked_up())


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_key_the_apps_look_up_has_a_text(language: str) -> None:
    missing = {key: sorted(files) for key, files in looked_up().items() if key not in keys(language)}
    assert not missing, f"keys without a {language} text: {missing}"


def test_both_languages_hold_the_same_keys() -> None:
    assert keys("zh-CN") ^ keys("en") == set()


# The fields the apps send, by the calls in api/web/*/app.js (api.post/put/get and api.login) and
# the schemas those routes validate with; listed here because the JS builds its bodies in
# variables and conditionals, past what a pattern can read. Values the page makes itself (ids in
# paths, limit, cursor, tz, a push subscription's keys) are left out: the generic sentence serves
# them. "outer.name" is a name worded inside another, as fieldText in shared/ui.js looks it up.
SENT_FIELDS = {
    "login": {"email", "password"},
    "customer address": {"label", "structured", "province", "city", "district", "street", "community", "building", "unit",
                         "room", "location", "coordinates"},
    "customer order and booking": {"kind", "address_id", "description", "preferred_technician_id", "window_start", "date"},
    "customer price change, payment": {"price_change_id", "payment_method"},
    "customer cancel and reschedule": {"reason", "reason_code", "accepted_fee_minor"},
    "customer review": {"stars", "tags", "comment"},
    "ops assign, cancel, message, certification, hazard": {"technician_id", "reason", "to", "text", "evidence"},
    "ops and auditor queries": {"from", "query.to", "station_id", "status", "technician_id", "adjusted", "held"},
    "technician door check": {"code"},
    "sign-up (shared/signup.js)": {"name", "phone", "email", "password"},
    "technician certificate (technician/onboarding.js)": {"kind", "number", "issuer", "valid_from", "valid_until"},
    "technician report": {"work_done", "parts", "parts.name", "quantity", "unit_price_minor", "final_price_minor", "currency",
                          "photo_refs", "hazards", "category", "severity", "hazards.description", "resolution", "fix",
                          "fix.work_done", "fixed_hazard_ids", "valve_closed"},
}
_FIELD = "field."


def field_names(language: str) -> set[str]:
    return {key.removeprefix(_FIELD) for key in keys(language) if key.startswith(_FIELD)}


def test_both_languages_name_the_same_fields() -> None:
    assert field_names("zh-CN"), "no field.* texts found: the lookup below would pass on nothing"
    assert field_names("zh-CN") ^ field_names("en") == set()


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_field_the_apps_send_has_a_name(language: str) -> None:
    sent = set().union(*SENT_FIELDS.values())
    assert not sent - field_names(language), f"fields without a {language} name: {sorted(sent - field_names(language))}"


def test_no_field_name_for_what_the_apps_do_not_send() -> None:
    """A name here for a field no app sends is stale, or the list above missed a call."""
    sent = set().union(*SENT_FIELDS.values())
    assert not field_names("zh-CN") - sent


@pytest.mark.parametrize("language", LANGUAGES)
def test_only_a_field_variant_shows_the_field(language: str) -> None:
    """`{field}` is filled only when the field has a name in the reader's language, and then only
    `problem.<slug>.field` is chosen; any other text would show the server's raw path."""
    texts = {}
    for name in (f"{language}.js", f"problems.{language}.js"):
        texts |= dict(re.findall(r'^\s*"([^"]+)":\s*"((?:[^"\\]|\\.)*)"', (WEB / "shared" / "i18n" / name).read_text(encoding="utf-8"), re.M))
    showing = {key for key, text in texts.items() if "{field}" in text}
    assert showing, "no text names a field: the check below would pass on nothing"
    assert {key for key in showing if not (key.startswith("problem.") and key.endswith(".field"))} == set()
