"""The async execution path: async steps on the loop, sync steps in worker threads.

Cancelling the run's token while an async step (or a retry back-off) is awaited cancels the
orchestrator's task at that await; the resulting ``CancelledError`` is turned into
``Cancelled`` and the task's cancel request withdrawn, so the rollback that follows runs
normally. A ``CancelledError`` from anywhere else (the caller cancelling the task) rolls back
and then propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from steps.base import BaseStep, C
from steps.cancellation import Cancelled
from steps.errors import StepTimeoutError
from steps.events import EventType, StepEvent
from steps.report import StepStatus
from steps.result import StepResult

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from steps._run import Run
    from steps.orchestrator import Orchestrator

__all__ = ["run_async"]

_clock = time.perf_counter
_new = object.__new__
_RUNNING, _SUCCEEDED = StepStatus.running, StepStatus.succeeded
_STARTED, _SUCCEEDED_EVENT = EventType.step_started, EventType.step_succeeded

T = TypeVar("T")


def _in_thread(executor: Executor | None, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``asyncio.to_thread`` in ``executor`` (the loop's default one when None)."""
    context = contextvars.copy_context()  # the step sees the caller's context variables
    return asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(context.run, call, *args)
    )


class _Interrupter:
    """Cancels the orchestrator's task when the token fires, but only at a safe await."""

    __slots__ = ("armed", "fired", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task = loop, task
        self.armed = False
        self.fired = False

    def request(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop means the run is over
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self.armed and not self.fired and not self.task.done():
            self.fired = True
            self.task.cancel()

    def withdraw(self) -> bool:
        """If we cancelled the task, take the request back; return whether we had."""
        if not self.fired:
            return False
        self.fired = False
        self.task.uncancel()
        return True

    async def wait(self, awaitable: Any, limit: float | None, step: str) -> Any:
        """Await ``awaitable`` so that the token can interrupt it."""
        self.armed = True
        try:
            if limit is None:
                return await awaitable
            try:
                async with asyncio.timeout(limit):
                    return await awaitable
            except TimeoutError as exc:
                raise StepTimeoutError(step, limit) from exc
        except asyncio.CancelledError:
            if self.withdraw():
                raise Cancelled("run cancelled") from None
            raise
        finally:
            self.armed = False


async def run_async(orchestrator: Orchestrator[C], run: Run[C], start: int = 0) -> None:
    """Execute ``run`` forward from step ``start``, then roll back if it did not succeed.

    A run whose outcome is already decided (a recovered run to roll back) skips forward
    execution and goes straight to its rollback.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("execute_async() must run inside an asyncio task")
    interrupter = _Interrupter(asyncio.get_running_loop(), task)
    unregister = run.token.add_callback(interrupter.request)
    try:
        try:
            if run.report.outcome is None:
                await _forward(orchestrator, run, interrupter, start)
            else:
                await run.drain()
        except BaseException as exc:
            run.interrupt(exc)
            raise
        finally:
            if orchestrator._must_roll_back(run):
                await _rollback(orchestrator, run)
    finally:
        unregister()


async def _forward(
    orchestrator: Orchestrator[C], run: Run[C], interrupter: _Interrupter, start: int
) -> None:
    context, token = orchestrator.context, run.token
    try:
        await run.drain()  # run.started is stored before the first step runs
    except Exception as exc:
        run.interrupt(exc)
        return
    steps, records, pending = run.steps, run.records, run.pending
    notify, callback, progress, executed = run.notify, run.callback, run.progress, run.executed
    plan = run.plan
    asks, may_skip, may_time_out = plan.asks, plan.may_skip, plan.may_time_out
    async_execute, irreversible = plan.async_execute, plan.irreversible
    after, reached = progress._after, progress._reached
    only = notify[0] if len(notify) == 1 else None  # one observer: no loop to set up
    for index in range(start, len(steps)):
        step = steps[index]
        record = records[index]
        name = record.name
        run.current = run.log_index = index
        context.current_step = name
        context.current_step_order = index
        try:
            if token.cancelled:
                token.raise_if_cancelled()
            if orchestrator._stop_reason is not None:
                orchestrator._check_stop()
            if orchestrator.before_step is not None:
                orchestrator.before_step(step.name, context)
            timeout = None
            if asks[index]:  # a can_skip or a timeout of its own to consult
                if may_skip[index] and step.can_skip(context):
                    run.skip(index)
                    if pending:
                        await run.drain()
                    continue
                if may_time_out[index]:
                    timeout = step.timeout
            on_loop = async_execute[index]
            if timeout is not None or not on_loop:
                if not await _attempts(orchestrator, run, index, step, interrupter, timeout):
                    return
                continue
            # What Run.start_attempt, Interrupter.wait and Run.complete do, inline for the
            # common case: a first attempt of an async step, with no time limit, that returns
            # a successful result. An await of nothing pending is skipped: it would not yield.
            record.status = _RUNNING
            record.attempts = 1
            if notify:
                event = _new(StepEvent)  # as step_event() builds it, without the call
                event.type = _STARTED
                event.step = name
                event.index = index
                event.progress = progress.value
                event.attempt = 1
                event.step_progress = event.rollback_progress = None
                event.error = event.result = event.data = None
                if only is not None:
                    out = only(event)
                    if out is not None:
                        run.defer(out)
                else:
                    run.send(event)
            started = _clock()
            if pending:
                await run.drain()
            # A cancel while the drain was awaited found nothing armed to interrupt.
            if token.cancelled:
                token.raise_if_cancelled()
            try:
                awaitable: Any = step.execute(context)
                interrupter.armed = True
                try:
                    result = await awaitable
                except asyncio.CancelledError:
                    if interrupter.withdraw():
                        raise Cancelled("run cancelled") from None
                    raise
                finally:
                    interrupter.armed = False
                if interrupter.fired and interrupter.withdraw():  # the step swallowed our cancel
                    raise Cancelled("run cancelled")
                if run.deferred_error is not None:
                    error, run.deferred_error = run.deferred_error, None
                    raise error
            except Exception as exc:
                record.duration_seconds = _clock() - started
                if not await _retry(orchestrator, run, index, step, interrupter, 1, exc):
                    raise
            else:
                if type(result) is not StepResult or not result.success:
                    succeeded = run.complete(index, result, started)
                    if pending:
                        await run.drain()
                    if not succeeded:
                        return
                    continue
                record.duration_seconds = _clock() - started
                record.result = result
                context.step_results.append(result)
                executed.append(index)
                record.status = _SUCCEEDED
                record.progress = 1.0
                if irreversible[index]:
                    run.pivot_index = index
                done = after[index]  # as progress.step_done(index)
                if done > progress._exact:
                    progress._exact = done
                    progress.value = reached[index]
                if notify:
                    event = _new(StepEvent)
                    event.type = _SUCCEEDED_EVENT
                    event.step = name
                    event.index = index
                    event.progress = progress.value
                    event.attempt = 1
                    event.step_progress = event.rollback_progress = None
                    event.error = event.data = None
                    event.result = result
                    if only is not None:
                        out = only(event)
                        if out is not None:
                            run.defer(out)
                    else:
                        run.send(event)
                if callback is not None:
                    run.call_back()
                if pending:
                    await run.drain()
                continue
            if not await _attempts(orchestrator, run, index, step, interrupter, None, 1):
                return
        except Cancelled as exc:
            run.cancel(index, exc)
            return
        except Exception as exc:
            run.fail(index, exc)
            return


async def _attempts(
    orchestrator: Orchestrator[C],
    run: Run[C],
    index: int,
    step: BaseStep[C],
    interrupter: _Interrupter,
    limit: float | None,
    attempt: int = 0,
) -> bool:
    """Execute ``step`` after ``attempt`` tries until it succeeds or its retry policy gives
    up; return success."""
    context, on_loop = orchestrator.context, run.plan.async_execute[index]
    while True:
        attempt += 1
        started = run.start_attempt(index, attempt, limit)
        await run.drain()
        # A cancel while the drain was awaited found nothing armed to interrupt.
        run.token.raise_if_cancelled()
        try:
            if on_loop:
                result = await interrupter.wait(step.execute(context), limit, step.name)
            else:
                run.in_thread(True)
                try:
                    result = await _in_thread(orchestrator.executor, step.execute, context)
                finally:  # raised or returned: its last report comes before its end
                    run.in_thread(False)
                if inspect.isawaitable(result):
                    result = await interrupter.wait(result, limit, step.name)
            if interrupter.withdraw():  # the step swallowed our cancel
                raise Cancelled("run cancelled")
            if run.deferred_error is not None:
                error, run.deferred_error = run.deferred_error, None
                raise error
            if limit is not None:
                run.check_deadline(index, started, limit)
        except Exception as exc:
            run.end_attempt(index, started, limit)
            if not await _retry(orchestrator, run, index, step, interrupter, attempt, exc):
                raise
            continue
        succeeded = run.complete(index, result, started)
        await run.drain()
        return succeeded


async def _retry(
    orchestrator: Orchestrator[C],
    run: Run[C],
    index: int,
    step: BaseStep[C],
    interrupter: _Interrupter,
    attempt: int,
    error: Exception,
) -> bool:
    """Whether ``step``, failed on ``attempt``, gets another; if so, after its delay."""
    policy = orchestrator._policy(step)
    if not policy.should_retry(attempt, error):
        return False
    delay = policy.delay(attempt)
    run.retrying(index, error, delay)
    await run.drain()
    run.token.raise_if_cancelled()
    await interrupter.wait(asyncio.sleep(delay), None, step.name)
    return True


async def _rollback(orchestrator: Orchestrator[C], run: Run[C]) -> None:
    context = orchestrator.context
    plan = run.plan_rollback()
    await run.drain(quiet=True)  # the failure and the plan are stored before any undo
    for index in plan:
        if orchestrator._abandoned:
            return  # another owner has the run: its undos are theirs now, not ours too
        step = run.steps[index]
        result = run.records[index].result or StepResult(success=False)
        started = run.start_rollback(index)
        await run.drain(quiet=True)
        error: Exception | None = None
        try:
            if step.is_async_rollback:
                outcome: Any = step.rollback(context, result)
            else:
                outcome = await _in_thread(orchestrator.executor, step.rollback, context, result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            error = exc
        run.end_rollback(index, started, error)
        await run.drain(quiet=True)
