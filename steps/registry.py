"""``StepRegistry``: the ordered list of a pipeline's steps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic

from steps.base import BaseStep, C
from steps.progress import normalize_weights, validate_weight

__all__ = ["StepRegistry"]


class StepRegistry(Generic[C]):
    """An ordered set of steps with unique names.

    Registering a second step under a name already taken raises ``ValueError``; so does a
    negative or non-finite ``progress_weight``.
    """

    __slots__ = ("_async", "_steps")

    def __init__(self) -> None:
        self._steps: list[BaseStep[C]] = []
        self._async: set[str] = set()  # names of steps with an async execute or rollback

    def register(self, step: BaseStep[C]) -> None:
        """Append ``step`` at the end."""
        self._steps.append(self._checked(step))

    def unregister(self, name: str) -> None:
        """Remove the step called ``name``; a name that is not registered is ignored."""
        self._steps = [s for s in self._steps if s.name != name]
        self._async.discard(name)

    def insert_before(self, name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just before the step called ``name``."""
        self._steps.insert(self._index(name), self._checked(step))

    def insert_after(self, name: str, step: BaseStep[C]) -> None:
        """Insert ``step`` just after the step called ``name``."""
        self._steps.insert(self._index(name) + 1, self._checked(step))

    def get(self, name: str) -> BaseStep[C]:
        """The step called ``name``; ``KeyError`` if there is none."""
        for step in self._steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def get_steps(self) -> list[BaseStep[C]]:
        """A copy of the steps, in order."""
        return list(self._steps)

    @property
    def has_async_steps(self) -> bool:
        """Whether any step's ``execute`` or ``rollback`` is a coroutine function."""
        return bool(self._async)

    @property
    def total_weight(self) -> float:
        """Sum of the steps' raw progress weights."""
        return sum(float(s.progress_weight) for s in self._steps)

    def normalized_weights(self) -> dict[str, float]:
        """Each step's share of the run's progress; the shares sum to 1 (equal if all are 0)."""
        weights = normalize_weights([float(s.progress_weight) for s in self._steps])
        return {s.name: w for s, w in zip(self._steps, weights, strict=True)}

    def get_step_orders(self) -> dict[str, int]:
        """``{name: position}`` for every step."""
        return {s.name: i for i, s in enumerate(self._steps)}

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[BaseStep[C]]:
        return iter(list(self._steps))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(s.name == item for s in self._steps)
        return any(s is item for s in self._steps)

    def __repr__(self) -> str:
        return f"StepRegistry({[s.name for s in self._steps]!r})"

    def _index(self, name: str) -> int:
        for i, step in enumerate(self._steps):
            if step.name == name:
                return i
        raise ValueError(f"Step {name!r} not found")

    def _checked(self, step: BaseStep[C]) -> BaseStep[C]:
        name = step.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"step {step!r} needs a non-empty string name")
        if any(s.name == name for s in self._steps):
            raise ValueError(f"a step named {name!r} is already registered")
        validate_weight(name, step.progress_weight)
        if step.is_async or step.is_async_rollback:
            self._async.add(name)
        return step
