"""Every problem slug the server can answer has a zh-CN and an English text in the apps, so a
person never reads the server's English detail."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
I18N = ROOT / "api" / "web" / "shared" / "i18n"
# Slugs written outside the domain error classes (api/errors.py, the body checks).
FRAMEWORK_SLUGS = {"validation-error", "internal-error", "payload-too-large", "nul-character", "method-not-allowed",
                   "not-found", "forbidden", "authentication-failed"}


def _domain_slugs() -> set[str]:
    from app.asgi import create_app
    from kit.errors import DomainError

    create_app()  # imports every package, so every error class exists
    slugs, pending = set(), [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not DomainError and isinstance(getattr(cls, "slug", None), str):
            slugs.add(cls.slug)
    return slugs - {"domain-error"}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_problem_slug_is_translated(language: str) -> None:
    translated = set(re.findall(r'"problem\.([a-z0-9-]+)"', (I18N / f"problems.{language}.js").read_text()))
    missing = (_domain_slugs() | FRAMEWORK_SLUGS) - translated
    assert not missing, f"untranslated problem slugs in problems.{language}.js: {sorted(missing)}"
