"""The dashboard of a server that asks for keys: it asks for one, keeps it in the tab, and
follows the runs list and a run live through stream tokens."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.app.keys import bearer, stored_keys
from tests.app.processes import free_port, stepline_serve

from .conftest import Screenshot, Server, open_page, serve_env


def create_key(database: Path) -> str:
    """A read+run key, stored as ``stepline keys create`` stores it (in a thread of its own:
    Playwright's loop holds this one)."""
    url = f"sqlite+aiosqlite:///{database}"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        keys = pool.submit(asyncio.run, stored_keys(url, ("dashboard", ("read", "run"))))
        return keys.result()[0]


def test_the_dashboard_asks_for_a_key_then_follows_a_run_through_stream_tokens(
    browser: Browser, tmp_path: Path, screenshot: Screenshot
) -> None:
    database, port, gate = tmp_path / "stepline.db", free_port(), tmp_path / "gate"
    key = create_key(database)
    server = Server(f"http://127.0.0.1:{port}", database, port, serve_env(), bearer(key))
    page, watch = open_page(browser, server.url)
    watch.expect_console(r"status of 401")  # the requests that made the dashboard ask
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        with stepline_serve(database, port, server.env):
            run_id = server.start("gated", {"gate": str(gate)})
            page.goto("/ui")
            dialog = page.get_by_role("dialog", name="API key needed")
            expect(dialog).to_be_visible()
            dialog.get_by_label("API key").fill("sl_000000000000_wrong")
            dialog.get_by_role("button", name="Use this key").click()
            expect(dialog).to_contain_text("The server refused the key")
            dialog.get_by_label("API key").fill(key)
            dialog.get_by_role("button", name="Use this key").click()

            expect(dialog).to_be_hidden()
            expect(page.locator("#connection")).to_have_text("Live")
            page.locator(f"tr[data-run='{run_id}'] a.mono").click()
            expect(page.locator("tr.step[data-step=wait] .badge").first).to_have_text("Running")
            expect(page.locator("#connection")).to_have_text("Live")
            gate.touch()
            expect(page.locator(".run-head .badge")).to_have_text("Succeeded")
            expect(page.get_by_role("button", name="Forget API key")).to_be_visible()
            stored = page.evaluate("sessionStorage.getItem('stepline.api-key')")
            screenshot(page, "run-with-key")
    finally:
        page.context.close()

    assert stored == key
    tokened = re.compile(r"[?&]token=slt_")
    assert [u for u in requests if f"/runs/{run_id}/events" in u and tokened.search(u)]
    assert [u for u in requests if u.startswith(f"{server.url}/events?") and tokened.search(u)]
    assert [u for u in requests if key in u] == []
    assert watch.problems == []
