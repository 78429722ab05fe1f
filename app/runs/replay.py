"""Rebuilding a run's observable state from its event log alone.

The store writes every change of a run together with its event (``app.store.sqlite``), and
every event carries the run's status and progress after the change. ``replay`` folds a log
back into the state ``GET /runs/{id}`` shows, so a test (or a consumer of the SSE stream) can
check that the log tells the whole story.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.states import RollbackStatus, RunStatus, StepStatus
from app.store.records import EventRow

__all__ = ["ReplayedRun", "ReplayedStep", "StepSpec", "replay"]

StepSpec = tuple[str, float, bool]
"""A step of the run as created: ``(name, weight, can_rollback)``."""

_STEP_STATUS = {
    "step.started": StepStatus.running,
    "step.succeeded": StepStatus.succeeded,
    "step.failed": StepStatus.failed,
    "step.skipped": StepStatus.skipped,
    "step.cancelled": StepStatus.cancelled,
}
_FINISHED_PROGRESS = frozenset({"step.succeeded", "step.skipped"})
_ROLLBACK_STATUS = {
    "step.rollback_started": RollbackStatus.running,
    "step.rolled_back": RollbackStatus.rolled_back,
    "step.rollback_failed": RollbackStatus.failed,
}


@dataclass(frozen=True, slots=True)
class ReplayedStep:
    """One step as its events leave it."""

    name: str
    weight: float
    can_rollback: bool
    status: StepStatus = StepStatus.pending
    progress: float = 0.0
    attempts: int = 0
    rollback_status: RollbackStatus = RollbackStatus.not_needed


@dataclass(frozen=True, slots=True)
class ReplayedRun:
    """A run as its events leave it; ``last_seq`` is the sequence of the last event folded."""

    status: RunStatus
    progress: float
    rollback_progress: float | None
    steps: tuple[ReplayedStep, ...]
    last_seq: int


def replay(events: Sequence[EventRow], steps: Sequence[StepSpec]) -> ReplayedRun:
    """The state of a run after ``events``, a prefix ``1..n`` of its log in order.

    ``steps`` are the run's steps as created (all pending, nothing to roll back). The result
    is what the store held right after event ``n`` was written: run status, progress and
    rollback progress; per step status, progress, attempts and rollback status. Pure: it
    reads nothing but its arguments. Raises ``ValueError`` if the sequence numbers are not
    ``1..n``, if an event names a step the run does not have, or if a status is not one of
    the enums (an empty log is not a run: it needs at least ``run.queued``).
    """
    if not events:
        raise ValueError("a run's log starts with run.queued; this one is empty")
    state = ReplayedRun(
        RunStatus.queued, 0.0, None, tuple(ReplayedStep(n, w, r) for n, w, r in steps), 0
    )
    for event in events:
        if event.seq != state.last_seq + 1:
            raise ValueError(f"event seq {event.seq} follows {state.last_seq}: not gapless")
        state = _fold(state, event)
    return state


def _fold(state: ReplayedRun, event: EventRow) -> ReplayedRun:
    data, kind = event.data, event.type
    steps = list(state.steps)
    if kind in _STEP_STATUS or kind == "step.progress":
        index = _index(steps, data)
        step = steps[index]
        if kind == "step.progress":
            step = replace(step, progress=float(data["step_progress"]))
        else:
            step = replace(step, status=_STEP_STATUS[kind])
        if kind == "step.started":
            step = replace(step, attempts=int(data["attempt"]))
        if kind in _FINISHED_PROGRESS:
            step = replace(step, progress=1.0)
        steps[index] = step
    elif kind == "run.rollback_started":
        # This event names the steps; the store marked the same steps by index.
        by_name = {s.name: i for i, s in enumerate(steps)}
        planned = [(n, RollbackStatus.pending) for n in data.get("steps", [])]
        planned += [(n, RollbackStatus.not_supported) for n in data.get("not_supported", [])]
        for name, status in planned:
            if name not in by_name:
                raise ValueError(f"event {event.seq} names no step of this run: {name!r}")
            steps[by_name[name]] = replace(steps[by_name[name]], rollback_status=status)
    elif kind in _ROLLBACK_STATUS:
        index = _index(steps, data)
        steps[index] = replace(steps[index], rollback_status=_ROLLBACK_STATUS[kind])
    rollback_progress = state.rollback_progress
    if kind == "run.rollback_started" or kind in _ROLLBACK_STATUS:
        rollback_progress = float(data["rollback_progress"])
    return ReplayedRun(
        status=RunStatus(data["status"]),
        progress=float(data["progress"]),
        rollback_progress=rollback_progress,
        steps=tuple(steps),
        last_seq=event.seq,
    )


def _index(steps: Sequence[ReplayedStep], data: Mapping[str, Any]) -> int:
    index = data.get("index")
    if not isinstance(index, int) or not 0 <= index < len(steps):
        raise ValueError(f"no step with index {index!r} in a run of {len(steps)} steps")
    return index
