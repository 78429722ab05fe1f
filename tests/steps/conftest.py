"""Steps that do what a test tells them, in a sync and an async flavour."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RetryPolicy,
    RuntimeContext,
    StepEvent,
    StepRegistry,
    StepResult,
)

MODES = ("sync", "async")


@dataclass
class Ctx(BaseStepContext):
    trace: list[str] = field(default_factory=list)


Action = Callable[[Ctx], Any]


class Step(BaseStep[Ctx]):
    """A sync step: records ``exec``/``undo`` in ``context.trace`` and does what it is told."""

    def __init__(
        self,
        name: str,
        weight: float = 1.0,
        *,
        fail: BaseException | str | None = None,
        fail_times: int | None = None,
        undo_fails: bool = False,
        skip: bool = False,
        action: Action | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        irreversible: bool = False,
    ) -> None:
        self._name, self._weight = name, weight
        self.fail, self.fail_times, self.undo_fails = fail, fail_times, undo_fails
        self.skip, self.action = skip, action
        self._retry, self._timeout, self._irreversible = retry, timeout, irreversible
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    @property
    def retry_policy(self) -> RetryPolicy | None:
        return self._retry

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @property
    def irreversible(self) -> bool:
        return self._irreversible

    def can_skip(self, context: Ctx) -> bool:
        return self.skip

    def _run(self, context: Ctx) -> StepResult:
        self.calls += 1
        context.trace.append(f"exec {self.name}")
        if self.action is not None:
            self.action(context)
        failing = self.fail_times is None or self.calls <= self.fail_times
        if isinstance(self.fail, BaseException) and failing:
            raise self.fail
        if self.fail == "result" and failing:
            return StepResult(success=False, error=f"{self.name} said no")
        return StepResult(data={"step": self.name}, rollback_data={"undo": self.name})

    def _undo(self, context: Ctx, result: StepResult) -> None:
        context.trace.append(f"undo {self.name}")
        if self.undo_fails:
            raise OSError(f"cannot undo {self.name}")

    def execute(self, context: Ctx) -> StepResult:
        return self._run(context)

    def rollback(self, context: Ctx, result: StepResult) -> None:
        self._undo(context, result)


class AsyncStep(Step):
    """The same step with ``async def`` execute and rollback."""

    async def execute(self, context: Ctx) -> StepResult:  # type: ignore[override]
        await asyncio.sleep(0)
        if self.action is not None and asyncio.iscoroutinefunction(self.action):
            self.calls += 1
            context.trace.append(f"exec {self.name}")
            await self.action(context)
            return StepResult(data={"step": self.name})
        return self._run(context)

    async def rollback(self, context: Ctx, result: StepResult) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self._undo(context, result)


class NoUndoStep(Step):
    """A step without a rollback: nothing to undo."""

    rollback = BaseStep.rollback  # type: ignore[assignment]


class Recorder:
    """An observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []

    def on_event(self, event: StepEvent) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [f"{e.type.value}" + (f":{e.step}" if e.step else "") for e in self.events]


def registry_of(*steps: BaseStep[Ctx]) -> StepRegistry[Ctx]:
    registry = StepRegistry[Ctx]()
    for step in steps:
        registry.register(step)
    return registry


def execute(orchestrator: Orchestrator[Any], mode: str) -> dict[str, Any]:
    if mode == "sync":
        return orchestrator.execute()
    return asyncio.run(orchestrator.execute_async())


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(mode: str) -> Callable[..., Step]:
    """Build a step of the current flavour: ``make('a', 0.5, fail=ValueError('x'))``."""
    return AsyncStep if mode == "async" else Step


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    return Ctx(RuntimeContext())
