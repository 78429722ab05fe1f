"""Async steps: awaited on the loop; sync steps in a mixed registry run in worker threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from steps import EventType, Orchestrator, RetryPolicy, StepFailedError, StepResult
from steps._thread_progress import THREAD_PROGRESS_INTERVAL

from .conftest import AsyncStep, Ctx, Recorder, Step, registry_of

WAIT = 10.0  # seconds a test waits for what it expects


def test_a_mixed_registry_runs_in_order_with_execute_async(ctx: Ctx) -> None:
    registry = registry_of(Step("a"), AsyncStep("b"), Step("c"), AsyncStep("d"))

    result = asyncio.run(Orchestrator(registry, ctx).execute_async())

    assert result == {"success": True, "steps_executed": 4, "steps_total": 4}
    assert ctx.trace == ["exec a", "exec b", "exec c", "exec d"]


def test_sync_steps_run_in_a_worker_thread_and_do_not_block_the_loop(ctx: Ctx) -> None:
    loop_thread: list[int] = []
    step_thread: list[int] = []
    started, release = threading.Event(), threading.Event()

    def blocking(context: Ctx) -> None:
        step_thread.append(threading.get_ident())
        started.set()
        assert release.wait(5), "the event loop was blocked by a sync step"

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        run = asyncio.create_task(
            Orchestrator(registry_of(Step("block", action=blocking)), ctx).execute_async()
        )
        # This await completes only if the loop keeps running while the step blocks.
        assert await asyncio.wait_for(asyncio.to_thread(started.wait, 5), 5)
        release.set()
        await asyncio.wait_for(run, 5)

    asyncio.run(main())

    assert step_thread[0] != loop_thread[0]


class ThreadNamed(Step):
    """Records in the trace the thread it executes and rolls back on, and what it sees."""

    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="nothing")

    def execute(self, context: Ctx) -> StepResult:
        context.trace.append(f"exec {self.name} on {threading.current_thread().name}")
        context.trace.append(f"{self.name} sees {self.seen.get()}")
        return StepResult()

    def rollback(self, context: Ctx, result: StepResult) -> None:
        context.trace.append(f"undo {self.name} on {threading.current_thread().name}")


def test_sync_steps_and_their_rollbacks_run_in_the_executor_given(ctx: Ctx) -> None:
    registry = registry_of(ThreadNamed("a"), Step("b", fail=ValueError("b")))

    async def main() -> None:
        ThreadNamed.seen.set("the caller's context")
        with ThreadPoolExecutor(1, thread_name_prefix="mine") as executor:
            await Orchestrator(registry, ctx, executor=executor).execute_async()

    with pytest.raises(StepFailedError):
        asyncio.run(main())

    assert ctx.trace == [
        "exec a on mine_0", "a sees the caller's context", "exec b", "undo b", "undo a on mine_0"
    ]  # fmt: skip


def test_async_steps_run_on_the_loop_thread(ctx: Ctx) -> None:
    threads: list[int] = []

    async def where(context: Ctx) -> None:
        threads.append(threading.get_ident())

    async def main() -> int:
        await Orchestrator(registry_of(AsyncStep("a", action=where)), ctx).execute_async()
        return threading.get_ident()

    assert asyncio.run(main()) == threads[0]


def test_progress_from_a_sync_step_in_a_thread_reaches_observers_on_the_loop(ctx: Ctx) -> None:
    def work(context: Ctx) -> None:
        for i in range(1, 4):
            context.set_progress(i, 3)

    recorder, observer_threads = Recorder(), set()
    recorder_on_event = recorder.on_event

    def on_event(event: object) -> None:
        observer_threads.add(threading.get_ident())
        recorder_on_event(event)  # type: ignore[arg-type]

    recorder.on_event = on_event  # type: ignore[method-assign]

    async def main() -> int:
        registry = registry_of(Step("a", 1, action=work), AsyncStep("b", 1))
        await Orchestrator(registry, ctx, observers=[recorder]).execute_async()
        return threading.get_ident()

    loop_thread = asyncio.run(main())

    assert observer_threads == {loop_thread}
    types = [e.type for e in recorder.events]
    progress_at = [i for i, t in enumerate(types) if t is EventType.step_progress]
    # Reports a thread makes faster than the loop takes them are coalesced: observers see
    # the latest, in order, and always the last one, before the step's end.
    reported = [recorder.events[i].step_progress for i in progress_at]
    assert 1 <= len(reported) <= 3
    assert reported == sorted(reported)
    assert reported[-1] == 1.0
    assert max(progress_at) < types.index(EventType.step_succeeded)


def test_a_flood_of_progress_from_a_thread_is_coalesced_and_ends_at_its_last_report(
    ctx: Ctx,
) -> None:
    calls = 200_000

    def flood(context: Ctx) -> None:
        for i in range(1, calls + 1):
            context.set_progress(i, calls)

    recorder = Recorder()

    async def main() -> float:
        registry = registry_of(Step("a", 1, action=flood))
        started = time.monotonic()
        await Orchestrator(registry, ctx, observers=[recorder]).execute_async()
        return time.monotonic() - started

    seconds = asyncio.run(main())

    progress = [e.step_progress for e in recorder.events if e.type is EventType.step_progress]
    # One hand-over to the loop per interval at most, plus the first and the last report.
    assert 1 <= len(progress) <= seconds / THREAD_PROGRESS_INTERVAL + 2
    assert progress == sorted(progress)
    assert progress[-1] == 1.0


def test_execute_runs_an_async_registry_on_a_private_loop(ctx: Ctx) -> None:
    result = Orchestrator(registry_of(AsyncStep("a"), Step("b")), ctx).execute()

    assert result["steps_executed"] == 2


def test_execute_inside_a_running_loop_with_async_steps_says_to_await(ctx: Ctx) -> None:
    async def main() -> None:
        Orchestrator(registry_of(AsyncStep("a")), ctx).execute()

    with pytest.raises(RuntimeError, match="execute_async"):
        asyncio.run(main())


def test_async_rollback_of_a_sync_step_and_sync_rollback_of_an_async_step(ctx: Ctx) -> None:
    registry = registry_of(AsyncStep("a"), Step("b"), AsyncStep("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError):
        asyncio.run(Orchestrator(registry, ctx).execute_async())

    assert ctx.trace == ["exec a", "exec b", "exec c", "undo c", "undo b", "undo a"]


def test_execute_async_works_for_a_purely_sync_registry(ctx: Ctx) -> None:
    result = asyncio.run(Orchestrator(registry_of(Step("a"), Step("b")), ctx).execute_async())

    assert result["steps_executed"] == 2


def test_a_failed_attempts_last_progress_comes_before_its_retry(ctx: Ctx) -> None:
    handed_over = threading.Event()
    attempts = []

    def report_then_maybe_fail(context: Ctx) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            context.set_progress(0.2)
            assert handed_over.wait(WAIT)  # the loop has it: the next report waits its turn
            context.set_progress(0.5)  # then the step fails within the hand-over interval

    recorder = Recorder()
    recorder_on_event = recorder.on_event

    def on_event(event: object) -> None:
        recorder_on_event(event)  # type: ignore[arg-type]
        if recorder.events[-1].type is EventType.step_progress:
            handed_over.set()

    recorder.on_event = on_event  # type: ignore[method-assign]
    step = Step(
        "a", 1, action=report_then_maybe_fail, fail=ValueError("once"), fail_times=1,
        retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=0),
    )  # fmt: skip

    async def main() -> None:
        await Orchestrator(registry_of(step), ctx, observers=[recorder]).execute_async()

    asyncio.run(main())

    types = [e.type for e in recorder.events]
    progress = [e.step_progress for e in recorder.events if e.type is EventType.step_progress]
    assert progress == [0.2, 0.5]
    assert max(i for i, t in enumerate(types) if t is EventType.step_progress) < types.index(
        EventType.step_retrying
    )
