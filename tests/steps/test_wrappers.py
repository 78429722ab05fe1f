"""LoggingStep, TimingStep, ValidationStep keep the wrapped step's identity and undo."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from steps import (
    LoggingStep,
    Orchestrator,
    RetryPolicy,
    RollbackStatus,
    RuntimeContext,
    StepFailedError,
    TimingStep,
    ValidationStep,
)

from .conftest import AsyncStep, Ctx, NoUndoStep, Step, registry_of


class ListLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any], str | None]] = []

    def log(
        self, level: str, event: str, data: Mapping[str, Any], file: str | None, step: str | None
    ) -> None:
        self.lines.append((level, event, dict(data), step))


@pytest.fixture
def logger() -> ListLogger:
    return ListLogger()


@pytest.fixture
def logged_ctx(logger: ListLogger) -> Ctx:
    return Ctx(RuntimeContext(logger=logger))


def test_wrappers_keep_name_weight_policy_timeout_and_skip() -> None:
    policy = RetryPolicy(max_attempts=2)
    inner = Step("upload", 0.6, skip=True, retry=policy, timeout=3, irreversible=True)

    for wrapped in (LoggingStep(inner), TimingStep(inner), LoggingStep(TimingStep(inner))):
        assert wrapped.name == "upload"
        assert wrapped.progress_weight == 0.6
        assert wrapped.retry_policy is policy
        assert wrapped.timeout == 3
        assert wrapped.irreversible is True
        assert wrapped.supports_rollback is True
        assert wrapped.can_skip(Ctx(RuntimeContext())) is True
        assert "upload" in repr(wrapped)


def test_wrapping_a_step_without_rollback_keeps_it_not_supported() -> None:
    assert LoggingStep(NoUndoStep("x")).supports_rollback is False


def test_wrapped_steps_keep_their_weight_in_the_run_progress(logged_ctx: Ctx) -> None:
    registry = registry_of(LoggingStep(Step("a", 0.2)), TimingStep(Step("b", 0.8)))
    calls: list[float] = []

    Orchestrator(registry, logged_ctx, lambda c, t: calls.append(c)).execute()

    assert calls == [20.0, 100.0]


def test_logging_step_logs_start_and_end_under_the_step_name(
    logged_ctx: Ctx, logger: ListLogger
) -> None:
    Orchestrator(registry_of(LoggingStep(Step("work"))), logged_ctx).execute()

    assert [(line[1], line[3]) for line in logger.lines] == [
        ("step_start", "work"),
        ("step_end", "work"),
    ]
    assert logger.lines[0][2] == {"step": "work"}
    assert {"step", "elapsed", "success", "skipped"} <= logger.lines[1][2].keys()


def test_logging_step_logs_the_end_of_a_failing_step_and_its_rollback(
    logged_ctx: Ctx, logger: ListLogger
) -> None:
    registry = registry_of(LoggingStep(Step("work", fail=ValueError("disk full"))))

    with pytest.raises(StepFailedError):
        Orchestrator(registry, logged_ctx).execute()

    assert [line[1] for line in logger.lines] == ["step_start", "step_end", "step_rollback"]
    assert logger.lines[1][0] == "error"
    assert logger.lines[1][2]["error"] == "disk full"
    assert logged_ctx.trace == ["exec work", "undo work"]


def test_timing_step_adds_the_duration_to_the_result_data(logged_ctx: Ctx) -> None:
    Orchestrator(registry_of(TimingStep(Step("work"))), logged_ctx).execute()

    data = logged_ctx.step_results[0].data
    assert data["step"] == "work"
    assert isinstance(data["duration_seconds"], float)
    assert data["duration_seconds"] >= 0


def test_wrapping_an_async_step_keeps_it_async(logged_ctx: Ctx, logger: ListLogger) -> None:
    wrapped = LoggingStep(TimingStep(AsyncStep("a", fail=ValueError("a"))))
    assert wrapped.is_async
    assert wrapped.is_async_rollback

    with pytest.raises(StepFailedError):
        asyncio.run(Orchestrator(registry_of(wrapped), logged_ctx).execute_async())

    assert logged_ctx.trace == ["exec a", "undo a"]
    assert [line[1] for line in logger.lines] == ["step_start", "step_end", "step_rollback"]


def test_wrapped_async_step_result_gets_its_duration(logged_ctx: Ctx) -> None:
    asyncio.run(Orchestrator(registry_of(TimingStep(AsyncStep("a"))), logged_ctx).execute_async())

    assert "duration_seconds" in logged_ctx.step_results[0].data


def test_validation_step_fails_the_run_with_the_validator_message(ctx: Ctx) -> None:
    check = ValidationStep(lambda c: (False, "bad input"), name="validate", progress_weight=0.05)
    registry = registry_of(Step("load"), check)

    with pytest.raises(StepFailedError, match="Step 'validate' failed: bad input") as caught:
        Orchestrator(registry, ctx).execute()

    assert caught.value.report.step("validate").rollback is RollbackStatus.not_supported
    assert ctx.trace == ["exec load", "undo load"]


def test_validation_step_passes_when_the_validator_is_happy(ctx: Ctx) -> None:
    check = ValidationStep(lambda c: (True, None))

    assert Orchestrator(registry_of(check), ctx).execute()["success"] is True
    assert (check.name, check.progress_weight) == ("validate", 0.05)


def test_validation_step_whose_validator_raises_fails_with_that_error(ctx: Ctx) -> None:
    def validator(context: Ctx) -> tuple[bool, str | None]:
        raise KeyError("missing")

    with pytest.raises(StepFailedError, match="'missing'"):
        Orchestrator(registry_of(ValidationStep(validator)), ctx).execute()
