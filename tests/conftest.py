"""Test fixtures: a real server over real HTTP on a real database file. The helpers they are
made of live in tests/support/ (test modules import them from there, never from here).

`JOURNEYS_TEST_DATABASE=postgresql` runs the suite on the PostgreSQL server at
`JOURNEYS_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/postgres); a
fresh database is created for the session and dropped at the end. Without PostgreSQL the
PostgreSQL-only tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from support.browser import launched, require_browser
from support.console import CONSOLE_SECRET_KEY
from support.databases import own_database
from support.server import START, Server, Tenant

from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

# The suite's servers are shared by many tests, all from 127.0.0.1, and many of those tests send
# wrong tokens on purpose: the failed-authentication limit (20 a minute per address by default)
# would refuse later tests. Every server of the suite, in process or not, reads these; the rate
# limits' own tests (test_limits.py) build servers with the limits they test.
os.environ.setdefault("JOURNEYS_AUTH_FAILURE_LIMIT", "1000000")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with own_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the suite's database (migrated), for tests that call services directly."""
    eng = create_db_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[Server]:
    srv = Server(database_url)
    yield srv
    srv.stop()


@pytest.fixture()
def http(server: Server) -> httpx.Client:
    return server.http


@pytest.fixture()
def tenant(server: Server) -> Tenant:
    """A fresh org with a token (both scopes) and the example journey published."""
    return server.tenant()


@pytest.fixture(scope="session")
def console_server(database_url: str) -> Iterator[Server]:
    """A server with a secret key (TOTP secrets are sealed with it), for the console's tests."""
    # Every test signs in from 127.0.0.1 and the manual clock stands still: the per-address
    # throttle is tested on a server of its own (test_console_auth), not tripped here.
    srv = Server(database_url, secret_key=CONSOLE_SECRET_KEY, console_login_attempts=100_000)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _console_clock_at_start(request: pytest.FixtureRequest) -> None:
    """Each console test starts at the same moment (a Monday 10:00 in Chicago): the console's
    tests share one server, and some move its clock on by hours (session timeouts)."""
    if "console_server" in request.fixturenames:
        request.getfixturevalue("console_server").clock.set(START)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium (skips with the reason when there is none, fails under CI=true).
    Per module: Playwright's sync API keeps an asyncio loop running in the main thread while it
    is open, and later modules' asyncio.run() would fail beside it."""
    require_browser()
    with launched() as found:
        yield found


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) at 1280×900, and its page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def pytest_report_header() -> str:
    """The wall clock the run sees (`make test-hours` shifts it): no test may depend on it."""
    return f"wall clock: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (a {datetime.now(UTC):%A})"
