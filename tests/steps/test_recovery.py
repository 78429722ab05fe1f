"""Finishing a run another process left: resume it, or roll back what it did, once."""

from __future__ import annotations

import asyncio

import pytest

from steps import (
    Orchestrator,
    Recovery,
    RollbackStatus,
    StepCheckpoint,
    StepFailedError,
    StepResult,
    StepStatus,
)

from .conftest import Ctx, Recorder, Step, registry_of

DONE = StepCheckpoint(StepStatus.succeeded, attempts=1, result=StepResult(data={"kept": True}))
INTERRUPTED = StepCheckpoint(StepStatus.running, attempts=1)
PENDING = StepCheckpoint(StepStatus.pending)


def recover(
    orchestrator: Orchestrator[Ctx], checkpoints: list[StepCheckpoint], how: Recovery
) -> dict[str, object]:
    return asyncio.run(orchestrator.recover_async(checkpoints, how, "the worker died"))


def test_resume_runs_the_interrupted_step_again_and_carries_on(ctx: Ctx) -> None:
    recorder = Recorder()
    orchestrator = Orchestrator(
        registry_of(Step("a", 0.2), Step("b", 0.5), Step("c", 0.3)), ctx, observers=[recorder]
    )

    result = recover(orchestrator, [DONE, INTERRUPTED, PENDING], Recovery.resume)

    assert result == {"success": True, "steps_executed": 3, "steps_total": 3}
    assert ctx.trace == ["exec b", "exec c"]
    assert orchestrator.report is not None
    assert [s.status for s in orchestrator.report.steps] == [StepStatus.succeeded] * 3
    assert ctx.step_results[0].data == {"kept": True}
    first_done = next(e for e in recorder.events if e.type.value == "step.succeeded")
    assert first_done.progress == 0.7  # a's 20 % counted before b's 50 %


def test_rollback_undoes_the_interrupted_step_and_those_before_it(ctx: Ctx) -> None:
    orchestrator = Orchestrator(registry_of(Step("a"), Step("b"), Step("c")), ctx)

    with pytest.raises(StepFailedError, match="the worker died") as caught:
        recover(orchestrator, [DONE, INTERRUPTED, PENDING], Recovery.rollback)

    assert ctx.trace == ["undo b", "undo a"]
    report = caught.value.report
    assert report.failed_step == "b"
    assert [(s.status, s.rollback) for s in report.steps] == [
        (StepStatus.succeeded, RollbackStatus.rolled_back),
        (StepStatus.failed, RollbackStatus.rolled_back),
        (StepStatus.pending, RollbackStatus.not_needed),
    ]


def test_a_rollback_interrupted_half_way_continues_backwards_undoing_nothing_twice(
    ctx: Ctx,
) -> None:
    checkpoints = [
        StepCheckpoint(StepStatus.succeeded, RollbackStatus.pending, 1),
        StepCheckpoint(StepStatus.succeeded, RollbackStatus.running, 1),
        StepCheckpoint(StepStatus.succeeded, RollbackStatus.rolled_back, 1),
        StepCheckpoint(StepStatus.failed, RollbackStatus.failed, 1),
    ]
    orchestrator = Orchestrator(registry_of(Step("a"), Step("b"), Step("c"), Step("d")), ctx)

    with pytest.raises(StepFailedError):
        recover(orchestrator, checkpoints, Recovery.rollback)

    assert ctx.trace == ["undo b", "undo a"]  # b's undo never ended: it runs again
    assert orchestrator.report is not None
    assert [s.rollback for s in orchestrator.report.steps] == [
        RollbackStatus.rolled_back, RollbackStatus.rolled_back,
        RollbackStatus.rolled_back, RollbackStatus.failed,
    ]  # fmt: skip


def test_a_recovered_cancel_ends_cancelled(ctx: Ctx) -> None:
    from steps import RunCancelledError

    orchestrator = Orchestrator(registry_of(Step("a"), Step("b")), ctx)

    with pytest.raises(RunCancelledError):
        asyncio.run(
            orchestrator.recover_async(
                [DONE, INTERRUPTED], Recovery.rollback, "stopped", cancelled=True
            )
        )

    assert ctx.trace == ["undo b", "undo a"]
    assert orchestrator.report is not None
    assert orchestrator.report.step("b").status is StepStatus.cancelled


def test_checkpoints_must_match_the_steps(ctx: Ctx) -> None:
    orchestrator = Orchestrator(registry_of(Step("a"), Step("b")), ctx)

    with pytest.raises(ValueError, match="1 step checkpoints for a run of 2 steps"):
        recover(orchestrator, [DONE], Recovery.resume)
