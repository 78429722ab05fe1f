"""Async observers: execute_async awaits what they return before the run moves on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

import pytest

from steps import EventType, Orchestrator, StepEvent, StepFailedError

from .conftest import AsyncStep, Ctx, Step, registry_of


class SlowStore:
    """Stores each event after a loop turn, and records what the steps saw meanwhile."""

    def __init__(self, fail_on: EventType | None = None) -> None:
        self.stored: list[str] = []
        self.fail_on = fail_on

    def on_event(self, event: StepEvent) -> asyncio.Future[None] | None:
        if event.type is EventType.step_progress:
            return None
        return asyncio.ensure_future(self._store(event))

    async def _store(self, event: StepEvent) -> None:
        await asyncio.sleep(0)
        if event.type is self.fail_on:
            raise ConnectionError(f"cannot store {event.type.value}")
        self.stored.append(f"{event.type.value}:{event.step or ''}")


def test_each_transition_is_stored_before_the_run_moves_on(ctx: Ctx) -> None:
    store = SlowStore()
    seen_at_exec: list[list[str]] = []

    def look(context: Ctx) -> None:
        seen_at_exec.append(list(store.stored))

    registry = registry_of(Step("a", action=look), AsyncStep("b", action=look))

    asyncio.run(Orchestrator(registry, ctx, observers=[store]).execute_async())

    assert seen_at_exec[0] == ["run.started:", "step.started:a"]
    assert seen_at_exec[1][-2:] == ["step.succeeded:a", "step.started:b"]
    assert store.stored[-1] == "run.succeeded:"


def test_a_store_failure_before_a_step_fails_that_step_and_rolls_back(ctx: Ctx) -> None:
    store = SlowStore(fail_on=EventType.step_succeeded)

    with pytest.raises(StepFailedError, match=r"cannot store step\.succeeded"):
        asyncio.run(
            Orchestrator(registry_of(Step("a"), Step("b")), ctx, observers=[store]).execute_async()
        )

    assert ctx.trace == ["exec a", "undo a"]


def test_a_store_failure_during_rollback_does_not_stop_the_undo(ctx: Ctx) -> None:
    store = SlowStore(fail_on=EventType.step_rolled_back)
    registry = registry_of(Step("a"), Step("b"), Step("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError):
        asyncio.run(Orchestrator(registry, ctx, observers=[store]).execute_async())

    assert ctx.trace[-3:] == ["undo c", "undo b", "undo a"]
    assert len([e for e in ctx.errors if "cannot store" in e]) == 3
    assert store.stored[-1] == "run.failed:"


def test_a_failure_to_store_run_started_fails_the_run_before_any_step(ctx: Ctx) -> None:
    store = SlowStore(fail_on=EventType.run_started)

    with pytest.raises(StepFailedError, match=r"cannot store run\.started"):
        asyncio.run(Orchestrator(registry_of(Step("a")), ctx, observers=[store]).execute_async())

    assert ctx.trace == []


def test_an_async_observer_under_sync_execute_is_an_error(ctx: Ctx) -> None:
    async def store() -> None:
        pass

    class Returns:
        def on_event(self, event: StepEvent) -> Coroutine[None, None, None]:
            return store()

    with pytest.raises(TypeError, match="execute_async"):
        Orchestrator(registry_of(Step("a")), ctx, observers=[Returns()]).execute()
