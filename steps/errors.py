"""Errors raised by the orchestrator.

::

    RuntimeError
    └── OrchestrationError        carries the RunReport
        ├── StepFailedError       a step failed (after retries); completed steps were rolled back
        └── RunCancelledError     the run was cancelled; completed steps were rolled back
    TimeoutError
    └── StepTimeoutError          a step ran past its timeout (retryable like any other error)

``StepFailedError`` is a ``RuntimeError`` because the reference orchestrator raises
``RuntimeError`` on failure, so code that catches that keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steps.report import RunReport

__all__ = ["OrchestrationError", "RunCancelledError", "StepFailedError", "StepTimeoutError"]


class OrchestrationError(RuntimeError):
    """A run did not succeed; ``report`` says what ran and what was undone."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class StepFailedError(OrchestrationError):
    """A step failed; its original exception, if it raised one, is ``__cause__``."""


class RunCancelledError(OrchestrationError):
    """The run was cancelled before it finished."""


class StepTimeoutError(TimeoutError):
    """A step ran longer than its ``timeout``."""

    def __init__(self, step: str, timeout: float) -> None:
        super().__init__(f"step {step!r} timed out after {timeout:g}s")
        self.step = step
        self.timeout = timeout
