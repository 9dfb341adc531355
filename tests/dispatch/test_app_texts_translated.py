"""Every text the apps look up by a literal key (`t("…")`) exists in the zh-CN and the English
dictionary, and both dictionaries hold the same keys, so no screen shows a raw key or falls back
to the other language."""

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
