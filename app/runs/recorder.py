"""The observer that makes a run durable: every transition becomes a store write.

Each event the orchestrator reports is turned into a ``Change`` (state + event in one
transaction) and published on the bus once committed. Transitions are awaited by the
orchestrator before the run moves on; progress is coalesced to at most one write per
``interval`` and never delays the step that reports it.

A step's end (succeeded or skipped) is written in the same transaction as whatever the run
does next, usually the next step's start: nothing runs in between, so nothing could observe
the difference, and a run commits once per step instead of twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.errors import LeaseLost
from app.runs.bus import EventBus
from app.runs.checkpoint import CheckpointError
from app.states import RollbackStatus, RunStatus, StepStatus
from app.store.base import Store
from app.store.records import Change
from steps import EventType, StepEvent

__all__ = ["RunRecorder", "error_document"]

log = logging.getLogger("stepline.recorder")

ResultReader = Callable[[], dict[str, Any]]
StepTimer = Callable[[str, float], None]

# After these, the run's context is checkpointed with the step's new state.
_CHECKPOINTED = frozenset(
    {EventType.step_succeeded, EventType.step_failed, EventType.step_skipped,
     EventType.step_cancelled, EventType.step_rolled_back, EventType.step_rollback_failed}
)  # fmt: skip

# A failure or an undo must be recorded whatever the context holds: on these, a context
# that cannot be checkpointed keeps the last checkpoint instead of failing the write.
_KEEP_LAST_CHECKPOINT = frozenset(
    {EventType.step_failed, EventType.step_rolled_back, EventType.step_rollback_failed}
)

# Written with the next change rather than on their own (see the module's docstring).
_CARRIED = frozenset({EventType.step_succeeded, EventType.step_skipped})

_TERMINAL_STATUS = {
    EventType.run_succeeded: RunStatus.succeeded,
    EventType.run_failed: RunStatus.failed,
    EventType.run_cancelled: RunStatus.cancelled,
}


def _now() -> datetime:
    return datetime.now(UTC)


def error_document(error: BaseException | None, message: str | None = None) -> dict[str, Any]:
    """How an error is stored and shown: its type, message and traceback."""
    if error is None:
        return {"type": None, "message": message, "traceback": None}
    return {
        "type": type(error).__name__,
        "message": message or str(error) or type(error).__name__,
        "traceback": "".join(traceback.format_exception(error)).rstrip(),
    }


class RunRecorder:
    """Stores and publishes the events of one run."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        run_id: str,
        *,
        epoch: int,
        progress_interval: float,
        result: ResultReader,
        on_step_finished: StepTimer | None = None,
        on_lease_lost: Callable[[], None] | None = None,
        checkpoint: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.store, self.bus, self.run_id, self.epoch = store, bus, run_id, epoch
        self.on_lease_lost = on_lease_lost
        self.interval = progress_interval
        self.result = result
        self.on_step_finished = on_step_finished
        self._lock = asyncio.Lock()
        self._pending_progress: StepEvent | None = None
        self._last_progress_write = 0.0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._step_started: dict[int, float] = {}
        self._detached = False
        self._leave_open = False
        self._carried: list[Change] = []

    # -- the observer --------------------------------------------------------------------

    def leave_open(self) -> None:
        """Record the step in progress, but not the stop that follows it: the run stays
        open for the next process to carry on."""
        self._leave_open = True

    def detach(self) -> None:
        """Write nothing more: the run is left as stored, for recovery to take over."""
        self._detached = True
        self._carried = []
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending_progress = None

    def on_event(self, event: StepEvent) -> asyncio.Future[None] | None:
        if self._detached or event.type is EventType.run_started:
            return None
        if self._leave_open and event.type in (EventType.run_cancelled, EventType.step_cancelled):
            # Not written: the next process carries on from here. What the run did up to
            # here is, before the process stops.
            return asyncio.ensure_future(self.flush()) if self._carried else None
        if event.type is EventType.step_progress:
            self._progress(event)
            return None
        change = self._change(event)
        if change is None:
            return None
        if event.type in _CHECKPOINTED:
            change = self._with_checkpoint(event, change)
        if event.type in _CARRIED:
            self._drop_progress()  # the step's end supersedes its progress
            self._carried.append(change)
            return None
        changes, self._carried = [*self._carried, change], []
        return asyncio.ensure_future(self._write(changes, event.type is not EventType.step_log))

    async def flush(self) -> None:
        """Write what waits to be written with the next change, when none is coming."""
        changes, self._carried = self._carried, []
        if changes:
            await self._locked_write(changes)

    def _with_checkpoint(self, event: StepEvent, change: Change) -> Change:
        """Add the context and the step's result to the change, in the same transaction."""
        run = dict(change.run)
        if self.checkpoint is not None:
            try:
                run["checkpoint"] = self.checkpoint()
            except CheckpointError:
                if event.type not in _KEEP_LAST_CHECKPOINT:
                    raise  # fails the step that left the value: the user sees which field
                log.warning("run %s: context not checkpointed on %s", self.run_id, event.type)
        steps = {i: dict(values) for i, values in change.steps.items()}
        if event.result is not None and event.index is not None:
            steps.setdefault(event.index, {}).update(
                result_data=event.result.data, rollback_data=event.result.rollback_data
            )
        return dataclasses.replace(change, run=run, steps=steps)

    # -- progress coalescing -------------------------------------------------------------

    def _progress(self, event: StepEvent) -> None:
        self._pending_progress = event
        if self._flush_handle is not None or self._flush_task is not None:
            return
        wait = self._last_progress_write + self.interval - time.monotonic()
        loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_later(max(0.0, wait), self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flush_task = asyncio.ensure_future(self._flush_progress())

    async def _flush_progress(self) -> None:
        try:
            event, self._pending_progress = self._pending_progress, None
            if event is not None:
                self._last_progress_write = time.monotonic()
                await self._locked_write([self._progress_change(event)])
        finally:
            self._flush_task = None
            if self._pending_progress is not None and self._flush_handle is None:
                self._progress(self._pending_progress)

    def _drop_progress(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending_progress = None

    async def _settle_progress(self) -> None:
        """Before a transition: drop the progress that the transition supersedes."""
        self._drop_progress()
        if self._flush_task is not None:
            with contextlib.suppress(Exception):  # logged where it failed; not a transition
                await asyncio.shield(self._flush_task)

    def _progress_change(self, event: StepEvent) -> Change:
        assert event.index is not None
        return Change(
            "step.progress",
            data={"step": event.step, "index": event.index, "step_progress": event.step_progress,
                  "attempt": event.attempt},
            run={"progress": event.progress},
            steps={event.index: {"progress": event.step_progress}},
        )  # fmt: skip

    # -- writes --------------------------------------------------------------------------

    async def _write(self, changes: list[Change], settle: bool) -> None:
        if settle:
            await self._settle_progress()
        await self._locked_write(changes)

    async def _locked_write(self, changes: list[Change]) -> None:
        try:
            async with self._lock:
                if self._detached:
                    return
                if len(changes) == 1:
                    stored = [await self.store.apply(self.run_id, changes[0], self.epoch)]
                else:
                    stored = await self.store.apply_all(self.run_id, changes, self.epoch)
        except LeaseLost:
            # Another owner has the run: this write changed nothing, and none will follow.
            self.detach()
            if self.on_lease_lost is not None:
                self.on_lease_lost()
            return
        except Exception:
            log.exception(
                "run %s: cannot store %s", self.run_id, ", ".join(c.event for c in changes)
            )
            raise
        for event in stored:
            self.bus.publish(event)

    # -- events to changes ---------------------------------------------------------------

    def _change(self, event: StepEvent) -> Change | None:  # one branch per event type
        kind, now = event.type, _now()
        step: dict[str, Any] = {"step": event.step, "index": event.index, "attempt": event.attempt}
        index = event.index
        if kind is EventType.step_started:
            self._step_started[event.index or 0] = time.monotonic()
            values: dict[str, Any] = {"status": StepStatus.running, "attempts": event.attempt}
            if event.attempt == 1:
                values["started_at"] = now
            return Change("step.started", step, steps={index: values})  # type: ignore[dict-item]
        if kind is EventType.step_log:
            return Change("step.log", {**step, **dict(event.data or {})})
        if kind is EventType.step_retrying:
            error = error_document(event.error)
            return Change(
                "step.retrying",
                {**step, "error": _public(error), "delay": (event.data or {}).get("delay")},
                steps={index: {"error": error}},  # type: ignore[dict-item]
            )
        if kind is EventType.step_succeeded:
            result = event.result
            data = dict(result.data) if result is not None else {}
            duration = self._duration(event)
            return Change(
                "step.succeeded",
                {**step, "data": data, "duration_seconds": duration},
                run={"progress": event.progress},
                steps={index: {"status": StepStatus.succeeded, "progress": 1.0,  # type: ignore[dict-item]
                               "finished_at": now, "duration_seconds": duration, "error": None}},
            )  # fmt: skip
        if kind is EventType.step_failed:
            error = error_document(event.error, self._failure_message(event))
            return Change(
                "step.failed",
                {**step, "error": _public(error)},
                steps={index: {"status": StepStatus.failed, "finished_at": now,  # type: ignore[dict-item]
                               "duration_seconds": self._duration(event), "error": error}},
            )  # fmt: skip
        if kind is EventType.step_skipped:
            return Change(
                "step.skipped",
                step,
                run={"progress": event.progress},
                steps={index: {"status": StepStatus.skipped, "progress": 1.0}},  # type: ignore[dict-item]
            )
        if kind is EventType.step_cancelled:
            return Change(
                "step.cancelled",
                step,
                steps={index: {"status": StepStatus.cancelled, "finished_at": now}},  # type: ignore[dict-item]
            )
        if kind is EventType.rollback_started:
            return self._rollback_started(event)
        if kind in (EventType.step_rollback_started, EventType.step_rolled_back,
                    EventType.step_rollback_failed):  # fmt: skip
            return self._step_rollback(event, now)
        if kind in _TERMINAL_STATUS:
            return self._finished(event, now)
        return None

    def _rollback_started(self, event: StepEvent) -> Change:
        data = dict(event.data or {})
        planned: list[str] = list(data.get("steps", []))
        not_supported: list[str] = list(data.get("not_supported", []))
        run: dict[str, Any] = {"rollback_progress": 0.0}
        steps = {
            i: {"rollback_status": RollbackStatus.pending} for i in data.get("indexes", [])
        } | {
            i: {"rollback_status": RollbackStatus.not_supported}
            for i in data.get("not_supported_indexes", [])
        }
        return Change(
            "run.rollback_started",
            {"reason": data.get("reason"), "steps": planned, "not_supported": not_supported,
             "pivot": data.get("pivot"), "rollback_progress": 0.0},
            run=run,
            steps=steps,
            moves={RunStatus.running: RunStatus.rolling_back},
        )  # fmt: skip

    def _step_rollback(self, event: StepEvent, now: datetime) -> Change:
        assert event.index is not None
        data: dict[str, Any] = {"step": event.step, "index": event.index,
                                "rollback_progress": event.rollback_progress}  # fmt: skip
        values: dict[str, Any]
        if event.type is EventType.step_rollback_started:
            values = {"rollback_status": RollbackStatus.running, "rollback_started_at": now}
        elif event.type is EventType.step_rolled_back:
            values = {"rollback_status": RollbackStatus.rolled_back, "rollback_finished_at": now}
        else:
            error = error_document(event.error)
            values = {"rollback_status": RollbackStatus.failed, "rollback_finished_at": now,
                      "rollback_error": error}  # fmt: skip
            data["error"] = _public(error)
        return Change(
            event.type.value,
            data,
            run={"rollback_progress": event.rollback_progress},
            steps={event.index: values},
        )

    def _finished(self, event: StepEvent, now: datetime) -> Change:
        status = _TERMINAL_STATUS[event.type]
        summary = (event.data or {}).get("summary")
        run: dict[str, Any] = {"status": status, "finished_at": now, "summary": summary}
        data: dict[str, Any] = {"summary": summary}
        if status is RunStatus.succeeded:
            run["result"] = data["result"] = self.result()
            run["progress"] = event.progress
        else:
            failure = (event.data or {}).get("failure") or {}
            run["error"] = {
                "step": failure.get("step"),
                "message": failure.get("message"),
                "type": failure.get("type"),
            }
            data["error"] = run["error"]
        return Change(event.type.value, data, run=run)

    @staticmethod
    def _failure_message(event: StepEvent) -> str | None:
        message = (event.data or {}).get("error")
        return str(message) if message is not None else None

    def _duration(self, event: StepEvent) -> float | None:
        started = self._step_started.get(event.index or 0)
        if started is None:
            return None
        duration = round(time.monotonic() - started, 6)
        if self.on_step_finished is not None and event.step:
            self.on_step_finished(event.step, duration)
        return duration


def _public(error: dict[str, Any]) -> dict[str, Any]:
    """The part of an error that goes into events (the traceback stays on the step)."""
    return {"type": error["type"], "message": error["message"]}
