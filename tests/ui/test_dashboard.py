"""The dashboard against one real server: a run started from the form, the failing demo's
rollback, a cancel, the runs list live, and the pages' shell and assets."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from .conftest import Screenshot, Server, Watch, wait_until

RUN_URL = re.compile(r"/ui/runs/([0-9A-Z]{26})$")


def step_rows(page: Page) -> list[str]:
    return page.locator("table.steps tr.step").evaluate_all("rows => rows.map(r => r.dataset.step)")


def logged_seqs(server: Server, run_id: str) -> list[int]:
    """The sequence numbers of every line the run logged, read page by page."""
    seqs: list[int] = []
    after: int | None = 0
    with server.client() as client:
        while after is not None:
            page = client.get(f"/runs/{run_id}/logs", params={"after": after}).json()
            seqs += [line["seq"] for line in page["items"]]
            after = page["next_after"]
    return seqs


def test_a_run_started_from_the_form_reaches_100_percent_and_succeeded(
    page: Page, server: Server, screenshot: Screenshot
) -> None:
    page.goto("/ui/pipelines/train")
    expect(page.get_by_role("heading", name="Train a model")).to_be_visible()
    page.get_by_label("Step Seconds").fill("0.3")
    page.get_by_label("Epochs").fill("3")
    page.get_by_label("Labels").fill("started=form")

    page.get_by_role("button", name="Start run").dblclick()

    expect(page).to_have_url(RUN_URL)
    expect(page.locator(".run-head .badge")).to_have_text("Succeeded")
    expect(page.locator(".overall-text")).to_have_text("100 % · all 3 steps done")
    expect(page.get_by_role("progressbar", name="Overall progress")).to_have_attribute(
        "aria-valuenow", "100"
    )
    assert step_rows(page) == ["dataset", "train", "upload"]
    expect(page.locator("table.steps tr.step .badge.step-succeeded")).to_have_count(3)
    expect(page.locator(".labels")).to_have_text("started: form")
    expect(page.get_by_role("button", name="Re-run")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel…")).to_be_hidden()
    screenshot(page, "run-succeeded")

    # The double click started one run: both requests carried the form's one key.
    with server.client() as client:
        runs = client.get("/runs", params={"label": "started:form"}).json()["items"]
    run_id = RUN_URL.search(page.url)
    assert run_id is not None
    assert [r["id"] for r in runs] == [run_id[1]]
    assert runs[0]["params"] == {"step_seconds": 0.3, "epochs": 3}


def test_the_forms_422_errors_go_back_to_their_fields(page: Page, watch: Watch) -> None:
    watch.expect_console(r"status of 422")
    page.goto("/ui/pipelines/upload")
    page.get_by_label("Step Seconds").fill("100")
    page.get_by_label("Files").fill("0")
    page.get_by_label("Labels").fill("team=ui")

    page.get_by_role("button", name="Start run").click()

    seconds, files = page.get_by_label("Step Seconds"), page.get_by_label("Files")
    expect(page.locator("#param-step_seconds-error")).to_contain_text("less than or equal to 60")
    expect(page.locator("#param-files-error")).to_contain_text("greater than or equal to 1")
    expect(seconds).to_have_attribute("aria-invalid", "true")
    expect(files).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert").filter(has_text="Invalid parameters")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/ui/pipelines/upload$"))

    # Fixed, it starts: the refused request made no run, and its key is not reused.
    seconds.fill("0")
    files.fill("2")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(RUN_URL)
    expect(page.locator(".run-head .badge")).to_have_text("Succeeded")


def test_the_failing_demo_opens_the_failed_step_and_lists_the_rollback_newest_first(
    dark_page: Page, page: Page, server: Server, screenshot: Screenshot
) -> None:
    run_id = server.start("flaky", {"step_seconds": 0.5})
    page.goto(f"/ui/runs/{run_id}")

    expect(page.locator(".run-head .badge")).to_have_text("Failed")
    publish = page.locator("tr.step[data-step=publish]")
    expect(publish.locator(".badge").first).to_have_text("Failed")
    detail = page.locator("#step-detail-2")
    expect(detail).to_be_visible()
    expect(publish.get_by_role("button", name="publish")).to_have_attribute("aria-expanded", "true")
    expect(detail).to_contain_text("ConnectionError publish target refused the connection")
    expect(detail.locator("pre.traceback")).to_contain_text("Traceback (most recent call last)")
    for name in ("prepare", "transform"):
        expect(page.locator(f"#step-detail-{['prepare', 'transform'].index(name)}")).to_be_hidden()

    panel = page.get_by_role("region", name="Rollback")
    expect(panel.locator(".cause")).to_have_text(
        "Cause: step publish failed: ConnectionError: publish target refused the connection"
    )
    rows = panel.locator(".rollback-list li")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("items => items.map(i => i.dataset.step)") == [
        "publish",
        "transform",
        "prepare",
    ]
    expect(rows.locator(".badge")).to_have_text(["Rolled back"] * 3)
    expect(panel.locator(".rollback-summary")).to_have_text(
        "3 rolled back · 0 not supported · 0 failed to undo"
    )
    expect(page.locator("table.steps tr.step td:last-child .badge")).to_have_text(
        ["Rolled back"] * 3
    )
    expect(page.get_by_role("tab", name="Logs (3)")).to_be_visible()
    screenshot(page, "run-rolled-back")

    dark_page.goto(page.url)
    expect(dark_page.locator(".rollback-summary")).to_be_visible()
    expect(dark_page.locator("pre.traceback")).to_be_visible()
    screenshot(dark_page, "run-rolled-back-dark")


def test_cancel_mid_run_ends_cancelled_with_the_rollback_of_every_started_step(
    page: Page, server: Server, tmp_path: Path, screenshot: Screenshot
) -> None:
    run_id = server.start("gated", {"gate": str(tmp_path / "never")})
    page.goto(f"/ui/runs/{run_id}")
    wait = page.locator("tr.step[data-step=wait]")
    expect(wait.locator(".badge").first).to_have_text("Running")
    expect(page.locator(".overall-text")).to_have_text("70 % · step 3 of 4: wait 50 %")

    page.get_by_role("button", name="Cancel…").click()
    dialog = page.get_by_role("dialog", name="Cancel this run?")
    expect(dialog.locator("li")).to_have_text(
        [
            "wait stops, then will be rolled back",
            "prepare has no rollback: nothing to undo",
            "fetch will be rolled back",
        ]
    )
    dialog.get_by_role("button", name="Cancel run").click()

    expect(page.locator(".run-head .badge")).to_have_text("Cancelled")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel…")).to_be_hidden()
    expect(page.get_by_role("button", name="Re-run")).to_be_visible()
    panel = page.get_by_role("region", name="Rollback")
    expect(panel.locator(".cause")).to_contain_text("Cause: cancelled on request at")
    expect(panel.locator(".rollback-list li")).to_have_text(
        [
            re.compile(r"^Rolled back wait"),
            "Not supported prepare the step has no rollback: nothing was undone",
            re.compile(r"^Rolled back fetch"),
        ]
    )
    expect(panel.locator(".rollback-summary")).to_have_text(
        "2 rolled back · 1 not supported · 0 failed to undo"
    )
    expect(page.locator("tr.step[data-step=finish] .badge")).to_have_text(["Pending", "Not needed"])
    screenshot(page, "run-cancelled")

    with server.client() as client:
        run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert [s["rollback"]["status"] for s in run["steps"]] == [
        "rolled_back",
        "not_supported",
        "rolled_back",
        "not_needed",
    ]


def test_the_runs_list_gains_a_run_started_over_http_without_a_reload(
    page: Page, server: Server, screenshot: Screenshot
) -> None:
    page.goto("/ui")
    expect(page.locator("#connection")).to_have_text("Live")
    page.evaluate("window.sameDocument = true")

    run_id = server.start("upload", {"step_seconds": 0.4, "files": 2}, source="curl")

    row = page.locator(f"tr[data-run='{run_id}']")
    expect(row).to_be_visible()
    expect(page.locator("table.runs tbody tr").first).to_have_attribute("data-run", run_id)
    expect(row.locator(".badge")).to_have_text("Succeeded")
    expect(row.locator("td.progress")).to_have_text("100 %")
    expect(row.locator(".labels")).to_have_text("source: curl")
    assert page.evaluate("window.sameDocument") is True
    screenshot(page, "runs-list")


def test_a_list_the_server_refuses_says_why_and_is_not_tried_again(
    page: Page, watch: Watch
) -> None:
    # A 400 is an answer, not an absence: the page shows the problem at once, and only
    # a server that does not answer (or answers 429, 502, 503 or 504) is waited for.
    watch.expect_console(r"status of 400")
    page.goto("/ui?label=no-colon")

    box = page.locator(".error-box")
    expect(box).to_contain_text("label")
    expect(box.locator("button")).to_have_text("Try again")
    expect(page.locator(".load-retry")).to_have_count(0)


def test_a_new_run_waits_behind_a_button_while_the_list_is_scrolled_down(
    page: Page, server: Server
) -> None:
    for _ in range(4):  # enough rows to scroll, whichever tests ran before
        server.start("upload", {"step_seconds": 0, "files": 1})
    page.set_viewport_size({"width": 1000, "height": 300})
    page.goto("/ui")
    expect(page.locator("#connection")).to_have_text("Live")
    first = page.locator("table.runs tbody tr").first
    top_run = first.get_attribute("data-run")
    page.mouse.wheel(0, 400)
    wait_until(page, "window.scrollY > 50")

    run_id = server.start("upload", {"step_seconds": 0, "files": 1})

    pill = page.get_by_role("button", name="1 new run")
    expect(pill).to_be_visible()
    assert first.get_attribute("data-run") == top_run
    pill.click()
    expect(first).to_have_attribute("data-run", run_id)
    expect(pill).to_be_hidden()


def test_every_page_is_the_shell_and_a_missing_asset_is_a_404(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        pages = [client.get(p) for p in ("/ui", "/ui/", "/ui/runs/X", "/ui/pipelines/train")]
        missing = client.get("/ui/static/missing.js")
        unknown = client.get("/ui/unknown/page")
        script = client.get("/ui/static/main.js")

    assert {p.text for p in pages} == {pages[0].text}
    assert all(p.headers["content-type"].startswith("text/html") for p in pages)
    assert (missing.status_code, unknown.status_code) == (404, 404)
    assert missing.headers["content-type"] == "application/problem+json"
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"


def test_the_form_has_an_input_for_each_shape_of_param_and_sends_what_was_chosen(
    page: Page, server: Server
) -> None:
    page.goto("/ui/pipelines/shapes")
    expect(page.get_by_label("Count")).to_have_attribute("type", "number")
    expect(page.get_by_label("Ratio")).to_have_value("0.5")
    expect(page.get_by_label("Colours")).to_have_js_property("multiple", True)

    page.get_by_label("Count").fill("3")
    page.get_by_label("Mode").select_option(label="careful")
    page.get_by_label("Dry Run").check()
    page.get_by_label("Tags").fill("a\nb")
    page.get_by_label("Sizes").fill("5\n6")
    page.get_by_label("Colours").select_option(label=["green", "blue"])
    page.get_by_label("Note").fill("hi")
    target = page.get_by_label("Target")
    target.fill("{not json")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#param-target-error")).to_contain_text("This is not valid JSON")
    expect(target).to_be_focused()
    target.fill('{"host": "db", "port": 5432}')
    page.get_by_role("button", name="Start run").click()

    expect(page).to_have_url(RUN_URL)
    expect(page.locator(".run-head .badge")).to_have_text("Succeeded")
    run_id = RUN_URL.search(page.url)
    assert run_id is not None
    with server.client() as client:
        params = client.get(f"/runs/{run_id[1]}").json()["params"]
    assert params == {
        "count": 3,
        "mode": "careful",
        "dry_run": True,
        "ratio": 0.5,
        "tags": ["a", "b"],
        "sizes": [5, 6],
        "colours": ["green", "blue"],
        "note": "hi",
        "target": {"host": "db", "port": 5432},
    }


def test_the_log_follows_only_at_its_bottom_and_keeps_the_last_2000_lines(
    page: Page, server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = server.start("gated", {"gate": str(gate), "logs": 550})
    page.goto(f"/ui/runs/{run_id}#logs")
    log, lines = page.locator("ol.log"), page.locator("ol.log li")
    at_bottom = "l => l.scrollHeight - l.scrollTop - l.clientHeight < 2"
    expect(lines).to_have_count(3 * 550)  # fetch, prepare, wait (held at its gate)
    wait_until(page, f"({at_bottom})(document.querySelector('ol.log'))")

    log.evaluate("l => { l.scrollTop = 0; }")
    gate.touch()

    expect(page.locator(".run-head .badge")).to_have_text("Succeeded")
    expect(lines).to_have_count(2000)
    expect(page.get_by_role("tab", name="Logs (2200)")).to_be_visible()
    expect(page.locator(".log-tools .hint")).to_contain_text("Showing the last 2000 of 2200")
    assert log.evaluate("l => l.scrollTop") == 0
    assert lines.first.get_attribute("data-seq") == str(logged_seqs(server, run_id)[200])
    page.get_by_role("button", name="Jump to latest").click()
    assert log.evaluate(at_bottom) is True


def test_the_list_and_the_run_page_work_from_the_keyboard(page: Page, server: Server) -> None:
    run_id = server.start("upload", {"step_seconds": 0, "files": 1})
    page.goto("/ui")
    expect(page.locator(f"tr[data-run='{run_id}']")).to_be_visible()
    page.keyboard.press("/")
    expect(page.get_by_role("textbox", name="Label")).to_be_focused()
    page.keyboard.press("Escape")
    page.locator("h1").focus()

    page.keyboard.press("j")
    expect(page.locator(f"tr[data-run='{run_id}'] a.mono")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(f"/ui/runs/{run_id}$"))
    steps_tab = page.get_by_role("tab", name="Steps")
    steps_tab.focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name=re.compile("^Logs"))).to_be_focused()
    expect(page.get_by_role("tab", name=re.compile("^Logs"))).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.get_by_role("tabpanel", name=re.compile("^Logs"))).to_be_visible()
    expect(page).to_have_url(re.compile("#logs$"))
