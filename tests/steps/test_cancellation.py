"""Cancellation: at step boundaries, at check_cancelled(), and at an async step's await."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from steps import (
    CancellationToken,
    Cancelled,
    EventType,
    Orchestrator,
    RollbackStatus,
    RunCancelledError,
    RunOutcome,
    StepFailedError,
    StepStatus,
)

from .conftest import AsyncStep, Ctx, Recorder, Step, execute, registry_of

WAIT = 5.0  # seconds a test waits for an event before it fails


def test_cancel_before_execute_runs_nothing(make: Callable[..., Step], ctx: Ctx, mode: str) -> None:
    orchestrator = Orchestrator(registry_of(make("a"), make("b")), ctx)
    orchestrator.cancel("changed my mind")

    with pytest.raises(RunCancelledError, match="changed my mind") as caught:
        execute(orchestrator, mode)

    assert ctx.trace == []
    assert caught.value.report.outcome is RunOutcome.cancelled
    assert [s.status for s in caught.value.report.steps] == [StepStatus.pending] * 2


def test_cancel_between_steps_stops_at_the_next_boundary_and_rolls_back(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    registry = registry_of(
        make("a"), make("b", action=lambda c: c.cancellation.cancel("stop")), make("c")
    )

    with pytest.raises(RunCancelledError) as caught:
        execute(Orchestrator(registry, ctx), mode)

    assert ctx.trace == ["exec a", "exec b", "undo b", "undo a"]
    report = caught.value.report
    assert [s.status for s in report.steps] == [
        StepStatus.succeeded,
        StepStatus.succeeded,
        StepStatus.pending,
    ]
    assert report.rolled_back == ["b", "a"]


def test_a_sync_step_is_stopped_at_check_cancelled_from_another_thread(ctx: Ctx) -> None:
    started, stopped = threading.Event(), threading.Event()

    def long_work(context: Ctx) -> None:
        started.set()
        try:
            while True:
                context.check_cancelled()
                stopped.wait(0.001)
        finally:
            stopped.set()

    orchestrator = Orchestrator(registry_of(Step("a"), Step("long", action=long_work)), ctx)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            orchestrator.execute()
        except RunCancelledError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(WAIT)
    orchestrator.cancel("user pressed stop")
    worker.join(WAIT)

    assert not worker.is_alive()
    report = outcome[0].report  # type: ignore[attr-defined]
    assert report.step("long").status is StepStatus.cancelled
    assert report.failed_step == "long"
    assert ctx.trace == ["exec a", "exec long", "undo long", "undo a"]


def test_an_async_step_is_cancelled_at_its_current_await(ctx: Ctx) -> None:
    entered = asyncio.Event()
    cleaned_up: list[str] = []

    async def sleep_forever(context: Ctx) -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cleaned_up.append("cancelled at await")
            raise

    async def main() -> RunCancelledError:
        orchestrator = Orchestrator(
            registry_of(AsyncStep("a"), AsyncStep("wait", action=sleep_forever)), ctx
        )
        task = asyncio.create_task(orchestrator.execute_async())
        await asyncio.wait_for(entered.wait(), WAIT)
        orchestrator.cancel("enough")
        with pytest.raises(RunCancelledError) as caught:
            await asyncio.wait_for(task, WAIT)
        assert not task.cancelled()
        return caught.value

    error = asyncio.run(main())

    assert cleaned_up == ["cancelled at await"]
    assert error.report.step("wait").status is StepStatus.cancelled
    assert ctx.trace == ["exec a", "exec wait", "undo wait", "undo a"]


def test_cancel_from_another_thread_reaches_an_async_step(ctx: Ctx) -> None:
    entered = threading.Event()

    async def sleep_forever(context: Ctx) -> None:
        entered.set()
        await asyncio.sleep(3600)

    orchestrator = Orchestrator(registry_of(AsyncStep("wait", action=sleep_forever)), ctx)
    canceller = threading.Thread(target=lambda: entered.wait(WAIT) and orchestrator.cancel())
    canceller.start()

    with pytest.raises(RunCancelledError):
        orchestrator.execute()  # runs the async registry on a private loop
    canceller.join(WAIT)

    assert ctx.trace == ["exec wait", "undo wait"]


def test_cancel_can_leave_completed_steps_in_place(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    registry = registry_of(
        make("a"), make("b", action=lambda c: c.cancellation.cancel()), make("c")
    )

    with pytest.raises(RunCancelledError) as caught:
        execute(Orchestrator(registry, ctx, rollback_on_cancel=False), mode)

    assert ctx.trace == ["exec a", "exec b"]
    assert {s.rollback for s in caught.value.report.steps} == {RollbackStatus.not_needed}


def test_cancelling_the_task_from_outside_rolls_back_then_propagates(ctx: Ctx) -> None:
    entered = asyncio.Event()

    async def sleep_forever(context: Ctx) -> None:
        entered.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        orchestrator = Orchestrator(
            registry_of(AsyncStep("a"), AsyncStep("wait", action=sleep_forever)), ctx
        )
        task = asyncio.create_task(orchestrator.execute_async())
        await asyncio.wait_for(entered.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

    assert ctx.trace == ["exec a", "exec wait", "undo wait", "undo a"]


def test_cancel_during_a_retry_backoff_stops_waiting(ctx: Ctx) -> None:
    from steps import RetryPolicy

    policy = RetryPolicy(max_attempts=3, initial_delay=3600, jitter=0)
    recorder = Recorder()
    orchestrator = Orchestrator(
        registry_of(Step("flaky", fail=ValueError("again"), retry=policy)),
        ctx,
        observers=[recorder],
    )
    retrying = threading.Event()
    recorder_on_event = recorder.on_event

    def spy(event: object) -> None:
        recorder_on_event(event)  # type: ignore[arg-type]
        if getattr(event, "type", None) is EventType.step_retrying:
            retrying.set()

    recorder.on_event = spy  # type: ignore[method-assign]
    threading.Thread(target=lambda: retrying.wait(WAIT) and orchestrator.cancel()).start()

    with pytest.raises(RunCancelledError):
        orchestrator.execute()

    assert ctx.trace == ["exec flaky", "undo flaky"]


def test_a_cancel_that_arrives_as_the_last_step_finishes_is_too_late(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    registry = registry_of(make("a"), make("b", action=lambda c: c.cancellation.cancel()))

    result = execute(Orchestrator(registry, ctx), mode)

    assert result["success"] is True
    assert ctx.trace == ["exec a", "exec b"]


def test_the_cancelled_outcome_is_reported_to_observers(ctx: Ctx) -> None:
    recorder = Recorder()
    registry = registry_of(Step("a", action=lambda c: c.cancellation.cancel()), Step("b"))

    with pytest.raises(RunCancelledError):
        Orchestrator(registry, ctx, observers=[recorder]).execute()

    assert recorder.types()[-1] == "run.cancelled"


def test_token_is_one_way_and_runs_callbacks_once() -> None:
    token, calls = CancellationToken(), []
    token.add_callback(lambda: calls.append("first"))
    unregister = token.add_callback(lambda: calls.append("removed"))
    unregister()

    assert token.cancel("why") is True
    assert token.cancel("again") is False
    token.add_callback(lambda: calls.append("late"))

    assert calls == ["first", "late"]
    assert token.reason == "why"
    assert "cancelled" in repr(token)
    with pytest.raises(Cancelled, match="why"):
        token.raise_if_cancelled()


def test_cancelled_is_not_swallowed_by_except_exception() -> None:
    assert not issubclass(Cancelled, Exception)


def test_stop_after_step_lets_the_step_finish_and_rolls_nothing_back(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    orchestrator_box: list[Orchestrator[Ctx]] = []
    registry = registry_of(
        make("a"),
        make("b", action=lambda c: orchestrator_box[0].stop_after_step("bye")),
        make("c"),
    )
    orchestrator = Orchestrator(registry, ctx)
    orchestrator_box.append(orchestrator)

    with pytest.raises(RunCancelledError, match="bye") as caught:
        execute(orchestrator, mode)

    assert ctx.trace == ["exec a", "exec b"]
    assert [s.status for s in caught.value.report.steps] == [
        StepStatus.succeeded,
        StepStatus.succeeded,
        StepStatus.pending,
    ]
    assert {s.rollback for s in caught.value.report.steps} == {RollbackStatus.not_needed}


def test_a_step_that_fails_after_stop_after_step_still_rolls_back(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    orchestrator_box: list[Orchestrator[Ctx]] = []

    def stop_then_fail(context: Ctx) -> None:
        orchestrator_box[0].stop_after_step("bye")
        raise RuntimeError("b broke")

    registry = registry_of(make("a"), make("b", action=stop_then_fail), make("c"))
    orchestrator = Orchestrator(registry, ctx)
    orchestrator_box.append(orchestrator)

    with pytest.raises(StepFailedError, match="b broke"):
        execute(orchestrator, mode)

    assert ctx.trace == ["exec a", "exec b", "undo b", "undo a"]


def test_an_abandoned_rollback_stops_undoing(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    orchestrator_box: list[Orchestrator[Ctx]] = []

    class AbandonWhileUndoing(Step):
        def _undo(self, context: Ctx, result: object) -> None:  # type: ignore[override]
            super()._undo(context, result)  # type: ignore[arg-type]
            orchestrator_box[0].abandon("lease lost")

    first = AbandonWhileUndoing("a") if mode == "sync" else make("a")
    registry = registry_of(first, AbandonWhileUndoing("b"), make("c", fail=ValueError("c")))
    orchestrator = Orchestrator(registry, ctx)
    orchestrator_box.append(orchestrator)

    with pytest.raises(StepFailedError):
        execute(orchestrator, mode)

    assert ctx.trace == ["exec a", "exec b", "exec c", "undo c", "undo b"]
