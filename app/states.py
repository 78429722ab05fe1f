"""Run status and its transitions: the one table every status write is checked against.

::

    queued ──► running ──► succeeded
      │           ├──────► rolling_back ──► failed
      │           ├──────► failed                    (nothing to roll back)
      │           └──────► cancelling ──► cancelled | failed | succeeded (too late)
      └──────────────────────────────► cancelled     (cancelled before it started)

Step statuses and rollback statuses are those of the step library.
"""

from __future__ import annotations

from enum import StrEnum

from steps import RollbackStatus, StepStatus

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "TRANSITIONS",
    "RollbackStatus",
    "RunStatus",
    "StepStatus",
    "can_transition",
]


class RunStatus(StrEnum):
    """Status of a run; ``-ing`` names are transient, past tense final."""

    queued = "queued"
    running = "running"
    rolling_back = "rolling_back"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})
ACTIVE = frozenset(set(RunStatus) - TERMINAL)

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.queued: frozenset({RunStatus.running, RunStatus.cancelled}),
    RunStatus.running: frozenset(
        {RunStatus.succeeded, RunStatus.rolling_back, RunStatus.failed, RunStatus.cancelling}
    ),
    RunStatus.rolling_back: frozenset({RunStatus.failed}),
    RunStatus.cancelling: frozenset({RunStatus.cancelled, RunStatus.failed, RunStatus.succeeded}),
    RunStatus.succeeded: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.cancelled: frozenset(),
}


def can_transition(current: RunStatus, new: RunStatus) -> bool:
    """Whether a run may go from ``current`` to ``new``."""
    return new in TRANSITIONS[current]
