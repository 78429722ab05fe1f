"""The state a run's steps share (``BaseStepContext``) and the runtime around it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from steps._thread_progress import ThreadProgress
from steps.cancellation import CancellationToken
from steps.errors import StepTimeoutError
from steps.result import StepResult

__all__ = ["BaseStepContext", "LogLevel", "RuntimeContext", "StepLogger", "StepReporter"]

LogLevel = str
"""Log levels are plain lowercase strings: ``debug``, ``info``, ``warning``, ``error``…"""


class StepLogger(Protocol):
    """Where a run's logs, progress and metrics go outside the orchestrator (optional)."""

    def log(
        self,
        level: LogLevel,
        event: str,
        data: Mapping[str, Any],
        file: str | None,
        step: str | None,
    ) -> None:
        """Record a log event written by a step."""


class StepReporter(Protocol):
    """How a running orchestrator hears about a step's progress and logs (internal)."""

    def report_progress(self, step: str | None, fraction: float) -> None: ...

    def report_log(
        self, step: str | None, level: LogLevel, event: str, data: Mapping[str, Any]
    ) -> None: ...


@dataclass
class RuntimeContext:
    """What surrounds a run: its id, logger, environment and cancellation token.

    Every field is optional, so ``RuntimeContext()`` is enough to run a pipeline in a script.
    """

    logger: StepLogger | None = None
    env: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    cancellation: CancellationToken = field(default_factory=CancellationToken)
    checkpoint: Mapping[str, Any] | None = None
    language: str | None = None

    def log(
        self,
        event: str,
        data: Mapping[str, Any] | None = None,
        file: str | None = None,
        level: LogLevel = "info",
        step: str | None = None,
    ) -> None:
        """Pass a log event to the logger, if there is one."""
        if self.logger is not None:
            self.logger.log(level, event, data or {}, file, step)


def _fraction(current: float, total: float | None) -> float:
    if total is None:
        if not 0 <= current <= 1:
            raise ValueError(f"progress fraction must be between 0 and 1, got {current!r}")
        return float(current)
    if total <= 0:
        raise ValueError(f"progress total must be positive, got {total!r}")
    if not 0 <= current <= total:
        raise ValueError(f"progress current must be between 0 and {total!r}, got {current!r}")
    return current / total


def _none() -> None:
    return None


@dataclass
class BaseStepContext:
    """State shared by the steps of one run; subclass it with your own fields.

    ``runtime_ctx`` is the only positional field, and the bookkeeping fields are keyword-only,
    so a subclass may declare fields without defaults. The orchestrator sets ``current_step``
    while a step (or its rollback) runs, and appends every result to ``step_results``.
    """

    runtime_ctx: RuntimeContext
    step_results: list[StepResult] = field(default_factory=list, kw_only=True)
    errors: list[str] = field(default_factory=list, kw_only=True)
    # Set on the instance by __init__, with no class attribute behind them: on some Python
    # versions setting an attribute that shadows a class attribute is markedly slower, and
    # the orchestrator sets both for every step.
    current_step: str | None = field(default_factory=_none, init=False)
    current_step_order: int | None = field(default_factory=_none, init=False)
    user_failure_message_emitted: bool = field(default=False, init=False)

    # Set by the running orchestrator; class-level defaults keep them out of the dataclass
    # fields, so they never reach equality, repr or a checkpoint of the context.
    _reporter: ClassVar[StepReporter | None] = None
    _thread_progress: ClassVar[ThreadProgress | None] = None
    _deadline: ClassVar[tuple[float, str, float] | None] = None

    @property
    def cancellation(self) -> CancellationToken:
        """The run's cancellation token."""
        return self.runtime_ctx.cancellation

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` if the run was cancelled, or ``StepTimeoutError`` past the
        step's timeout. Long sync steps call this between units of work."""
        self.runtime_ctx.cancellation.raise_if_cancelled()
        deadline = self._deadline
        if deadline is not None and time.monotonic() > deadline[0]:
            raise StepTimeoutError(deadline[1], deadline[2])

    def set_progress(
        self, current: float, total: float | None = None, step: str | None = None
    ) -> None:
        """Report how far the current step is: ``(current, total)`` or a fraction from 0 to 1."""
        # Steps call this in tight loops: the common, valid case costs no extra call.
        if total is not None and total > 0 and 0 <= current <= total:
            fraction = current / total
        else:
            fraction = _fraction(current, total)
        handover = self._thread_progress
        if handover is not None:  # a sync step in its thread: ThreadProgress.report, inlined
            handover.latest = (step or self.current_step, fraction)
            if not handover.handing:
                handover.start()
            return
        reporter = self._reporter
        if reporter is not None:
            reporter.report_progress(step or self.current_step, fraction)

    def log(
        self,
        event: str,
        data: Mapping[str, Any] | None = None,
        file: str | None = None,
        level: LogLevel = "info",
    ) -> None:
        """Write a log event attributed to the current step."""
        payload = dict(data or {})
        reporter = self._reporter
        if reporter is not None:
            reporter.report_log(self.current_step, level, event, payload)
        self.runtime_ctx.log(event, payload, file, level, self.current_step)

    def log_message(self, message: str, level: LogLevel = "info", **kwargs: Any) -> None:
        """Write a human-readable message (``str.format`` fields from ``kwargs``)."""
        content = message.format(**kwargs) if kwargs else message
        self.log("message", {"content": content}, level=level)

    def set_metrics(self, value: Mapping[str, Any], step: str | None = None) -> None:
        """Record metrics for a step (the current one unless named)."""
        name = step or self.current_step
        if name is None:
            raise ValueError("set_metrics needs a step: call it from a step or pass step=")
        self.log("metrics", {"step": name, **value})

    def mark_user_failure_emitted(self) -> None:
        """Remember that a user-facing failure message was already written."""
        self.user_failure_message_emitted = True
