"""The technician app's service worker caches every file the page loads: one module missing from
its list and a reload without a network is a blank page (issue #16). The imports are walked from
index.html, so a module added to the app without adding it to the list fails here."""

import posixpath
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "api" / "web"
APP = "/app/technician/"
_IMPORT = re.compile(r'^\s*import\s[^"\']*["\']([^"\']+)["\']', re.MULTILINE)
_HTML_ASSET = re.compile(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"')


def _url(base: str, ref: str) -> str:
    return ref if ref.startswith("/") else posixpath.normpath(posixpath.join(posixpath.dirname(base), ref))


def _file(url: str) -> Path:
    return WEB / url.removeprefix("/app/")


def loaded() -> set[str]:
    """The URLs index.html loads, with every module those import, transitively."""
    page = f"{APP}index.html"
    todo = [_url(page, ref) for ref in _HTML_ASSET.findall(_file(page).read_text(encoding="utf-8"))]
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        if url.endswith(".js") and url != "/app/config.js":  # config.js is made by the server
            todo += [_url(url, ref) for ref in _IMPORT.findall(_file(url).read_text(encoding="utf-8"))]
    return seen


def cached() -> set[str]:
    worker = (WEB / "technician" / "sw.js").read_text(encoding="utf-8")
    shell = re.search(r"const SHELL = \[(.*?)\];", worker, re.DOTALL)
    assert shell, "no SHELL list in sw.js"
    return {_url(f"{APP}sw.js", ref) for ref in re.findall(r'"([^"]+)"', shell.group(1))}


def test_the_walk_finds_the_apps_modules() -> None:
    """Guards the walk itself: finding nothing would make the next test pass."""
    assert {"/app/technician/app.js", "/app/shared/api.js", "/app/shared/i18n/zh-CN.js", "/app/config.js"} <= loaded()


def test_the_service_worker_caches_every_file_the_page_loads() -> None:
    missing = loaded() - cached()
    assert not missing, f"files the technician page loads that sw.js does not cache: {sorted(missing)}"


def test_every_file_the_service_worker_caches_exists() -> None:
    # addAll() fails as a whole on one 404: nothing would be cached.
    absent = sorted(url for url in cached() if url.startswith("/app/") and url.endswith((".js", ".css", ".svg", ".json", ".html"))
                    and url != "/app/config.js" and not _file(url).is_file())
    assert not absent, f"sw.js caches files that do not exist: {absent}"
