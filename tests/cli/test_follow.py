"""``stepline run --follow`` and ``watch`` against a real server: the exit code is the
outcome, the plain lines and the NDJSON are what a script reads."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from stepline_client import Client
from tests.app.processes import free_port

from .conftest import WAIT, Stepline, plain_lines

RUN_HEADER = r"^Run (\w+) \((\w+)\) · (\S+)$"


def test_a_run_that_succeeds_exits_0_and_says_so(stepline: Stepline) -> None:
    done = stepline("run", "controlled", "--follow", "-l", "suite=follow")

    assert done.returncode == 0, done.stderr
    run_id = re.search(RUN_HEADER, done.stderr, re.M)
    assert run_id, done.stderr
    assert run_id.group(2) == "controlled"
    assert run_id.group(3).endswith(f"/ui/runs/{run_id.group(1)}")
    assert re.fullmatch(r"✓ succeeded in \d+\.\ds · result \{.*\}\n", done.stdout)
    transitions = plain_lines(done.stderr)
    assert transitions[-1] == ("✓", "run succeeded · 100.0%")
    succeeded = [rest.split()[0] for glyph, rest in transitions if "succeeded in" in rest]
    assert succeeded == ["a", "b", "c"]


def test_a_failed_run_exits_1_with_its_rollback_newest_first(stepline: Stepline) -> None:
    done = stepline("run", "controlled", "-p", "fail_at=c", "-p", 'undo_fails=["a"]', "--follow")

    assert done.returncode == 1, done.stderr
    transitions = plain_lines(done.stderr)
    kinds = [(glyph, " ".join(rest.split()[:3])) for glyph, rest in transitions]
    assert kinds[-9:] == [
        ("✗", "c failed: RuntimeError:"),
        ("↺", "rolling back (failed),"),
        ("↺", "c rolling back"),
        ("↺", "c rolled back"),
        ("↺", "b rolling back"),
        ("↺", "b rolled back"),
        ("↺", "a rolling back"),
        ("✗", "a rollback failed:"),
        ("✗", "run failed ·"),
    ]
    assert "newest first: c, b, a" in transitions[-8][1]

    report = done.stdout.splitlines()
    assert report[0] == "↺ rollback, newest first"
    rows = [line.split(None, 3) for line in report[1:4]]
    assert [(r[0], r[1]) for r in rows] == [("↺", "c"), ("↺", "b"), ("✗", "a")]
    assert rows[2][2:] == [
        "rollback",
        "failed  OSError: cannot undo a  (the remaining rollbacks still ran)",
    ]
    assert re.fullmatch(
        r"✗ failed at step 'c' after \d+\.\ds · rollback done: 2 rolled back, "
        r"0 not supported, 1 failed",
        report[4],
    )
    assert report[5] == "  cause  RuntimeError: c failed on purpose"
    assert re.fullmatch(r"  next   stepline logs \w+ --step c   ·   stepline show \w+", report[6])


def test_a_run_cancelled_mid_step_exits_3_after_rolling_back(
    stepline: Stepline, client: Client
) -> None:
    # Step b waits at a gate that only a cancel ends: the cancel always comes mid-run.
    command = ("run", "controlled", "-p", "gate_at=b", "-p", "gate=cli-cancel", "--follow")
    with stepline.start(*command) as following:
        run_id = following.err.wait_for(RUN_HEADER).group(1)
        # Either the follower saw b start, or b was already running when it connected.
        following.err.wait_for(r"▶ b\s+started|running · [\d.]+% · step 2/3 b$")

        client.runs.cancel(run_id)

        assert following.wait() == 3, following.err.seen
    transitions = plain_lines("\n".join(following.err.seen))
    assert ("⊘", "cancel requested") in transitions
    assert [rest.split()[0] for glyph, rest in transitions if "rolled back" in rest] == ["b", "a"]
    assert transitions[-1][0] == "⊘"
    assert transitions[-1][1].startswith("run cancelled")
    report = following.out.seen
    assert [line.split()[:2] for line in report[1:3]] == [["↺", "b"], ["↺", "a"]]
    assert report[3].startswith("⊘ cancelled at step 'b' after ")
    assert report[3].endswith("rollback done: 2 rolled back, 0 not supported, 0 failed")
    assert report[4] == "  cause  cancelled by request"
    assert client.runs.get(run_id).status == "cancelled"


def test_the_timeout_exits_124_and_leaves_the_run_going(
    stepline: Stepline, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"

    done = stepline("run", "file_gate", "-p", f"gate={gate}", "-f", "--timeout", "1s")

    assert done.returncode == 124, done.stderr
    run_id = re.search(RUN_HEADER, done.stderr, re.M).group(1)  # type: ignore[union-attr]
    assert f"Re-attach: stepline watch {run_id}" in done.stderr
    assert client.runs.get(run_id).status == "running"
    gate.touch()
    assert client.runs.wait(run_id, timeout=WAIT).status == "succeeded"


def test_ctrl_c_detaches_with_130_and_never_cancels(
    stepline: Stepline, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = client.runs.create("file_gate", {"gate": str(gate)}).id
    with stepline.start("watch", run_id) as watching:
        watching.err.wait_for(r"step 2/3 b|▶ b\s+started")

        watching.process.send_signal(signal.SIGINT)

        assert watching.wait() == 130
    assert f"Re-attach: stepline watch {run_id}" in watching.err.seen[-1]
    assert "not cancelled" in watching.err.seen[-1]
    assert client.runs.get(run_id).status == "running"
    gate.touch()
    assert client.runs.wait(run_id, timeout=WAIT).status == "succeeded"


def test_json_is_ndjson_of_every_event_in_order_then_the_final_run(stepline: Stepline) -> None:
    done = stepline("run", "controlled", "-p", "fail_at=b", "-p", "logs=1", "-f", "--json")

    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    *events, final = lines
    assert events[0]["type"] == "run.snapshot"
    assert all(set(e) == {"type", "seq", "data"} for e in events)
    # The command created the run: it starts from the run as created (however far the run
    # got before the stream opened) and misses none of its events.
    assert events[0]["data"]["status"] == "queued"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))
    assert [e["data"]["seq"] for e in events[1:]] == seqs[1:]
    assert events[-1]["type"] == "run.failed"
    assert "step.log" in {e["type"] for e in events}
    assert final["id"] == events[0]["data"]["id"]
    assert final["status"] == "failed"
    assert [s["rollback"]["status"] for s in final["steps"]] == [
        "rolled_back", "rolled_back", "not_needed"
    ]  # fmt: skip
    assert done.stderr == ""


def test_watch_of_a_finished_run_reports_it_and_exits_with_its_outcome(
    stepline: Stepline, client: Client
) -> None:
    run_id = client.runs.create("controlled", {"fail_at": "a"}).id
    client.runs.wait(run_id, timeout=WAIT)

    done = stepline("watch", run_id)

    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-3].startswith("✗ failed at step 'a' after ")


def test_connection_refused_exits_4(stepline: Stepline) -> None:
    done = stepline("--server", f"http://127.0.0.1:{free_port()}", "run", "controlled", "-f")

    assert done.returncode == 4
    assert "cannot reach http://127.0.0.1:" in done.stderr
    assert done.stdout == ""
