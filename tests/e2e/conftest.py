"""Browser tests: a real uvicorn process (embedded worker on) and Debian's Chromium driven by
Playwright. Every browser context refuses requests that leave the machine, so the pages must
work with nothing but the API process."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import expect

from tests.e2e.support import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("GASDISPATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

# CI machines are shared and slow at times: a step may take longer than Playwright's 5 s default.
expect.set_options(timeout=15_000)

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test.sh installs Debian's chromium)", allow_module_level=True)


@pytest.fixture
async def browser():  # noqa: ANN201
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclass
class Offline:
    """What the pages tried to fetch from outside the machine (each was aborted)."""

    blocked: list[str]


@pytest.fixture
def offline() -> Offline:
    return Offline(blocked=[])


@pytest.fixture
def new_context(browser, offline: Offline):  # noqa: ANN001, ANN201
    """new_context(**options) -> a context whose non-loopback requests are aborted and recorded;
    page errors fail the test."""
    contexts = []
    errors: list[str] = []

    async def make(**options):  # noqa: ANN003, ANN202
        context = await browser.new_context(locale="zh-CN", **options)

        async def guard(route) -> None:  # noqa: ANN001
            if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith(("data:", "blob:")):
                await route.continue_()
            else:
                offline.blocked.append(route.request.url)
                await route.abort()

        await context.route("**/*", guard)
        context.on("weberror", lambda error: errors.append(str(error.error)))
        contexts.append(context)
        return context

    yield make
    assert not errors, f"uncaught errors in the pages: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS
