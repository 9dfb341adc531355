"""Every problem slug the server can answer (REST problem+json `type`, a socket's `error` code) has a
zh-CN and an English text in the apps, worded only with fields the server sends for it, so a person
never reads the server's English `detail` nor a raw {placeholder}."""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "api" / "web" / "shared"
LANGUAGES = ("zh-CN", "en")
# The server's own bodies besides a DomainError's `extra` (api/errors.py, api/ws/technician.py).
OWN_FIELDS = {"service-unavailable": {"service", "retry_after_s"}, "validation-error": {"errors"}}
EVERY_PROBLEM_HAS = {"status"}
# Placeholders ui.js's errorText makes from a field: {wait} from retry_after_s, {field} from a
# 422's first error (a domain error's own `field` is sent as such), and so on.
WORDED_FROM = {"wait": "retry_after_s", "state": "current_state", "fee": "fee", "field": "errors"}
# Slugs written as literals: problem(503, "service-unavailable", …), (413, "payload-too-large", …)
# in the body guard, and the sockets' {"code": "throttled"} replies.
_STATUS_SLUG = re.compile(r'\(\s*\d{3},\s*"([a-z][a-z0-9-]*)"')
_SOCKET_CODE = re.compile(r'"code":\s*"([a-z][a-z0-9-]*)"')
# "problem.<slug>", "problem.<slug>.<reason>" or "<screen>.problem.<slug>", then its text.
_ENTRY = re.compile(r'^\s*"((?:[a-z]+\.)?problem\.([a-z0-9-]+)(?:\.[a-z_]+)?)":\s*"((?:[^"\\]|\\.)*)",?\s*$', re.M)


def _domain_classes() -> list[type]:
    from app.asgi import create_app
    from kit.errors import DomainError

    create_app()  # imports every package, so every error class exists
    found, pending = [], [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not DomainError and cls.slug != DomainError.slug:
            found.append(cls)
    return found


@cache
def server_slugs() -> dict[str, set[str]]:
    """slug -> the fields every answer with that slug carries."""
    from api.errors import HTTP_SLUGS, OTHER_HTTP_SLUG

    fields: dict[str, set[str]] = {}
    for cls in _domain_classes():
        carried = set(cls.fields)
        fields[cls.slug] = fields[cls.slug] & carried if cls.slug in fields else carried
    written = {*HTTP_SLUGS.values(), OTHER_HTTP_SLUG}
    for source in (ROOT / "api").rglob("*.py"):
        text = source.read_text()
        written |= set(_STATUS_SLUG.findall(text)) | set(_SOCKET_CODE.findall(text))
    for slug in written:
        fields.setdefault(slug, set())
    for slug, own in OWN_FIELDS.items():
        fields[slug] |= own
    return fields


def entries(language: str) -> dict[str, tuple[str, str]]:
    """key -> (slug, text) of every problem text the app loads for `language`."""
    found: dict[str, tuple[str, str]] = {}
    for name in (f"{language}.js", f"problems.{language}.js"):
        for key, slug, text in _ENTRY.findall((WEB / "i18n" / name).read_text()):
            found[key] = (slug, text)
    return found


def test_the_apps_load_the_dictionaries_checked_here() -> None:
    loaded = set(re.findall(r'from "\./i18n/([\w.-]+\.js)"', (WEB / "i18n.js").read_text()))
    assert loaded == {f"{prefix}{lang}.js" for lang in LANGUAGES for prefix in ("", "problems.")}


def test_the_collected_slugs_include_the_known_ones() -> None:
    """Guards the collection itself: a walk that found nothing would make the next test pass."""
    assert {"wrong-code", "too-far-from-address", "weak-password", "not-found", "validation-error",
            "service-unavailable", "internal-error", "too-many-attempts", "payload-too-large", "nul-character",
            "throttled", "http-error"} <= set(server_slugs())
    assert server_slugs()["wrong-code"] == {"tries_left"}
    assert server_slugs()["too-far-from-address"] == {"distance_m", "radius_m"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_problem_slug_is_translated(language: str) -> None:
    missing = sorted(slug for slug in server_slugs() if f"problem.{slug}" not in entries(language))
    assert not missing, f"problem slugs without a {language} text: {missing}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_problem_texts_use_only_fields_the_server_sends(language: str) -> None:
    wrong = {}
    for key, (slug, text) in entries(language).items():
        if slug not in server_slugs():
            continue  # the page's own texts (problem.network, problem.generic…)
        sent = server_slugs()[slug] | EVERY_PROBLEM_HAS
        usable = sent | {word for word, field in WORDED_FROM.items() if field in sent}
        unknown = set(re.findall(r"\{(\w+)\}", text)) - usable
        if unknown:
            wrong[key] = sorted(unknown)
    assert not wrong, f"{language} problem texts with placeholders the server never fills: {wrong}"


def test_both_languages_word_the_same_problems() -> None:
    keys = [set(entries(language)) for language in LANGUAGES]
    assert keys[0] == keys[1], f"only in one language: {sorted(keys[0] ^ keys[1])}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_reason_the_system_writes_is_translated(language: str) -> None:
    from dispatch.reasons import MACHINE_REASONS

    strings = (WEB / "i18n" / f"{language}.js").read_text(encoding="utf-8")
    assert [slug for slug in MACHINE_REASONS if f'"reason.{slug}"' not in strings] == []


def test_the_system_writes_state_reasons_as_slugs() -> None:
    """A reason passed to a transition as a literal must be a slug the apps translate, not a sentence."""
    import ast

    from dispatch.reasons import MACHINE_REASONS

    written = []
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in ("tests", "bench", ".venv", "migrations"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")).endswith("transition"):
                written += [(path.name, k.value.value) for k in node.keywords
                            if k.arg == "reason" and isinstance(k.value, ast.Constant)]
    assert [w for w in written if w[1] not in MACHINE_REASONS] == []
