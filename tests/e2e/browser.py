"""Mission control's browser tests share this: Debian's Chromium driven by Playwright (no browser
download), a page on it, and the skip when either is missing (`make test` installs both)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
sync_api = pytest.importorskip("playwright.sync_api")
TIMEOUT_MS = 20_000


@contextmanager
def chromium() -> Iterator[Any]:
    """A running Chromium (open pages on it with ``new_page``)."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, width: int = 1200, height: int = 900) -> Any:
    """A page in a fresh context (its own cookies) at this viewport."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@contextmanager
def chromium_page(width: int = 1200, height: int = 900) -> Iterator[Any]:
    """One page on a Chromium of its own."""
    with chromium() as browser:
        page = new_page(browser, width, height)
        try:
            yield page
        finally:
            page.context.close()
