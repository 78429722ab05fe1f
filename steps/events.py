"""What the orchestrator tells its observers: one ``StepEvent`` per transition."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from steps.result import StepResult

__all__ = ["EventType", "StepEvent", "StepObserver"]


class EventType(StrEnum):
    """Dotted event names; the service persists and streams them under the same names."""

    run_started = "run.started"
    step_started = "step.started"
    step_progress = "step.progress"
    step_log = "step.log"
    step_retrying = "step.retrying"
    step_succeeded = "step.succeeded"
    step_failed = "step.failed"
    step_skipped = "step.skipped"
    step_cancelled = "step.cancelled"
    rollback_started = "run.rollback_started"
    step_rollback_started = "step.rollback_started"
    step_rolled_back = "step.rolled_back"
    step_rollback_failed = "step.rollback_failed"
    step_rollback_not_supported = "step.rollback_not_supported"
    run_succeeded = "run.succeeded"
    run_failed = "run.failed"
    run_cancelled = "run.cancelled"


@dataclass(slots=True)
class StepEvent:
    """One transition of a run.

    ``progress`` is the run's overall weighted progress (0 to 1) and never decreases during
    forward execution; ``step_progress`` is the step's own fraction where that applies;
    ``rollback_progress`` is the share of the rollback done, during a rollback. ``data`` holds
    what is specific to the type: the retry ``delay``, a log line, the step's result data.
    """

    type: EventType
    step: str | None
    index: int | None
    progress: float
    attempt: int = 0
    step_progress: float | None = None
    rollback_progress: float | None = None
    error: BaseException | None = None
    result: StepResult | None = None
    data: Mapping[str, Any] | None = None


class StepObserver(Protocol):
    """Receives every transition of a run, in order.

    Calls come from the thread that runs the orchestrator (``execute``) or from its event
    loop (``execute_async``; progress reported by sync steps in worker threads is handed to
    the loop first). An exception raised by the observer fails the step being executed.

    Under ``execute_async`` ``on_event`` may return an awaitable, which the run awaits (in
    order) before it moves on: before the step starts, after it ends, between rollbacks.
    Events that need no waiting, such as ``step.progress``, should return None.
    """

    def on_event(self, event: StepEvent) -> Awaitable[None] | None:
        """Handle one event."""


_new = object.__new__


def step_event(
    type_: EventType,
    step: str,
    index: int,
    progress: float,
    attempt: int,
    result: StepResult | None = None,
) -> StepEvent:
    """``StepEvent(type_, step, index, progress, attempt, result=result)``, the same object.

    The orchestrator sends two of these for every step; setting the slots here rather than
    through the class call and its ``__init__`` frame makes them markedly cheaper. Every field
    of ``StepEvent`` must be set below.
    """
    event = _new(StepEvent)
    event.type = type_
    event.step = step
    event.index = index
    event.progress = progress
    event.attempt = attempt
    event.step_progress = None
    event.rollback_progress = None
    event.error = None
    event.result = result
    event.data = None
    return event
