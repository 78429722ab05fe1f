"""The pieces that draw a run, fed by hand-made runs and events (no server)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from app.cli._console import ASCII, UNICODE, colour_allowed, glyphs_for
from app.cli._format import bar, clock, seconds
from app.cli.live import visible_steps
from app.cli.plain import PlainRenderer
from app.cli.remote import Remote
from app.cli.report import outcome_lines, rollback_lines
from app.cli.state import RunState
from stepline_client import Event, Run

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def step(
    index: int, name: str, status: str, undo: str = "not_needed", **extra: Any
) -> dict[str, Any]:
    return {"index": index, "name": name, "weight": 0.25, "can_rollback": True, "status": status,
            "progress": 1.0 if status == "succeeded" else 0.0, "attempts": 1,
            "rollback": {"status": undo}, **extra}  # fmt: skip


def make_run(status: str, steps: list[dict[str, Any]], **extra: Any) -> Run:
    return Run.model_validate(
        {"id": "01RUN", "pipeline": "p", "status": status, "progress": 0.5, "steps": steps,
         "created_at": T0, "started_at": T0, "updated_at": T0,
         "finished_at": T0 + timedelta(seconds=14.1), **extra}
    )  # fmt: skip


def texts(lines: list[Any]) -> list[str]:
    return [line.plain for line in lines]


def test_the_rollback_is_listed_newest_first_with_each_outcome() -> None:
    run = make_run(
        "failed",
        [
            step(0, "initialize", "succeeded", "not_supported"),
            step(1, "validate", "succeeded", "rolled_back"),
            step(2, "upload", "failed", "failed", attempts=3,
                 error={"type": "ConnectionError", "message": "bucket unreachable"}),
            step(3, "cleanup", "pending"),
        ],
        error={"type": "ConnectionError", "message": "bucket unreachable", "step": "upload"},
    )  # fmt: skip
    run.steps[2].rollback.error = run.steps[2].error

    lines = texts([*rollback_lines(run, UNICODE), *outcome_lines(run, UNICODE, Remote())])

    assert lines[0] == "↺ rollback, newest first"
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["✗", "upload"], ["↺", "validate"], ["\u2013", "initialize"]
    ]  # fmt: skip
    assert "(the remaining rollbacks still ran)" in lines[1]
    assert "nothing undone" in lines[3]
    assert lines[4] == (
        "✗ failed at step 'upload' after 14.1s · rollback done: 1 rolled back, "
        "1 not supported, 1 failed"
    )
    assert lines[5] == "  cause  ConnectionError: bucket unreachable, after 3 attempts"
    assert lines[6] == "  next   stepline logs 01RUN --step upload   ·   stepline show 01RUN"


def test_steps_kept_by_a_cancel_without_rollback_are_said_to_be_kept() -> None:
    run = make_run(
        "cancelled",
        [step(0, "a", "succeeded"), step(1, "b", "cancelled")],
        error={"message": "cancelled by request", "step": "b"},
    )

    lines = texts([*rollback_lines(run, ASCII), *outcome_lines(run, ASCII, Remote())])

    assert lines[1].split() == ["-", "a", "kept", "(not", "rolled", "back)"]
    assert lines[2].startswith("/ cancelled at step 'b' after 14.1s | nothing to roll back")


def test_a_succeeded_run_reports_its_result() -> None:
    run = make_run("succeeded", [step(0, "a", "succeeded")], result={"model": 1})

    assert texts(outcome_lines(run, UNICODE, Remote())) == [
        "run".replace("run", '✓ succeeded in 14.1s · result {"model": 1}')
    ]
    assert rollback_lines(run, UNICODE) == []


def test_suggested_commands_name_a_server_that_is_not_the_default() -> None:
    run = make_run("cancelled", [step(0, "a", "cancelled")])

    (*_, hints) = texts(outcome_lines(run, UNICODE, Remote("http://h:1")))

    assert hints == "  next   stepline --server http://h:1 show 01RUN"


def test_a_long_pipeline_shows_the_steps_in_play_and_their_neighbours() -> None:
    run = make_run(
        "running",
        [step(i, f"s{i}", "succeeded" if i < 30 else "running" if i == 30 else "pending")
         for i in range(100)],
    )  # fmt: skip

    shown, hidden = visible_steps(run.steps, 5)

    assert [s.name for s in shown] == ["s28", "s29", "s30", "s31", "s32"]
    assert hidden == 95
    assert visible_steps(run.steps[:3], 5) == (run.steps[:3], 0)


def test_the_state_follows_deltas_from_the_snapshot() -> None:
    run = make_run("running", [step(0, "a", "running"), step(1, "b", "pending")])
    state = RunState()
    state.apply(Event(type="run.snapshot", id="3", data=run.model_dump(mode="json")))
    for seq, kind, data in [
        (4, "step.progress", {"step": "a", "step_progress": 0.5, "progress": 0.25}),
        (5, "step.succeeded", {"step": "a", "duration_seconds": 1.5, "progress": 0.5}),
        (6, "step.started", {"step": "b", "attempt": 1, "time": "2026-01-02T03:04:07Z"}),
        (7, "step.failed", {"step": "b", "error": {"type": "E", "message": "m"}}),
        (8, "run.rollback_started", {"status": "rolling_back", "steps": ["b", "a"]}),
        (9, "step.rolled_back", {"step": "b"}),
    ]:
        state.apply(Event(type=kind, id=str(seq), data=data))

    assert state.last_seq == 9
    assert state.status == "rolling_back"
    a, b = state.run.steps  # type: ignore[union-attr]
    assert (a.status, a.progress, a.duration_seconds, a.rollback.status) == (
        "succeeded", 1.0, 1.5, "pending"
    )  # fmt: skip
    assert (b.status, b.error.message, b.rollback.status) == ("failed", "m", "rolled_back")  # type: ignore[union-attr]
    assert b.started_at == datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC)


def test_plain_lines_report_progress_at_most_every_ten_seconds() -> None:
    out = io.StringIO()
    renderer = PlainRenderer(Console(file=out, color_system=None, width=200), UNICODE)
    run = make_run("running", [step(0, "a", "running")])
    renderer.event(Event(type="run.snapshot", id="1", data=run.model_dump(mode="json")))
    for seq in range(2, 50):
        renderer.event(Event(type="step.progress", id=str(seq),
                             data={"step": "a", "step_progress": seq / 100}))  # fmt: skip
    renderer._progress_at -= 10  # ten seconds later
    renderer.event(Event(type="step.progress", id="50", data={"step": "a", "step_progress": 0.5}))

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("  … a  50.0% · run 50.0%")


def test_bars_durations_and_glyphs() -> None:
    assert bar(0.48, 20, UNICODE).plain == "━" * 9 + "╸" + "─" * 10
    assert bar(1.5, 4, ASCII).plain == "####"
    assert [seconds(v) for v in (0.25, 4.1, 64.2, 3723, None)] == [
        "0.2s", "4.1s", "1:04.2", "1:02:03", "-"
    ]  # fmt: skip
    assert clock(31.9) == "0:00:31"
    assert glyphs_for(Console(file=io.StringIO(), force_terminal=False)) in (UNICODE, ASCII)
    assert colour_allowed({"TERM": "xterm"})
    assert not colour_allowed({"NO_COLOR": "1"})
    assert colour_allowed({"NO_COLOR": ""})  # set but empty does not count (no-color.org)
    assert not colour_allowed({"TERM": "dumb"})
