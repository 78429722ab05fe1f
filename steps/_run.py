"""Bookkeeping of one orchestrator execution, shared by the sync and the async loop.

The loops decide *how* a step is called (directly, awaited, in a thread); this module decides
*what it means*: records, weighted progress, events, and which steps a rollback must undo.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic

from steps._thread_progress import Report, ThreadProgress
from steps.base import C
from steps.cancellation import Cancelled
from steps.errors import RunCancelledError, StepFailedError, StepTimeoutError
from steps.events import EventType, StepEvent, StepObserver, step_event
from steps.recovery import StepCheckpoint
from steps.registry import RunPlan
from steps.report import RollbackStatus, RunOutcome, RunReport, StepRecord, StepStatus
from steps.result import StepResult

if TYPE_CHECKING:
    import asyncio

__all__ = ["ProgressCallback", "Run"]

ProgressCallback = Callable[[float, float], None]
"""``progress_callback(current, total)``: overall weighted progress as ``(percent, 100)``,
called each time the value moves."""

_ROLLBACK_FAILED = "Rollback failed for step '{}'"  # the reference's wording, kept for callers

# Enum members bound once: looking one up on its class costs more than the rest of a
# no-op step's bookkeeping line.
_clock = time.perf_counter
_UNDO_ENDED = frozenset(
    {RollbackStatus.rolled_back, RollbackStatus.failed, RollbackStatus.not_supported}
)
_RUNNING, _SUCCEEDED = StepStatus.running, StepStatus.succeeded
_STARTED, _SUCCEEDED_EVENT = EventType.step_started, EventType.step_succeeded


class Run(Generic[C]):
    """One execution: the records of its steps, its progress, and the events it emits."""

    def __init__(
        self,
        plan: RunPlan[C],
        context: C,
        observers: Sequence[StepObserver],
        progress_callback: ProgressCallback | None,
    ) -> None:
        self.plan = plan
        self.steps = plan.steps
        self.context = context
        self.token = context.runtime_ctx.cancellation
        self.progress = plan.progress.fresh()
        names = plan.names
        self.records = list(map(StepRecord, names, range(len(names)), self.progress.weights))
        self._irreversible = plan.irreversible
        self.report = RunReport(steps=self.records)
        self.executed: list[int] = []
        self.pivot_index = -1
        self.current: int | None = None
        self.log_index: int | None = None  # the step that log lines are attributed to
        self.notify = [o.on_event for o in observers]
        self.pending: deque[Awaitable[None]] = deque()  # returned by async observers
        self.callback = progress_callback
        self._reported = 0.0  # the progress the callback last heard
        self._started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.thread_progress: ThreadProgress | None = None  # set with the loop
        self.deferred_error: BaseException | None = None
        self._planned = 0
        self._undone = 0

    # -- events --------------------------------------------------------------------------

    def emit(self, type_: EventType, index: int | None, **fields: Any) -> None:
        if not self.notify:
            return
        event = StepEvent(
            type_,
            None if index is None else self.records[index].name,
            index,
            self.progress.value,
            **fields,
        )
        self.send(event)

    def _emit_step(
        self, type_: EventType, record: StepRecord, result: StepResult | None = None
    ) -> None:
        self.send(
            step_event(
                type_, record.name, record.index, self.progress.value, record.attempts, result
            )
        )

    def send(self, event: StepEvent) -> None:
        """Hand ``event`` to every observer, in order."""
        for notify in self.notify:
            out = notify(event)
            if out is not None:
                self.defer(out)

    def defer(self, awaitable: Awaitable[None]) -> None:
        if self._loop is None:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # never awaited: say so instead of warning later
            raise TypeError("an observer returned an awaitable: run with execute_async()")
        self.pending.append(awaitable)

    async def drain(self, *, quiet: bool = False) -> None:
        """Await what async observers returned, in order, before the run moves on.

        This is how a storing observer makes each transition durable before the next one:
        a step does not start until its ``step.started`` is stored. With ``quiet`` (rollback,
        the end of a run) an observer error is recorded in ``context.errors`` instead.
        """
        pending = self.pending
        while pending:
            awaitable = pending.popleft()
            try:
                await awaitable
            except Exception as exc:
                if not quiet:
                    for rest in pending:  # drop what was queued behind the failure
                        close = getattr(rest, "close", None)
                        if close is not None:
                            close()
                    pending.clear()
                    raise
                self.context.errors.append(f"observer failed: {exc!r}")

    def _emit_quietly(self, type_: EventType, index: int | None, **fields: Any) -> None:
        # During rollback an observer error must not stop the remaining undos.
        try:
            self.emit(type_, index, **fields)
        except Exception as exc:
            self.context.errors.append(f"observer failed on {type_.value}: {exc!r}")

    def call_back(self) -> None:
        if self.callback is not None and self.progress.value != self._reported:
            self._reported = self.progress.value
            self.callback(round(self._reported * 100, 4), 100)

    # -- reporter protocol (called through the context by running steps) -----------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Progress reported from other threads is handed to ``loop`` (async execution)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self.thread_progress = ThreadProgress(loop, self._hand_over)

    def report_progress(self, step: str | None, fraction: float) -> None:
        if self.thread_progress is not None and threading.get_ident() != self._loop_thread:
            self.thread_progress.report(step, fraction)
            return
        self._progress(step, fraction)

    def in_thread(self, running: bool) -> None:
        """A sync step starts (or stops) running in its thread: while it does, the context
        hands its reports straight to ``thread_progress``."""
        handover = self.thread_progress
        object.__setattr__(self.context, "_thread_progress", handover if running else None)
        if not running and handover is not None:
            handover.flush()

    def _hand_over(self, latest: Report) -> None:
        # An observer's error cannot be raised into the step's thread: it waits for the
        # step's end, where the first one is raised.
        try:
            self._progress(*latest)
        except Exception as exc:
            if self.deferred_error is None:
                self.deferred_error = exc

    def _progress(self, step: str | None, fraction: float) -> None:
        index = self.current
        if index is None or (step is not None and step != self.records[index].name):
            return  # late report from a step that has already finished
        record = self.records[index]
        if record.status is not StepStatus.running:
            return
        if fraction > record.progress:
            record.progress = fraction
        self.progress.step_progress(index, fraction)
        self.emit(EventType.step_progress, index, attempt=record.attempts, step_progress=fraction)
        self.call_back()

    def report_log(self, step: str | None, level: str, event: str, data: Mapping[str, Any]) -> None:
        if not self.notify:
            return
        index = self.log_index
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._log_now, index, step, level, event, data)
        else:
            self._log_now(index, step, level, event, data)

    def _log_now(
        self, index: int | None, step: str | None, level: str, event: str, data: Mapping[str, Any]
    ) -> None:
        self._emit_quietly(
            EventType.step_log,
            index,
            data={"level": level, "event": event, "data": data, "step": step},
        )

    # -- forward execution ---------------------------------------------------------------

    def restore(self, checkpoints: Sequence[StepCheckpoint], resume: bool) -> int:
        """Take the state of an interrupted run; return the index to continue forward from.

        Finished steps count as done (and will be rolled back if the run fails later).
        With ``resume`` false, the interrupted step is kept for rollback too, since it may
        have done part of its work; steps whose rollback already ended are not undone again.
        """
        if len(checkpoints) != len(self.records):
            raise ValueError(
                f"{len(checkpoints)} step checkpoints for a run of {len(self.records)} steps"
            )
        start = len(self.records)
        for index, (record, saved) in enumerate(zip(self.records, checkpoints, strict=True)):
            record.attempts = saved.attempts
            record.rollback = saved.rollback
            if saved.done:
                record.status = saved.status
                record.progress = 1.0
                result = saved.result or StepResult(skipped=saved.status is StepStatus.skipped)
                record.result = result
                self.context.step_results.append(result)
                self.progress.step_done(index)
                if saved.status is StepStatus.succeeded:
                    self.executed.append(index)
                    if self._irreversible[index]:
                        self.pivot_index = index
                continue
            start = min(start, index)
            if not resume and saved.status is not StepStatus.pending:
                record.status = saved.status
                record.result = saved.result or StepResult(success=False, error="interrupted")
                self.executed.append(index)
        return start

    def give_up(self, start: int, reason: str, cancelled: bool) -> None:
        """Decide a recovered run's outcome without running anything: it rolls back."""
        interrupted = start < len(self.records) and self.records[start].status in (
            StepStatus.running,
            StepStatus.cancelled,
        )
        if cancelled:
            self.cancel(start if interrupted else None, Cancelled(reason))
        elif interrupted:
            self.current = start
            self._mark_failed(start, reason, None)
        else:
            self.report.outcome = RunOutcome.failed
            self.report.error = reason

    def begin(self) -> None:
        object.__setattr__(self.context, "_reporter", self)
        self._started_at = time.perf_counter()
        self.emit(EventType.run_started, None, data={"steps_total": len(self.steps)})

    def skip(self, index: int) -> None:
        record = self.records[index]
        record.status = StepStatus.skipped
        record.progress = 1.0
        self.context.step_results.append(StepResult(success=True, skipped=True))
        self.progress.step_done(index)
        self.emit(EventType.step_skipped, index)
        self.call_back()

    def start_attempt(self, index: int, attempt: int, timeout: float | None) -> float:
        record = self.records[index]
        record.status = _RUNNING
        record.attempts = attempt
        if timeout is not None:
            deadline = (time.monotonic() + timeout, record.name, timeout)
            object.__setattr__(self.context, "_deadline", deadline)
        if self.notify:
            self._emit_step(_STARTED, record)
        return _clock()

    def end_attempt(self, index: int, started: float, timeout: float | None) -> float:
        """Clear the step's deadline; record and return how long the attempt took."""
        elapsed = _clock() - started
        self.records[index].duration_seconds = elapsed
        if timeout is not None:
            object.__setattr__(self.context, "_deadline", None)
        return elapsed

    def check_deadline(self, index: int, started: float, timeout: float) -> None:
        """After a sync step returned: clear its deadline, and fail it if it ran too long."""
        if self.end_attempt(index, started, timeout) > timeout:
            raise StepTimeoutError(self.records[index].name, timeout)

    def retrying(self, index: int, error: BaseException, delay: float) -> None:
        record = self.records[index]
        record.error = _describe(error)
        self.emit(
            EventType.step_retrying,
            index,
            attempt=record.attempts,
            error=error,
            data={"delay": delay},
        )

    def complete(self, index: int, result: StepResult, started: float) -> bool:
        """Record what step ``index`` returned; return whether it succeeded."""
        record = self.records[index]
        record.duration_seconds = _clock() - started
        if not isinstance(result, StepResult):
            raise TypeError(
                f"step {self.records[index].name!r} returned {type(result).__name__}, "
                "expected StepResult"
            )
        record.result = result
        if record.error is not None:  # left by an attempt that was retried
            record.error = None
        self.context.step_results.append(result)
        self.executed.append(index)
        if not result.success:
            self._mark_failed(index, result.error, None)
            return False
        record.status = _SUCCEEDED
        record.progress = 1.0
        if self._irreversible[index]:
            self.pivot_index = index
        self.progress.step_done(index)
        if self.notify:
            self._emit_step(_SUCCEEDED_EVENT, record, result)
        if self.callback is not None:
            self.call_back()
        return True

    def fail(self, index: int, error: BaseException) -> None:
        """Step ``index`` failed with ``error``: raised by it, or by the orchestration of it."""
        record = self.records[index]
        if record.attempts and index not in self.executed:
            # It ran (partly): record a failed result and roll it back with the others.
            result = StepResult(success=False, error=str(error))
            record.result = result
            self.context.step_results.append(result)
            self.executed.append(index)
        self._mark_failed(index, _describe(error), error)

    def _mark_failed(self, index: int, message: str | None, error: BaseException | None) -> None:
        record = self.records[index]
        record.status = StepStatus.failed
        record.error = message
        record.exception = error
        self.report.failed_step = record.name
        self.report.error = message
        self.report.cause = error
        self.report.outcome = RunOutcome.failed
        self._emit_quietly(
            EventType.step_failed,
            index,
            attempt=record.attempts,
            error=error,
            result=record.result,
            data={"error": message},
        )

    def interrupt(self, error: BaseException) -> None:
        """A ``BaseException`` (KeyboardInterrupt, SystemExit…) stopped the run."""
        index = self.current
        if index is not None and self.records[index].status in (
            StepStatus.pending,
            StepStatus.running,
        ):
            self.fail(index, error)
            return
        self.report.outcome = RunOutcome.failed
        self.report.error = _describe(error)
        self.report.cause = error

    def cancel(self, index: int | None, error: Cancelled) -> None:
        """The run was cancelled, inside step ``index`` or (``None``) between steps."""
        self.report.outcome = RunOutcome.cancelled
        self.report.error = str(error) or "run cancelled"
        if index is None:
            return
        record = self.records[index]
        if record.status in (StepStatus.succeeded, StepStatus.failed):
            return  # cancelled right after the step finished
        if record.status is StepStatus.running:
            record.status = StepStatus.cancelled
            self.report.failed_step = record.name
            if index not in self.executed:
                result = StepResult(success=False, error=self.report.error)
                record.result = result
                self.context.step_results.append(result)
                self.executed.append(index)
            self._emit_quietly(EventType.step_cancelled, index, attempt=record.attempts)

    # -- rollback ------------------------------------------------------------------------

    def plan_rollback(self) -> list[int]:
        """Mark what will be undone; return the step indices to roll back, last first."""
        if self.pivot_index >= 0:
            self.report.pivot = self.records[self.pivot_index].name
        plan: list[int] = []
        nothing_to_undo: list[int] = []
        for index in reversed(self.executed):
            record = self.records[index]
            if index <= self.pivot_index or record.rollback in _UNDO_ENDED:
                continue  # kept behind a pivot, or undone before a restart
            if self.steps[index].supports_rollback:
                record.rollback = RollbackStatus.pending
                plan.append(index)
            else:
                record.rollback = RollbackStatus.not_supported
                nothing_to_undo.append(index)
        self._planned = len(plan)
        if self.executed:
            names = self.records
            self._emit_quietly(
                EventType.rollback_started,
                None,
                rollback_progress=0.0,
                data={
                    "steps": [names[i].name for i in plan],
                    "indexes": plan,
                    "not_supported": [names[i].name for i in nothing_to_undo],
                    "not_supported_indexes": nothing_to_undo,
                    "pivot": self.report.pivot,
                    "reason": self.report.outcome.value if self.report.outcome else None,
                },
            )
        return plan

    def start_rollback(self, index: int) -> float:
        record = self.records[index]
        record.rollback = RollbackStatus.running
        self.context.current_step = record.name
        self.context.current_step_order = index
        self.current, self.log_index = None, index
        self._emit_quietly(
            EventType.step_rollback_started, index, rollback_progress=self._rollback_progress()
        )
        return time.perf_counter()

    def end_rollback(self, index: int, started: float, error: BaseException | None) -> None:
        record = self.records[index]
        record.rollback_duration_seconds = time.perf_counter() - started
        self._undone += 1
        if error is None:
            record.rollback = RollbackStatus.rolled_back
            self._emit_quietly(
                EventType.step_rolled_back, index, rollback_progress=self._rollback_progress()
            )
            return
        record.rollback = RollbackStatus.failed
        record.rollback_error = _describe(error)
        record.rollback_exception = error
        self.context.errors.append(_ROLLBACK_FAILED.format(record.name))
        self._emit_quietly(
            EventType.step_rollback_failed,
            index,
            error=error,
            rollback_progress=self._rollback_progress(),
        )

    def _rollback_progress(self) -> float:
        return round(self._undone / self._planned, 6) if self._planned else 1.0

    # -- the end -------------------------------------------------------------------------

    def finish(self) -> None:
        """Close the run: clear the context's step, set the outcome, emit the final event."""
        ctx = self.context
        ctx.current_step = None
        ctx.current_step_order = None
        object.__setattr__(ctx, "_reporter", None)
        object.__setattr__(ctx, "_thread_progress", None)
        object.__setattr__(ctx, "_deadline", None)
        self.current = None
        report = self.report
        if report.outcome is None:
            report.outcome = RunOutcome.succeeded
        report.progress = self.progress.value
        final = {
            RunOutcome.succeeded: EventType.run_succeeded,
            RunOutcome.failed: EventType.run_failed,
            RunOutcome.cancelled: EventType.run_cancelled,
        }[report.outcome]
        data: dict[str, Any] = {"summary": report.summary()}
        if report.outcome is not RunOutcome.succeeded:
            cause = report.cause
            data["failure"] = {
                "step": report.failed_step,
                "message": report.error,
                "type": type(cause).__name__ if cause is not None else None,
            }
        self._emit_quietly(final, None, data=data)

    def outcome_error(self) -> StepFailedError | RunCancelledError | None:
        """The exception ``execute`` raises for this run, or None if it succeeded."""
        report = self.report
        if report.outcome is RunOutcome.cancelled:
            where = f" at step '{report.failed_step}'" if report.failed_step else ""
            return RunCancelledError(f"Run cancelled{where}: {report.error}", report)
        if report.outcome is RunOutcome.failed:
            error = StepFailedError(f"Step '{report.failed_step}' failed: {report.error}", report)
            error.__cause__ = report.cause
            return error
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "success": True,
            "steps_executed": len(self.executed),
            "steps_total": len(self.steps),
        }


def _describe(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__
