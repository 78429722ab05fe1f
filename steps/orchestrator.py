"""``Orchestrator``: runs a registry's steps in order, reports weighted progress, rolls back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic

from steps._run import ProgressCallback, Run
from steps.base import BaseStep, C
from steps.cancellation import Cancelled
from steps.events import EventType, StepEvent, StepObserver
from steps.recovery import Recovery, StepCheckpoint
from steps.registry import StepRegistry
from steps.report import RunOutcome, RunReport, StepStatus
from steps.result import StepResult
from steps.retry import DEFAULT_RETRY_POLICY, RetryPolicy

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Executor

__all__ = ["BeforeStep", "Orchestrator"]

BeforeStep = Callable[[str, Any], None]
"""``before_step(name, context)``, called before each step's skip check."""

_clock = time.perf_counter
_new = object.__new__
_RUNNING, _SUCCEEDED = StepStatus.running, StepStatus.succeeded
_STARTED, _SUCCEEDED_EVENT = EventType.step_started, EventType.step_succeeded


class Orchestrator(Generic[C]):
    """Executes the steps of ``registry`` in order against ``context``.

    On success ``execute()`` returns ``{'success': True, 'steps_executed': n, 'steps_total': m}``
    (skipped steps count in ``steps_total`` only). When a step fails after its retries, every
    executed step, the failing one included, is rolled back in reverse order and
    ``StepFailedError`` is raised; a cancelled run raises ``RunCancelledError``. Either way
    ``report`` (and the exception's ``report``) says what each step did and what was undone.

    ``progress_callback(current, total)`` receives the overall weighted progress as
    ``(percent, 100)``; observers receive every transition as a ``StepEvent``. Under
    ``execute_async`` an observer may return an awaitable: the run awaits it, in order,
    before it moves on (a step does not start before its ``step.started`` was handled). Each call of
    ``execute`` is a fresh run: nothing from an earlier run is counted or rolled back again.

    Under ``execute_async`` and ``recover_async`` sync steps and rollbacks run in
    ``executor``'s threads, or in the event loop's default executor (as ``asyncio.to_thread``)
    when it is None: a host that runs many runs at once gives them a pool sized to match.
    """

    def __init__(
        self,
        registry: StepRegistry[C],
        context: C,
        progress_callback: ProgressCallback | None = None,
        before_step: BeforeStep | None = None,
        *,
        observers: Iterable[StepObserver] = (),
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        rollback_on_cancel: bool = True,
        executor: Executor | None = None,
    ) -> None:
        self.registry = registry
        self.context = context
        self.progress_callback = progress_callback
        self.before_step = before_step
        self.observers = list(observers)
        self.retry_policy = retry_policy
        self.rollback_on_cancel = rollback_on_cancel
        self.executor = executor
        self.report: RunReport | None = None
        self._running = False
        self._abandoned = False
        self._stop_reason: str | None = None

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel the run (from any thread); same as cancelling the context's token."""
        return self.context.runtime_ctx.cancellation.cancel(reason)

    def abandon(self, reason: str = "abandoned") -> None:
        """Stop the run at the next chance and roll nothing back (from any thread).

        For a process that stops or loses a run to another owner: what was done stays done,
        for whoever recovers the run to finish or undo.
        """
        self._abandoned = True
        self.context.runtime_ctx.cancellation.cancel(reason)

    def stop_after_step(self, reason: str = "stopping") -> None:
        """Let the running step finish, then stop before the next one, rolling nothing back.

        For a graceful shutdown: the run is left at a step boundary, every finished step
        recorded, for the next process to carry on. A step that fails meanwhile still rolls
        back as usual: the stop takes effect only at the boundary.
        """
        self._stop_reason = reason

    def _check_stop(self) -> None:
        if self._stop_reason is not None:
            self._abandoned = True
            raise Cancelled(self._stop_reason)

    def execute(self) -> dict[str, Any]:
        """Run every step in this thread; async steps make it run on a private event loop."""
        if self.registry.has_async_steps:
            import asyncio  # only registries with async steps pay for it

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.execute_async())
            raise RuntimeError("this registry has async steps: await execute_async() instead")
        run = self._start()
        try:
            try:
                self._forward(run)
            except BaseException as exc:
                run.interrupt(exc)
                raise
            finally:
                if self._must_roll_back(run):
                    self._rollback(run)
        finally:
            self._close(run)
        return self._result(run)

    async def execute_async(self) -> dict[str, Any]:
        """Run every step on the running event loop; sync steps run in worker threads."""
        import asyncio  # asyncio machinery only when needed

        from steps._async_loop import run_async

        run = self._start(asyncio.get_running_loop())
        try:
            await run_async(self, run)
        finally:
            self._close(run)
            await run.drain(quiet=True)
        return self._result(run)

    async def recover_async(
        self,
        checkpoints: Sequence[StepCheckpoint],
        how: Recovery,
        reason: str = "the process executing this run stopped",
        *,
        cancelled: bool = False,
    ) -> dict[str, Any]:
        """Finish a run another process left unfinished, from its stored steps.

        ``resume`` runs the interrupted step again and carries on; ``rollback`` undoes, in
        reverse order, every step that ran (the interrupted one included) whose undo had
        not already ended, and ends the run failed (or ``cancelled``) with ``reason``.
        """
        import asyncio

        from steps._async_loop import run_async

        run = self._start(asyncio.get_running_loop())
        try:
            start = run.restore(checkpoints, resume=how is Recovery.resume)
            if how is Recovery.rollback:
                run.give_up(start, reason, cancelled)
            await run_async(self, run, start)
        finally:
            self._close(run)
            await run.drain(quiet=True)
        return self._result(run)

    # -- shared by both paths ------------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop | None = None) -> Run[C]:
        if self._running:
            raise RuntimeError("this orchestrator is already executing")
        self._running = True
        run = Run(self.registry.run_plan(), self.context, self.observers, self.progress_callback)
        if loop is not None:
            run.bind_loop(loop)
        self.report = run.report
        try:
            run.begin()
        except BaseException:
            self._close(run)
            raise
        return run

    def _policy(self, step: BaseStep[C]) -> RetryPolicy:
        return step.retry_policy or self.retry_policy

    def _must_roll_back(self, run: Run[C]) -> bool:
        outcome = run.report.outcome
        if outcome is None or self._abandoned:
            return False
        return outcome is not RunOutcome.cancelled or self.rollback_on_cancel

    def _close(self, run: Run[C]) -> None:
        self._running = False
        run.finish()

    @staticmethod
    def _result(run: Run[C]) -> dict[str, Any]:
        error = run.outcome_error()
        if error is not None:
            raise error
        return run.summary()

    # -- the sync path -------------------------------------------------------------------

    def _forward(self, run: Run[C]) -> None:
        context, token, before_step = self.context, run.token, self.before_step
        records, notify, callback = run.records, run.notify, run.callback
        plan, progress, executed = run.plan, run.progress, run.executed
        asks, may_skip, may_time_out = plan.asks, plan.may_skip, plan.may_time_out
        irreversible = plan.irreversible
        after, reached = progress._after, progress._reached
        only = notify[0] if len(notify) == 1 else None  # one observer: no loop to set up
        for index, step in enumerate(run.steps):
            record = records[index]
            name = record.name
            run.current = run.log_index = index
            context.current_step = name
            context.current_step_order = index
            try:
                if token.cancelled:
                    token.raise_if_cancelled()
                if self._stop_reason is not None:
                    self._check_stop()
                if before_step is not None:
                    before_step(step.name, context)
                if asks[index]:  # a can_skip or a timeout of its own to consult
                    if may_skip[index] and step.can_skip(context):
                        run.skip(index)
                        continue
                    timeout = step.timeout if may_time_out[index] else None
                    if timeout is not None:
                        if not self._attempts(run, index, step, timeout):
                            return
                        continue
                # What Run.start_attempt and Run.complete do, inline for the common case:
                # a first attempt, with no time limit, that returns a successful result.
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
                try:
                    result = step.execute(context)
                except Exception as exc:
                    record.duration_seconds = _clock() - started
                    if not self._retry(run, index, step, 1, exc):
                        raise
                else:
                    if type(result) is not StepResult or not result.success:
                        if not run.complete(index, result, started):  # type: ignore[arg-type]
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
                    continue
                if not self._attempts(run, index, step, None, 1):
                    return
            except Cancelled as exc:
                run.cancel(index, exc)
                return
            except Exception as exc:
                run.fail(index, exc)
                return

    def _attempts(
        self, run: Run[C], index: int, step: BaseStep[C], timeout: float | None, attempt: int = 0
    ) -> bool:
        """Execute ``step`` after ``attempt`` tries until it succeeds or its retry policy gives
        up; return success."""
        context = self.context
        while True:
            attempt += 1
            started = run.start_attempt(index, attempt, timeout)
            try:
                result = step.execute(context)
                if timeout is not None:
                    run.check_deadline(index, started, timeout)
            except Exception as exc:
                run.end_attempt(index, started, timeout)
                if not self._retry(run, index, step, attempt, exc):
                    raise
                continue
            return run.complete(index, result, started)  # type: ignore[arg-type]

    def _retry(
        self, run: Run[C], index: int, step: BaseStep[C], attempt: int, error: Exception
    ) -> bool:
        """Whether ``step``, failed on ``attempt``, gets another; if so, after its delay."""
        policy = self._policy(step)  # looked up only when it is needed
        if not policy.should_retry(attempt, error):
            return False
        delay = policy.delay(attempt)
        run.retrying(index, error, delay)
        if run.token.wait(delay):
            run.token.raise_if_cancelled()
        return True

    def _rollback(self, run: Run[C]) -> None:
        for index in run.plan_rollback():
            if self._abandoned:
                return  # another owner has the run: its undos are theirs now, not ours too
            step = run.steps[index]
            started = run.start_rollback(index)
            error: Exception | None = None
            try:
                step.rollback(self.context, _result_of(run, index))
            except Exception as exc:
                error = exc
            run.end_rollback(index, started, error)


def _result_of(run: Run[Any], index: int) -> StepResult:
    result = run.records[index].result
    return result if result is not None else StepResult(success=False)
