"""A real browser for the console tests: Playwright driving Debian's chromium (Playwright's own
browser download is not reachable here). Without a browser the tests skip with the reason,
except under CI=true, where they fail (.ci/run installs chromium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    configured = os.environ.get("JOURNEYS_TEST_CHROMIUM")
    for path in (configured, *CANDIDATES, shutil.which("chromium")):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


def browser_unavailable() -> str | None:
    """None when the browser tests can run, else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (make install adds it)"
    if chromium_path() is None:
        return "no chromium found (apt-get install chromium, or set JOURNEYS_TEST_CHROMIUM)"
    return None


def require_browser() -> None:
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@contextmanager
def launched() -> Iterator[Any]:
    """A headless chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir() -> Path:
    """Where the tests save a screenshot of each page: JOURNEYS_SCREENSHOTS (`make screenshots`
    points it at docs/console/), else .screenshots/ (not committed)."""
    path = Path(os.environ.get("JOURNEYS_SCREENSHOTS") or ROOT / ".screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot at the page's current size (1280 px wide by default)."""
    target = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target
