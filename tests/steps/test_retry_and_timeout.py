"""Per-step retry policy (attempts, backoff with jitter, which errors) and timeouts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from steps import (
    DEFAULT_RETRY_POLICY,
    EventType,
    Orchestrator,
    RetryPolicy,
    StepFailedError,
    StepTimeoutError,
)

from .conftest import AsyncStep, Ctx, Recorder, Step, execute, registry_of

NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0)


def test_a_flaky_step_succeeds_on_a_later_attempt(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    recorder = Recorder()
    step = make("flaky", fail=ConnectionError("try again"), fail_times=2, retry=NO_WAIT)

    result = execute(Orchestrator(registry_of(step), ctx, observers=[recorder]), mode)

    assert result["success"] is True
    assert step.calls == 3
    assert recorder.types() == [
        "run.started",
        "step.started:flaky",
        "step.retrying:flaky",
        "step.started:flaky",
        "step.retrying:flaky",
        "step.started:flaky",
        "step.succeeded:flaky",
        "run.succeeded",
    ]
    assert [e.attempt for e in recorder.events if e.type is EventType.step_started] == [1, 2, 3]


def test_attempts_are_in_the_report_when_the_retries_run_out(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    step = make("flaky", fail=ConnectionError("down"), retry=NO_WAIT)

    with pytest.raises(StepFailedError) as caught:
        execute(Orchestrator(registry_of(step), ctx), mode)

    assert caught.value.report.step("flaky").attempts == 3
    assert ctx.trace.count("undo flaky") == 1


def test_only_the_listed_errors_are_retried(ctx: Ctx) -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0, retry_on=(ConnectionError,))
    step = Step("strict", fail=ValueError("bad input"), retry=policy)

    with pytest.raises(StepFailedError):
        Orchestrator(registry_of(step), ctx).execute()

    assert step.calls == 1


def test_a_returned_failure_is_not_retried(ctx: Ctx) -> None:
    step = Step("decided", fail="result", retry=NO_WAIT)

    with pytest.raises(StepFailedError):
        Orchestrator(registry_of(step), ctx).execute()

    assert step.calls == 1


def test_the_orchestrator_default_policy_applies_to_steps_without_one(ctx: Ctx) -> None:
    step = Step("flaky", fail=ConnectionError("x"), fail_times=1)

    Orchestrator(registry_of(step), ctx, retry_policy=NO_WAIT).execute()

    assert step.calls == 2


def test_retry_delays_back_off_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=1, multiplier=2, max_delay=5, jitter=0.1)

    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 5)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(delays) > 1


def test_retry_policy_is_frozen_readable_and_validated() -> None:
    assert DEFAULT_RETRY_POLICY.max_attempts == 1
    assert "max_attempts=3" in repr(NO_WAIT)
    with pytest.raises(AttributeError):
        NO_WAIT.max_attempts = 9  # type: ignore[misc]
    for bad in ({"max_attempts": 0}, {"jitter": 2}, {"multiplier": 0.5}, {"initial_delay": -1}):
        with pytest.raises(ValueError, match="must"):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_retry_waits_the_backoff_between_attempts(ctx: Ctx) -> None:
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=2, initial_delay=0.05, jitter=0)
    step = Step("flaky", fail=ConnectionError("x"), fail_times=1, retry=policy)

    Orchestrator(registry_of(step), ctx, observers=[recorder]).execute()

    retrying = [e for e in recorder.events if e.type is EventType.step_retrying]
    assert [e.data for e in retrying] == [{"delay": 0.05}]
    assert isinstance(retrying[0].error, ConnectionError)


def test_an_async_step_is_cancelled_at_its_timeout(ctx: Ctx) -> None:
    async def hang(context: Ctx) -> None:
        await asyncio.sleep(3600)

    step = AsyncStep("hang", action=hang, timeout=0.05)

    with pytest.raises(StepFailedError, match=r"timed out after 0\.05s") as caught:
        asyncio.run(Orchestrator(registry_of(step), ctx).execute_async())

    assert isinstance(caught.value.__cause__, StepTimeoutError)
    assert ctx.trace == ["exec hang", "undo hang"]


def test_a_timed_out_async_step_is_retried_when_the_policy_says_so(ctx: Ctx) -> None:
    calls: list[int] = []

    async def slow_once(context: Ctx) -> None:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(3600)

    policy = RetryPolicy(max_attempts=2, initial_delay=0, retry_on=(TimeoutError,))
    step = AsyncStep("slow", action=slow_once, timeout=0.05, retry=policy)

    asyncio.run(Orchestrator(registry_of(step), ctx).execute_async())

    assert len(calls) == 2


def test_a_sync_step_is_stopped_at_check_cancelled_past_its_timeout(ctx: Ctx) -> None:
    never = threading.Event()

    def spin(context: Ctx) -> None:
        while True:
            context.check_cancelled()
            never.wait(0.001)

    with pytest.raises(StepFailedError, match="timed out") as caught:
        Orchestrator(registry_of(Step("spin", action=spin, timeout=0.05)), ctx).execute()

    assert isinstance(caught.value.__cause__, StepTimeoutError)


def test_a_sync_step_that_returns_after_its_timeout_fails(ctx: Ctx) -> None:
    late = threading.Event()

    with pytest.raises(StepFailedError, match="timed out"):
        Orchestrator(
            registry_of(Step("late", action=lambda c: late.wait(0.06), timeout=0.01)), ctx
        ).execute()

    assert ctx.trace == ["exec late", "undo late"]


def test_check_cancelled_outside_a_timed_step_does_nothing(ctx: Ctx) -> None:
    ctx.check_cancelled()
