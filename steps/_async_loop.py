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
import inspect
from typing import TYPE_CHECKING, Any

from steps.base import BaseStep, C
from steps.cancellation import Cancelled
from steps.errors import StepTimeoutError
from steps.result import StepResult

if TYPE_CHECKING:
    from steps._run import Run
    from steps.orchestrator import Orchestrator

__all__ = ["run_async"]


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
    for index in range(start, len(run.steps)):
        step = run.steps[index]
        run.enter(index)
        try:
            token.raise_if_cancelled()
            orchestrator._check_stop()
            if orchestrator.before_step is not None:
                orchestrator.before_step(step.name, context)
            if step.can_skip(context):
                run.skip(index)
                await run.drain()
                continue
            if not await _attempts(orchestrator, run, index, step, interrupter):
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
) -> bool:
    timeout, attempt = step.timeout, 0
    context, on_loop = orchestrator.context, step.is_async
    while True:
        attempt += 1
        started = run.start_attempt(index, attempt, timeout)
        await run.drain()
        # A cancel while the drain was awaited found nothing armed to interrupt.
        run.token.raise_if_cancelled()
        try:
            if on_loop:
                result = await interrupter.wait(step.execute(context), timeout, step.name)
            else:
                result = await asyncio.to_thread(step.execute, context)
                if inspect.isawaitable(result):
                    result = await interrupter.wait(result, timeout, step.name)
            if interrupter.withdraw():  # the step swallowed our cancel
                raise Cancelled("run cancelled")
            if run.deferred_error is not None:
                error, run.deferred_error = run.deferred_error, None
                raise error
            if timeout is not None:
                run.check_deadline(index, started, timeout)
        except Exception as exc:
            run.end_attempt(index, started, timeout)
            policy = orchestrator._policy(step)
            if not policy.should_retry(attempt, exc):
                raise
            delay = policy.delay(attempt)
            run.retrying(index, exc, delay)
            await run.drain()
            run.token.raise_if_cancelled()
            await interrupter.wait(asyncio.sleep(delay), None, step.name)
            continue
        succeeded = run.complete(index, result, started)
        await run.drain()
        return succeeded


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
                outcome = await asyncio.to_thread(step.rollback, context, result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            error = exc
        run.end_rollback(index, started, error)
        await run.drain(quiet=True)
