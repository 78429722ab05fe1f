"""The dashboard across a server killed with SIGKILL and started again on the same database
and port. The run page says it is reconnecting, then catches up from its last event, with
every step row and log line once; the runs list reads what it missed, and a list or a
page that opened while the server was away loads by itself once it answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.app.processes import free_port, stepline_serve

from .conftest import Screenshot, Server, Watch, open_page, serve_env
from .test_dashboard import logged_seqs, step_rows

pytestmark = pytest.mark.slow

# A short lease, so that the new process recovers the run soon after it starts.
ENV = serve_env(STEPLINE_LEASE_SECONDS="2", STEPLINE_POLL_SECONDS="0.1")
LOGS = 3  # lines each step writes


def restartable(browser: Browser, tmp_path: Path) -> tuple[Server, Path, Page, Watch]:
    """A server to start (and kill, and start again) on a fresh database and port, a gate
    file for its runs, and a page that expects the refused connections of a server away."""
    database, port = tmp_path / "stepline.db", free_port()
    server = Server(f"http://127.0.0.1:{port}", database, port, ENV)
    page, watch = open_page(browser, server.url)
    watch.expect_console(r"Failed to load resource: net::ERR_")
    return server, tmp_path / "gate", page, watch


def test_a_server_killed_mid_run_shows_reconnecting_then_catches_up_without_duplicates(
    browser: Browser, tmp_path: Path, screenshot: Screenshot
) -> None:
    server, gate, page, watch = restartable(browser, tmp_path)
    status = page.locator(".run-head .badge")
    lines = page.locator("ol.log li")
    try:
        with stepline_serve(server.database, server.port, ENV) as process:
            run_id = server.start("gated", {"gate": str(gate), "logs": LOGS})
            page.goto(f"/ui/runs/{run_id}")
            expect(page.locator("tr.step[data-step=wait] .badge").first).to_have_text("Running")
            expect(lines).to_have_count(3 * LOGS)
            expect(page.locator("#connection")).to_have_text("Live")
            process.kill()
            process.wait(10)
            expect(page.locator(".reconnecting")).to_contain_text("Reconnecting…")
            expect(page.locator("#connection")).to_have_text("Reconnecting…")
            expect(status).to_have_text("Running")
            screenshot(page, "run-reconnecting")

        with stepline_serve(server.database, server.port, ENV):
            expect(page.locator(".note")).to_contain_text("recovered by resume")
            expect(page.locator(".reconnecting")).to_be_hidden()
            gate.touch()
            expect(status).to_have_text("Succeeded")
            expect(page.locator(".overall-text")).to_have_text("100 % · all 4 steps done")
            logged = logged_seqs(server, run_id)
            # fetch, prepare, wait (twice: it ran again after the restart), finish
            expect(lines).to_have_count(5 * LOGS)
            shown = lines.evaluate_all("items => items.map(i => Number(i.dataset.seq))")
            rows = step_rows(page)
            screenshot(page, "run-after-restart")
    finally:
        page.context.close()

    assert shown == logged
    assert rows == ["fetch", "prepare", "wait", "finish"]
    assert watch.problems == []


def test_the_runs_list_reads_what_it_missed_while_the_server_was_down(
    browser: Browser, tmp_path: Path
) -> None:
    # The list has received no event yet, so it has no position to resume from: a run that
    # starts and ends while it reconnects is in the list all the same, with its final status.
    server, gate, page, watch = restartable(browser, tmp_path)
    gate.touch()
    try:
        with stepline_serve(server.database, server.port, ENV) as process:
            page.goto("/ui")
            expect(page.locator("#connection")).to_have_text("Live")
            # The stream opens first, then the list and the pipelines load: the pipeline
            # filter is filled last, so the page is whole before the server goes away.
            expect(page.locator("#filter-pipeline option[value='gated']")).to_have_count(1)
            process.kill()
            process.wait(10)
            expect(page.locator("#connection")).to_have_text("Reconnecting…")

        with stepline_serve(server.database, server.port, ENV):
            run_id = server.start("gated", {"gate": str(gate), "logs": 1})
            with server.client() as client:
                finished = client.get(f"/runs/{run_id}/events")  # ends with the final event
            assert "event: run.succeeded" in finished.text
            row = page.locator(f"tr[data-run='{run_id}']")
            expect(row.locator(".badge")).to_have_text("Succeeded")
            expect(page.locator("#connection")).to_have_text("Live")
    finally:
        page.context.close()

    assert watch.problems == []


def test_the_runs_list_loads_by_itself_once_the_server_answers_again(
    browser: Browser, tmp_path: Path
) -> None:
    # The server is gone when the list opens: instead of an error with a "Try again"
    # button beside a stream that reconnects by itself, the list says it is trying again,
    # and loads as soon as the server is back.
    server, gate, page, watch = restartable(browser, tmp_path)
    gate.touch()
    retrying = page.locator(".load-retry")
    try:
        with stepline_serve(server.database, server.port, ENV) as process:
            run_id = server.start("gated", {"gate": str(gate), "logs": 1})
            page.goto("/ui/pipelines")
            expect(page.locator("h1")).to_have_text("Pipelines")
            process.kill()
            process.wait(10)
        page.locator("a[data-nav=runs]").click()
        expect(retrying).to_contain_text("Could not load the runs")
        expect(retrying).to_contain_text("Trying again…")
        expect(page.locator(".error-box")).to_have_count(0)

        with stepline_serve(server.database, server.port, ENV):
            expect(page.locator(f"tr[data-run='{run_id}']")).to_have_count(1)
            expect(retrying).to_be_hidden()
            expect(page.locator("#filter-pipeline option[value='gated']")).to_have_count(1)
            expect(page.locator("#connection")).to_have_text("Live")
    finally:
        page.context.close()

    assert watch.problems == []


def test_a_page_opened_while_the_server_is_away_loads_by_itself_once_it_answers(
    browser: Browser, tmp_path: Path
) -> None:
    # The run page and the pipelines page have no stream before their first load: the
    # error says it is trying again, and the page appears once the server is back.
    server, gate, page, watch = restartable(browser, tmp_path)
    gate.touch()
    error, retrying = page.locator(".error-box"), page.locator(".error-box .load-retry")
    try:
        with stepline_serve(server.database, server.port, ENV) as process:
            run_id = server.start("gated", {"gate": str(gate), "logs": 1})
            page.goto("/ui")
            expect(page.locator(f"tr[data-run='{run_id}'] .badge")).to_have_text("Succeeded")
            process.kill()
            process.wait(10)
        page.locator(f"tr[data-run='{run_id}'] a.mono").click()
        expect(retrying).to_have_text("Trying again…")
        button = error.locator("button")
        expect(button).to_have_text("Try again")
        # While it waits, the error stays as it is: not drawn again (nor announced again),
        # and the focus stays where it was.
        button.focus()
        error.evaluate("box => { box.dataset.first = 'yes'; }")
        for _ in range(2):
            with page.expect_event("requestfailed", lambda r: r.url.endswith("/healthz")):
                pass
        expect(page.locator(".error-box[data-first=yes]")).to_have_count(1)
        expect(button).to_be_focused()

        with stepline_serve(server.database, server.port, ENV) as process:
            expect(page.locator(".run-head .badge")).to_have_text("Succeeded")
            expect(error).to_have_count(0)
            process.kill()
            process.wait(10)
        page.locator("a[data-nav=pipelines]").click()
        expect(retrying).to_have_text("Trying again…")

        with stepline_serve(server.database, server.port, ENV):
            expect(page.locator("h1")).to_have_text("Pipelines")
            expect(error).to_have_count(0)
    finally:
        page.context.close()

    assert watch.problems == []
