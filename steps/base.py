"""``BaseStep``: one unit of work in a pipeline, with an optional undo."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Generic, TypeVar

from steps._calls import is_async_callable
from steps.context import BaseStepContext
from steps.result import StepResult
from steps.retry import RetryPolicy

__all__ = ["BaseStep", "C"]

C = TypeVar("C", bound=BaseStepContext)


class BaseStep(ABC, Generic[C]):
    """A named step with a progress weight, an ``execute`` and an optional ``rollback``.

    ``execute`` and ``rollback`` may be plain or ``async def``. A step may also declare a
    ``retry_policy`` and a ``timeout`` (seconds), and mark itself ``irreversible``: once an
    irreversible step succeeds, a later failure no longer rolls back the steps before it.
    Subclasses may override the properties with plain class attributes.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """Unique name of the step within its pipeline."""

    @property
    @abstractmethod
    def progress_weight(self) -> float:
        """Share of the run's progress this step accounts for (weights are normalised)."""

    @abstractmethod
    def execute(self, context: C) -> StepResult | Awaitable[StepResult]:
        """Do the work; return ``StepResult(success=False, error=…)`` or raise to fail."""

    def can_skip(self, context: C) -> bool:
        """Return True to skip this step; a skipped step is never rolled back."""
        return False

    def rollback(self, context: C, result: StepResult) -> Awaitable[None] | None:
        """Undo what ``execute`` did; ``result`` is its result (a failed one for the failing
        step, which may have partial work to undo). The default has nothing to undo."""
        return None

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """How to retry this step; None means the orchestrator's default (no retry)."""
        return None

    @property
    def timeout(self) -> float | None:
        """Seconds this step may run; None for no limit. Async steps are cancelled at the
        limit; sync steps are stopped at their next ``context.check_cancelled()`` and fail
        if they return late."""
        return None

    @property
    def irreversible(self) -> bool:
        """True for a pivot: once it succeeded, earlier steps are kept even if a later one fails."""
        return False

    @property
    def supports_rollback(self) -> bool:
        """Whether the step overrides ``rollback`` (otherwise there is nothing to undo)."""
        return type(self).rollback is not BaseStep.rollback

    @property
    def is_async(self) -> bool:
        """Whether ``execute`` is a coroutine function."""
        return is_async_callable(self.execute)

    @property
    def is_async_rollback(self) -> bool:
        """Whether ``rollback`` is a coroutine function."""
        return is_async_callable(self.rollback)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
