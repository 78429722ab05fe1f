"""The dashboard in Debian's Chromium, driven by Playwright, against real ``stepline serve``
processes on 127.0.0.1.

Every page a test opens is watched: a console error, an uncaught exception or a request to
another origin fails the test at teardown, unless the test said it expects that console
message (a server that a test kills makes the browser log its refused connections).
Screenshots go to ``$STEPLINE_TEST_ARTIFACTS`` (else a pytest temporary directory) and are
copied to ``/tmp/ui-shots``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    expect,
    sync_playwright,
)

from tests.app.processes import free_port, stepline_serve

CHROMIUM = Path("/usr/bin/chromium")
# As root, and without the services a desktop Chromium calls home to (this machine has no
# network but the loopback and the package registries).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PIPELINES = "tests.ui.pipelines"
WAIT_MS = 20_000  # the longest any page state is waited for
POLL_MS = 50  # between two checks of a page state that no event announces
SHOTS = Path("/tmp/ui-shots")
VIEWPORT = {"width": 1280, "height": 900}

expect.set_options(timeout=WAIT_MS)


@dataclass
class Server:
    """A ``stepline serve`` process and how to reach it."""

    url: str
    database: Path
    port: int
    env: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=WAIT_MS / 1000)

    def start(self, pipeline: str, params: dict[str, object], **labels: str) -> str:
        """Start a run over HTTP, as curl would; its id."""
        with self.client() as client:
            response = client.post(
                "/runs", json={"pipeline": pipeline, "params": params, "labels": labels}
            )
        assert response.status_code == 202, response.text
        run_id: str = response.json()["id"]
        return run_id


@dataclass
class Watch:
    """What a page did that a test may not have expected."""

    origin: str
    problems: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect_console(self, pattern: str) -> None:
        """Console errors matching ``pattern`` are part of this test's scenario."""
        self.expected.append(re.compile(pattern))

    def console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and not any(
            p.search(message.text) for p in self.expected
        ):
            self.problems.append(f"console {message.type}: {message.text} ({message.location})")

    def error(self, error: Exception) -> None:
        self.problems.append(f"uncaught: {error}")

    def request(self, request: Request) -> None:
        url = request.url
        if not url.startswith((self.origin + "/", "data:", "blob:")):
            self.problems.append(f"request to another origin: {request.method} {url}")


def serve_env(**extra: str) -> dict[str, str]:
    return {"STEPLINE_PIPELINES": PIPELINES, **extra}


# Per module, not per session: Playwright's sync API runs an event loop in this thread for
# as long as it is started, and the async tests of other modules need the thread free.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Missing Chromium is a failure, never a skip: `make test` installs it.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module's tests (the demo pipelines and ``gated``)."""
    database = tmp_path_factory.mktemp("ui") / "stepline.db"
    port, env = free_port(), serve_env()
    with stepline_serve(database, port, env):
        yield Server(f"http://127.0.0.1:{port}", database, port, env)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("STEPLINE_TEST_ARTIFACTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("ui-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


Screenshot = Callable[[Page, str], Path]


@pytest.fixture
def screenshot(artifacts: Path) -> Screenshot:
    """Saves a full-page screenshot as an artifact; its path."""

    def take(page: Page, name: str) -> Path:
        path = artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)
        return path

    return take


def wait_until(page: Page, expression: str) -> None:
    """Until ``expression`` is truthy in ``page``. Not ``page.wait_for_function``: that
    polls by evaluating the expression inside the page, which the dashboard's CSP (no
    'unsafe-eval') refuses whenever the first check is false. ``page.evaluate`` goes through
    DevTools, which the page's CSP does not govern."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {WAIT_MS} ms: {expression}")
        page.wait_for_timeout(POLL_MS)  # no event says when the page scrolled


def open_page(browser: Browser, url: str, **options: object) -> tuple[Page, Watch]:
    context = browser.new_context(
        base_url=url,
        viewport=VIEWPORT,
        reduced_motion="reduce",  # bars drawn at their value, not on their way to it
        **options,  # type: ignore[arg-type]
    )
    page = context.new_page()
    watch = Watch(url)
    page.on("console", watch.console)
    page.on("pageerror", watch.error)
    page.on("request", watch.request)
    return page, watch


@pytest.fixture
def watched(browser: Browser, server: Server) -> Iterator[tuple[Page, Watch]]:
    """A page of the module's server, in a fresh browser context, checked at teardown."""
    page, watch = open_page(browser, server.url)
    yield page, watch
    page.context.close()
    assert watch.problems == []


@pytest.fixture
def page(watched: tuple[Page, Watch]) -> Page:
    return watched[0]


@pytest.fixture
def watch(watched: tuple[Page, Watch]) -> Watch:
    return watched[1]


@pytest.fixture
def dark_page(browser: Browser, server: Server) -> Iterator[Page]:
    """A page as a browser that prefers the dark theme shows it, checked at teardown."""
    page, watch = open_page(browser, server.url, color_scheme="dark")
    yield page
    page.context.close()
    assert watch.problems == []
