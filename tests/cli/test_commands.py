"""``stepline run`` (without following), ``runs``, ``show``, ``logs``, ``pipelines`` and
``cancel`` against a real server: their output read as a user or a script reads it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stepline_client import Client

from .conftest import WAIT, Stepline, wait_for_event

ID = r"[0-9A-Z]{26}"


def table(text: str) -> list[list[str]]:
    """The rows of a borderless table, split on runs of two or more spaces."""
    return [re.split(r" {2,}", line.strip()) for line in text.splitlines() if line.strip()]


def test_run_prints_the_id_alone_on_stdout_and_how_to_follow_on_stderr(
    stepline: Stepline, client: Client, tmp_path: Path
) -> None:
    params = tmp_path / "params.json"
    params.write_text('{"fail_at": "c", "logs": 5}')

    done = stepline(
        "run", "controlled", "--params-file", str(params), "-p", "logs=2", "-p", "gate=007",
        "-l", "suite=run", "--idempotency-key", "cli-run-once",
    )  # fmt: skip
    again = stepline(
        "run", "controlled", "--params-file", "-", "-p", "logs=2", "-p", "gate=007",
        "-l", "suite=run", "--idempotency-key", "cli-run-once",
        stdin='{"fail_at": "c", "logs": 5}',
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert re.fullmatch(ID, run_id)
    assert again.stdout.strip() == run_id  # the same key and body: the same run
    assert f"follow it: stepline watch {run_id}" in done.stderr
    run = client.runs.get(run_id)
    assert run.params["fail_at"] == "c"
    assert run.params["logs"] == 2  # -p wins over the file, and 2 is a number
    assert run.params["gate"] == "007"  # not JSON, so a string
    assert run.labels == {"suite": "run"}


def test_runs_lists_newest_first_with_filters_and_json(stepline: Stepline, client: Client) -> None:
    ok = client.runs.create("controlled", labels={"suite": "list"}).id
    bad = client.runs.create("controlled", {"fail_at": "a"}, labels={"suite": "list"}).id
    other = client.runs.create("controlled", labels={"suite": "elsewhere"}).id
    for run_id in (ok, bad, other):
        client.runs.wait(run_id, timeout=WAIT)

    listed = stepline("runs", "--label", "suite=list")
    both = stepline("runs", "-l", "suite=list", "--status", "failed", "--status", "succeeded",
                    "--json")  # fmt: skip
    failed = stepline("runs", "-l", "suite=list", "--status", "failed", "--limit", "5")

    assert listed.returncode == 0, listed.stderr
    header, *rows = table(listed.stdout)
    assert header == ["STATUS", "ID", "PIPELINE", "PROGRESS", "STEP", "CREATED", "DURATION",
                      "LABELS"]  # fmt: skip
    assert [row[:3] for row in rows] == [
        ["✗ failed", bad, "controlled"],
        ["✓ succeeded", ok, "controlled"],
    ]
    assert rows[0][3:5] == ["0.0%", "a"]
    assert rows[1][-1] == "suite=list"
    assert [r["id"] for r in json.loads(both.stdout)] == [bad, ok]
    assert [row[1] for row in table(failed.stdout)[1:]] == [bad]


def test_show_tells_the_steps_the_error_the_rollback_and_what_next(
    stepline: Stepline, client: Client
) -> None:
    run_id = client.runs.create("controlled", {"fail_at": "b"}, labels={"suite": "show"}).id
    client.runs.wait(run_id, timeout=WAIT)

    shown = stepline("show", run_id)
    as_json = stepline("show", run_id, "--json")
    traceback = stepline("show", run_id, "--traceback")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"✗ failed  controlled · {run_id}"
    assert "  labels   suite=show" in lines
    steps_at = lines.index(next(line for line in lines if line.startswith("#  STEP")))
    steps = table("\n".join(lines[steps_at : steps_at + 4]))
    assert steps == [
        ["#", "STEP", "WEIGHT", "STATUS", "PROGRESS", "ATTEMPTS", "DURATION", "ROLLBACK"],
        ["1", "a", "20%", "✓ succeeded", "100.0%", "1", steps[1][6], "rolled back"],
        ["2", "b", "50%", "✗ failed", "0.0%", "1", steps[2][6], "rolled back"],
        ["3", "c", "30%", "· pending", "0.0%", "0", "-", "-"],
    ]
    assert "✗ b: RuntimeError: b failed on purpose" in lines
    assert "↺ rollback, newest first" in lines
    assert any(line.startswith("✗ failed at step 'b' after ") for line in lines)
    assert f"  next   stepline logs {run_id} --step b   ·   stepline show {run_id}" in lines
    assert "Traceback (most recent call last)" not in shown.stdout
    assert "Traceback (most recent call last)" in traceback.stdout
    assert json.loads(as_json.stdout) == client.runs.get(run_id).model_dump(mode="json")


def test_show_of_a_run_still_going_says_how_to_follow_it(
    stepline: Stepline, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = client.runs.create("file_gate", {"gate": str(gate)}).id
    wait_for_event(client, run_id, "step.started", "b")

    shown = stepline("show", run_id)
    gate.touch()

    assert shown.stdout.splitlines()[0] == f"▶ running  file_gate · {run_id}"
    assert shown.stdout.splitlines()[-1] == f"follow it: stepline watch {run_id}"
    assert client.runs.wait(run_id, timeout=WAIT).status == "succeeded"


def test_logs_prints_each_line_with_its_step_and_filters_and_tails(
    stepline: Stepline, client: Client
) -> None:
    run_id = client.runs.create("controlled", {"logs": 2}).id
    client.runs.wait(run_id, timeout=WAIT)

    every = stepline("logs", run_id)
    only_b = stepline("logs", run_id, "--step", "b")
    last = stepline("logs", run_id, "--tail", "1", "--json")

    assert every.returncode == 0, every.stderr
    parsed = [line.split() for line in every.stdout.splitlines()]
    assert [(p[1], p[2], p[3], p[4:]) for p in parsed] == [
        (step, "info", "line", ['{"n":', f"{n}}}"]) for step in "abc" for n in (0, 1)
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p[0]) for p in parsed)
    assert [line.split()[1] for line in only_b.stdout.splitlines()] == ["b", "b"]
    (tail,) = [json.loads(line) for line in last.stdout.splitlines()]
    assert (tail["step"], tail["event"], tail["data"]) == ("c", "line", {"n": 1})


def test_logs_follow_prints_new_lines_once_until_the_run_ends(
    stepline: Stepline, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = client.runs.create("file_gate", {"gate": str(gate), "logs": 2}).id
    wait_for_event(client, run_id, "step.started", "b")

    with stepline.start("logs", run_id, "-f") as following:
        following.out.wait_for(r"\sb\s+info\s+line\s+\{\"n\": 1\}")  # b logs before its gate
        gate.touch()
        assert following.wait() == 0, following.err.seen

    steps = [line.split()[1] for line in following.out.seen]
    assert steps == ["a", "a", "b", "b", "c", "c"]


def test_pipelines_lists_the_catalogue_and_shows_one(stepline: Stepline) -> None:
    listed = stepline("pipelines")
    one = stepline("pipelines", "controlled")
    as_json = stepline("pipelines", "upload", "--json")
    missing = stepline("pipelines", "nope")

    rows = {row[0]: row[1:] for row in table(listed.stdout)}
    assert rows["NAME"] == ["STEPS", "TITLE"]
    assert rows["controlled"][0] == "a → b → c"
    assert rows["upload"] == ["initialize → validate → upload → cleanup", "Upload files"]
    lines = one.stdout.splitlines()
    steps_at = lines.index(next(line for line in lines if line.startswith("#  STEP")))
    assert table("\n".join(lines[steps_at : steps_at + 4])) == [
        ["#", "STEP", "WEIGHT", "ROLLBACK", "RETRY", "TIMEOUT"],
        ["1", "a", "20%", "undo", "-", "-"],
        ["2", "b", "50%", "undo", "-", "-"],
        ["3", "c", "30%", "undo", "-", "-"],
    ]
    params = {row[0]: row[1:] for row in table(one.stdout) if row[0] in ("fail_at", "logs")}
    assert params["logs"] == ["integer", "0"]
    assert json.loads(as_json.stdout)["name"] == "upload"
    assert missing.returncode == 4
    assert "404" in missing.stderr


def test_cancel_says_what_will_roll_back_and_wait_follows_it_to_exit_3(
    stepline: Stepline, client: Client
) -> None:
    run_id = client.runs.create("controlled", {"gate_at": "b", "gate": "cli-cancel-wait"}).id
    wait_for_event(client, run_id, "step.started", "b")

    done = stepline("cancel", run_id, "--wait")
    again = stepline("cancel", run_id)

    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"cancel requested for run {run_id} · will roll back: b, a"
    assert lines[1] == "↺ rollback, newest first"
    assert [line.split()[:4] for line in lines[2:4]] == [
        ["↺", "b", "rolled", "back"],
        ["↺", "a", "rolled", "back"],
    ]
    assert lines[4].startswith("⊘ cancelled at step 'b' after ")
    assert again.returncode == 4  # already finished: the API answers 409
    assert "409" in again.stderr
