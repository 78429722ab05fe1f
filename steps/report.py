"""What happened in a run: per-step status, attempts, errors, and what rollback undid."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from steps.result import StepResult

__all__ = ["RollbackStatus", "RunOutcome", "RunReport", "StepRecord", "StepStatus"]


class StepStatus(StrEnum):
    """Execution status of one step. ``-ing`` names are transient, the rest final."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


class RollbackStatus(StrEnum):
    """Rollback status of one step.

    ``not_needed``: nothing asked for an undo (the run succeeded, the step never ran, was
    skipped, or sits behind an irreversible step). ``not_supported``: the step ran but has no
    ``rollback``, so there was nothing to undo. ``pending``: it will be rolled back.
    """

    not_needed = "not_needed"
    pending = "pending"
    running = "running"
    rolled_back = "rolled_back"
    failed = "failed"
    not_supported = "not_supported"


class RunOutcome(StrEnum):
    """How an orchestrator run ended."""

    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


_PENDING = StepStatus.pending


@dataclass(init=False)
class StepRecord:
    """Everything known about one step of one run.

    Only ``name``, ``index`` and ``weight`` are given on creation. The fields a run sets for
    every step start on the instance; the others (an error, the rollback) read their
    class-level defaults until a failure or a rollback sets them. Setting an attribute that
    shadows a class attribute is slower on some Python versions, and creating fewer is
    cheaper: both count in a thousand-step run.
    """

    name: str
    index: int
    weight: float
    status: StepStatus
    attempts: int
    progress: float
    duration_seconds: float | None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    result: StepResult | None = field(repr=False)  # type: ignore[misc]  # set by __init__
    rollback: RollbackStatus = RollbackStatus.not_needed
    rollback_error: str | None = None
    rollback_exception: BaseException | None = field(default=None, repr=False)
    rollback_duration_seconds: float | None = None

    def __init__(self, name: str, index: int, weight: float) -> None:
        self.name, self.index, self.weight = name, index, weight
        self.status = _PENDING
        self.attempts = 0
        self.progress = 0.0
        self.duration_seconds = None
        self.result = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (exceptions and results left out)."""
        return {
            "name": self.name,
            "index": self.index,
            "weight": self.weight,
            "status": self.status.value,
            "attempts": self.attempts,
            "progress": self.progress,
            "duration_seconds": self.duration_seconds,
            "error": self.error,
            "rollback": self.rollback.value,
            "rollback_error": self.rollback_error,
            "rollback_duration_seconds": self.rollback_duration_seconds,
        }


@dataclass(slots=True)
class RunReport:
    """The outcome of one ``Orchestrator`` execution.

    ``failed_step`` names the step that failed or was interrupted by a cancel; ``pivot`` names
    the irreversible step that kept earlier steps from being rolled back, if any.
    """

    steps: list[StepRecord]
    outcome: RunOutcome | None = None
    progress: float = 0.0
    failed_step: str | None = None
    error: str | None = None
    cause: BaseException | None = field(default=None, repr=False)
    pivot: str | None = None

    @property
    def steps_executed(self) -> int:
        """Steps whose ``execute`` ran to an outcome (skipped steps do not count)."""
        return sum(
            1
            for s in self.steps
            if s.status in (StepStatus.succeeded, StepStatus.failed, StepStatus.cancelled)
            and s.attempts > 0
        )

    @property
    def rolled_back(self) -> list[str]:
        """Names of the steps whose rollback succeeded, in the order they were undone."""
        return [s.name for s in self._rollback_order() if s.rollback is RollbackStatus.rolled_back]

    @property
    def rollback_failures(self) -> list[str]:
        """Names of the steps whose rollback raised."""
        return [s.name for s in self._rollback_order() if s.rollback is RollbackStatus.failed]

    def step(self, name: str) -> StepRecord:
        """The record of the step called ``name``."""
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)

    def summary(self) -> str:
        """One human sentence: what failed and what rollback did about it."""
        if self.outcome is RunOutcome.succeeded:
            return f"succeeded: {len(self.steps)} steps"
        text = self.outcome.value if self.outcome else "unfinished"
        if self.failed_step:
            text += f" at step {self.failed_step!r}"
        if self.error:
            text += f" ({self.error})"
        undo = [
            f"{s.name} {s.rollback.value}"
            for s in self._rollback_order()
            if s.rollback is not RollbackStatus.not_needed
        ]
        if undo:
            text += "; rollback: " + ", ".join(undo)
        if self.pivot:
            text += f"; steps up to irreversible {self.pivot!r} were kept"
        return text

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the report."""
        return {
            "outcome": self.outcome.value if self.outcome else None,
            "progress": self.progress,
            "failed_step": self.failed_step,
            "error": self.error,
            "pivot": self.pivot,
            "steps": [s.as_dict() for s in self.steps],
        }

    def _rollback_order(self) -> list[StepRecord]:
        return list(reversed(self.steps))
