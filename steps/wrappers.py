"""Wrappers that add logging, timing or a validation around steps.

``LoggingStep`` and ``TimingStep`` keep the wrapped step's name, weight, ``can_skip``,
``rollback``, retry policy, timeout and irreversibility, so wrapping a step never changes
how the run is weighted, named or undone. An async step stays async when wrapped.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from steps.base import BaseStep, C
from steps.result import StepResult
from steps.retry import RetryPolicy

__all__ = ["LoggingStep", "TimingStep", "ValidationStep", "WrapperStep"]


class WrapperStep(BaseStep[C]):
    """A step that delegates everything to ``step``; subclasses decorate ``execute``."""

    def __init__(self, step: BaseStep[C]) -> None:
        self.step = step

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def progress_weight(self) -> float:
        return self.step.progress_weight

    @property
    def retry_policy(self) -> RetryPolicy | None:
        return self.step.retry_policy

    @property
    def timeout(self) -> float | None:
        return self.step.timeout

    @property
    def irreversible(self) -> bool:
        return self.step.irreversible

    @property
    def supports_rollback(self) -> bool:
        return self.step.supports_rollback

    @property
    def is_async(self) -> bool:
        return self.step.is_async

    @property
    def is_async_rollback(self) -> bool:
        return self.step.is_async_rollback

    def can_skip(self, context: C) -> bool:
        return self.step.can_skip(context)

    def execute(self, context: C) -> StepResult | Awaitable[StepResult]:
        self.before(context)
        started = time.perf_counter()
        try:
            outcome = self.step.execute(context)
        except BaseException as exc:
            self.after(context, None, time.perf_counter() - started, exc)
            raise
        if isinstance(outcome, StepResult):
            self.after(context, outcome, time.perf_counter() - started, None)
            return outcome
        return self._finish_async(context, outcome, started)

    async def _finish_async(
        self, context: C, outcome: Awaitable[StepResult], started: float
    ) -> StepResult:
        try:
            result = await outcome
        except BaseException as exc:
            self.after(context, None, time.perf_counter() - started, exc)
            raise
        self.after(context, result, time.perf_counter() - started, None)
        return result

    def rollback(self, context: C, result: StepResult) -> Awaitable[None] | None:
        return self.step.rollback(context, result)

    def before(self, context: C) -> None:
        """Called before the wrapped step executes."""

    def after(
        self, context: C, result: StepResult | None, elapsed: float, error: BaseException | None
    ) -> None:
        """Called after it, with its result or the exception it raised."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.step!r}>"


class LoggingStep(WrapperStep[C]):
    """Logs ``step_start``, ``step_end`` (also on failure) and ``step_rollback`` to the context."""

    def before(self, context: C) -> None:
        context.log("step_start", {"step": self.step.name})

    def after(
        self, context: C, result: StepResult | None, elapsed: float, error: BaseException | None
    ) -> None:
        data: dict[str, Any] = {"step": self.step.name, "elapsed": round(elapsed, 6)}
        if result is not None:
            data.update(success=result.success, skipped=result.skipped)
        else:
            data.update(success=False, skipped=False, error=str(error))
        context.log("step_end", data, level="info" if result is not None else "error")

    def rollback(self, context: C, result: StepResult) -> Awaitable[None] | None:
        context.log("step_rollback", {"step": self.step.name})
        return self.step.rollback(context, result)


class TimingStep(WrapperStep[C]):
    """Adds ``duration_seconds`` (rounded to microseconds) to the wrapped step's result data."""

    def after(
        self, context: C, result: StepResult | None, elapsed: float, error: BaseException | None
    ) -> None:
        if result is not None:
            result.data["duration_seconds"] = round(elapsed, 6)


Validator = Callable[[Any], "tuple[bool, str | None]"]
"""``validator(context) -> (ok, error)``."""


class ValidationStep(BaseStep[C]):
    """Fails the run with the validator's message when ``validator(context)`` is not ok.

    A validator that raises fails the step with its exception, as any step would.
    """

    def __init__(
        self, validator: Validator, name: str = "validate", progress_weight: float = 0.05
    ) -> None:
        self.validator = validator
        self._name = name
        self._weight = progress_weight

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    def execute(self, context: C) -> StepResult:
        ok, error = self.validator(context)
        if ok:
            return StepResult(success=True)
        return StepResult(success=False, error=error or "validation failed")
