"""What a run looked like when its process stopped, for another process to finish it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from steps.report import RollbackStatus, StepStatus
from steps.result import StepResult

__all__ = ["Recovery", "StepCheckpoint"]


class Recovery(StrEnum):
    """How an interrupted run is finished.

    ``rollback``: undo the steps that ran, the interrupted one included, in reverse order.
    ``resume``: run the interrupted step again and carry on (for idempotent steps).
    """

    rollback = "rollback"
    resume = "resume"


@dataclass(frozen=True, slots=True)
class StepCheckpoint:
    """One step as it was stored: its status, attempts, result and rollback status."""

    status: StepStatus
    rollback: RollbackStatus = RollbackStatus.not_needed
    attempts: int = 0
    result: StepResult | None = None

    @property
    def done(self) -> bool:
        """Whether the step needs no more execution."""
        return self.status in (StepStatus.succeeded, StepStatus.skipped)

    @property
    def undone(self) -> bool:
        """Whether the step's rollback already reached an end (no second undo)."""
        return self.rollback in (
            RollbackStatus.rolled_back,
            RollbackStatus.failed,
            RollbackStatus.not_supported,
        )
