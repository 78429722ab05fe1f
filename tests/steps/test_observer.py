"""Observers hear every transition, in order; this is how the service persists and streams."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steps import EventType, Orchestrator, StepFailedError

from .conftest import Ctx, NoUndoStep, Recorder, Step, execute, registry_of


def test_a_successful_run_reports_each_step_in_order(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    recorder = Recorder()
    registry = registry_of(make("a"), make("b", skip=True), make("c"))

    execute(Orchestrator(registry, ctx, observers=[recorder]), mode)

    assert recorder.types() == [
        "run.started",
        "step.started:a",
        "step.succeeded:a",
        "step.skipped:b",
        "step.started:c",
        "step.succeeded:c",
        "run.succeeded",
    ]
    assert recorder.events[0].data == {"steps_total": 3}
    succeeded = recorder.events[2]
    assert succeeded.result is not None
    assert succeeded.result.data == {"step": "a"}


def test_a_failed_run_reports_the_failure_then_the_rollback_in_reverse(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    recorder = Recorder()
    registry = registry_of(
        make("a"),
        NoUndoStep("b") if mode == "sync" else make("b"),
        make("c", undo_fails=True),
        make("d", fail=ValueError("d")),
    )

    with pytest.raises(StepFailedError):
        execute(Orchestrator(registry, ctx, observers=[recorder]), mode)

    middle = ["step.rollback_started:b", "step.rolled_back:b"] if mode == "async" else []
    assert recorder.types() == [
        "run.started",
        "step.started:a",
        "step.succeeded:a",
        "step.started:b",
        "step.succeeded:b",
        "step.started:c",
        "step.succeeded:c",
        "step.started:d",
        "step.failed:d",
        "run.rollback_started",
        "step.rollback_started:d",
        "step.rolled_back:d",
        "step.rollback_started:c",
        "step.rollback_failed:c",
        *middle,
        "step.rollback_started:a",
        "step.rolled_back:a",
        "run.failed",
    ]
    started = next(e for e in recorder.events if e.type is EventType.rollback_started)
    planned = ["d", "c", "b", "a"] if mode == "async" else ["d", "c", "a"]
    assert started.data is not None
    assert started.data["steps"] == planned
    assert started.data["not_supported"] == ([] if mode == "async" else ["b"])
    assert started.data["reason"] == "failed"
    assert started.data["pivot"] is None
    rollback = [e.rollback_progress for e in recorder.events if e.rollback_progress is not None]
    assert rollback == sorted(rollback)
    assert rollback[-1] == 1.0
    failed = next(e for e in recorder.events if e.type is EventType.step_failed)
    assert isinstance(failed.error, ValueError)


def test_every_event_carries_the_overall_progress(ctx: Ctx) -> None:
    recorder = Recorder()

    Orchestrator(registry_of(Step("a", 1), Step("b", 3)), ctx, observers=[recorder]).execute()

    assert [(e.type.value, e.progress) for e in recorder.events] == [
        ("run.started", 0.0),
        ("step.started", 0.0),
        ("step.succeeded", 0.25),
        ("step.started", 0.25),
        ("step.succeeded", 1.0),
        ("run.succeeded", 1.0),
    ]


def test_logs_written_through_the_context_become_step_log_events(ctx: Ctx) -> None:
    recorder = Recorder()

    def talk(context: Ctx) -> None:
        context.log("uploaded", {"files": 3})
        context.log_message("done with {n} files", n=3)
        context.set_metrics({"accuracy": 0.9})

    Orchestrator(registry_of(Step("talk", action=talk)), ctx, observers=[recorder]).execute()

    logs = [e for e in recorder.events if e.type is EventType.step_log]
    assert [(e.step, e.data) for e in logs] == [
        ("talk", {"level": "info", "event": "uploaded", "data": {"files": 3}, "step": "talk"}),
        (
            "talk",
            {
                "level": "info",
                "event": "message",
                "data": {"content": "done with 3 files"},
                "step": "talk",
            },
        ),
        (
            "talk",
            {
                "level": "info",
                "event": "metrics",
                "data": {"step": "talk", "accuracy": 0.9},
                "step": "talk",
            },
        ),
    ]


def test_several_observers_each_get_every_event(ctx: Ctx) -> None:
    first, second = Recorder(), Recorder()

    Orchestrator(registry_of(Step("a")), ctx, observers=[first, second]).execute()

    assert (
        first.types()
        == second.types()
        == [
            "run.started",
            "step.started:a",
            "step.succeeded:a",
            "run.succeeded",
        ]
    )


def test_an_observer_error_during_rollback_does_not_stop_the_undo(ctx: Ctx) -> None:
    class BreaksOnRollback(Recorder):
        def on_event(self, event: object) -> None:
            super().on_event(event)  # type: ignore[arg-type]
            if getattr(event, "type", None) is EventType.step_rolled_back:
                raise ConnectionError("lost the store")

    registry = registry_of(Step("a"), Step("b"), Step("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError):
        Orchestrator(registry, ctx, observers=[BreaksOnRollback()]).execute()

    assert ctx.trace[-3:] == ["undo c", "undo b", "undo a"]
    assert any("lost the store" in e for e in ctx.errors)


def test_logs_written_during_rollback_are_attributed_to_the_step_rolled_back(ctx: Ctx) -> None:
    recorder = Recorder()

    class Talker(Step):
        def rollback(self, context: Ctx, result: object) -> None:  # type: ignore[override]
            context.log("undoing", {})

    registry = registry_of(Talker("a"), Talker("b"), Step("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError):
        Orchestrator(registry, ctx, observers=[recorder]).execute()

    logs = [e.step for e in recorder.events if e.type is EventType.step_log]
    assert logs == ["b", "a"]
