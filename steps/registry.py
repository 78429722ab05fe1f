"""``StepRegistry``: the ordered list of a pipeline's steps."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Generic, NamedTuple

from steps.base import BaseStep, C
from steps.progress import WeightedProgress, normalize_weights, validate_weight

__all__ = ["RunPlan", "StepRegistry", "StepSpec"]

_BASE_CAN_SKIP = BaseStep.can_skip
_BASE_TIMEOUT = BaseStep.timeout


class StepSpec(NamedTuple):
    """What a registry reads once from a step when it is registered.

    A step's name, weight, irreversibility, sync/async nature, and whether it has a
    ``can_skip`` or a ``timeout`` of its own, are declarations, not state: reading them once
    keeps them off every run's per-step path. A step's own ``can_skip`` and ``timeout`` are
    still asked at every run.
    """

    name: str
    weight: float
    irreversible: bool
    is_async: bool
    """Whether ``execute`` or ``rollback`` is a coroutine function."""
    async_execute: bool
    """Whether ``execute`` is a coroutine function."""
    may_skip: bool
    """Whether the step has a ``can_skip`` of its own; the base one never skips."""
    may_time_out: bool
    """Whether the step has a ``timeout`` of its own; the base one has no limit."""


def _spec(name: str, weight: float, step: BaseStep[C]) -> StepSpec:
    irreversible = bool(step.irreversible)
    async_execute = step.is_async
    own = getattr(step, "__dict__", {})
    return StepSpec(
        name,
        weight,
        irreversible,
        async_execute or step.is_async_rollback,
        async_execute,
        type(step).can_skip is not _BASE_CAN_SKIP or "can_skip" in own,
        type(step).timeout is not _BASE_TIMEOUT,
    )


class RunPlan(Generic[C]):
    """What every run of a registry reads, worked out once until the registry changes.

    Nothing in it is mutated: each run shares it, and a change to the registry makes a new
    one, so a run in progress keeps the steps it started with.
    """

    __slots__ = (
        "asks",
        "async_execute",
        "has_async",
        "irreversible",
        "may_skip",
        "may_time_out",
        "names",
        "progress",
        "specs",
        "steps",
    )

    def __init__(self, steps: list[BaseStep[C]], specs: list[StepSpec]) -> None:
        self.steps = tuple(steps)
        self.specs = tuple(specs)
        columns = tuple(zip(*specs, strict=True)) or ((),) * len(StepSpec._fields)
        names, weights, irreversible, is_async, async_execute, may_skip, may_time_out = columns
        self.names: tuple[str, ...] = names
        self.progress = WeightedProgress(weights)
        self.irreversible: tuple[bool, ...] = irreversible
        self.async_execute: tuple[bool, ...] = async_execute
        self.may_skip: tuple[bool, ...] = may_skip
        self.may_time_out: tuple[bool, ...] = may_time_out
        self.asks = tuple(map(operator.or_, may_skip, may_time_out))
        self.has_async = any(is_async)


class StepRegistry(Generic[C]):
    """An ordered set of steps with unique names.

    Registering a second step under a name already taken raises ``ValueError``; so does a
    negative or non-finite ``progress_weight``.
    """

    __slots__ = ("_plan", "_specs", "_steps")

    def __init__(self) -> None:
        self._steps: list[BaseStep[C]] = []
        self._specs: list[StepSpec] = []
        self._plan: RunPlan[C] | None = None

    def register(self, step: BaseStep[C]) -> None:
        """Append ``step`` at the end."""
        self._insert(len(self._steps), step)

    def unregister(self, name: str) -> None:
        """Remove the step called ``name``; a name that is not registered is ignored."""
        for i, spec in enumerate(self._specs):
            if spec.name == name:
                del self._steps[i], self._specs[i]
                self._plan = None
                return

    def insert_before(self, name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just before the step called ``name``."""
        self._insert(self._index(name), step)

    def insert_after(self, name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just after the step called ``name``."""
        self._insert(self._index(name) + 1, step)

    def get(self, name: str) -> BaseStep[C]:
        """The step called ``name``; ``KeyError`` if there is none."""
        for step, spec in zip(self._steps, self._specs, strict=True):
            if spec.name == name:
                return step
        raise KeyError(name)

    def get_steps(self) -> list[BaseStep[C]]:
        """A copy of the steps, in order."""
        return list(self._steps)

    def get_specs(self) -> list[StepSpec]:
        """What was read from each step at registration, in order."""
        return list(self._specs)

    def run_plan(self) -> RunPlan[C]:
        """The steps and what a run needs from them, shared by every run until a change."""
        plan = self._plan
        if plan is None:
            plan = self._plan = RunPlan(self._steps, self._specs)
        return plan

    @property
    def has_async_steps(self) -> bool:
        """Whether any step's ``execute`` or ``rollback`` is a coroutine function."""
        return self.run_plan().has_async

    @property
    def total_weight(self) -> float:
        """Sum of the steps' raw progress weights."""
        return sum(spec.weight for spec in self._specs)

    def normalized_weights(self) -> dict[str, float]:
        """Each step's share of the run's progress; the shares sum to 1 (equal if all are 0)."""
        weights = normalize_weights([spec.weight for spec in self._specs])
        return {spec.name: w for spec, w in zip(self._specs, weights, strict=True)}

    def get_step_orders(self) -> dict[str, int]:
        """``{name: position}`` for every step."""
        return {spec.name: i for i, spec in enumerate(self._specs)}

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[BaseStep[C]]:
        return iter(list(self._steps))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(spec.name == item for spec in self._specs)
        return any(s is item for s in self._steps)

    def __repr__(self) -> str:
        return f"StepRegistry({[spec.name for spec in self._specs]!r})"

    def _index(self, name: str) -> int:
        for i, spec in enumerate(self._specs):
            if spec.name == name:
                return i
        raise ValueError(f"Step {name!r} not found")

    def _insert(self, index: int, step: BaseStep[C]) -> None:
        name = step.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"step {step!r} needs a non-empty string name")
        if any(spec.name == name for spec in self._specs):
            raise ValueError(f"a step named {name!r} is already registered")
        spec = _spec(name, validate_weight(name, step.progress_weight), step)
        self._steps.insert(index, step)
        self._specs.insert(index, spec)
        self._plan = None
