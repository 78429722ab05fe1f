"""Weighted progress: ``progress = Σ wᵢ·pᵢ / Σ wᵢ`` over the steps of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["PROGRESS_DIGITS", "WeightedProgress", "normalize_weights", "validate_weight"]

PROGRESS_DIGITS = 6
"""Reported progress is rounded to this many digits, so that 0.2 + 0.7 reads 0.9."""


def validate_weight(name: str, weight: float) -> float:
    """Return ``weight`` as a float, or raise ``ValueError`` if it is negative or not finite."""
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"step {name!r} has progress_weight {weight!r}; it must be finite and >= 0"
        )
    return value


def normalize_weights(weights: Sequence[float]) -> list[float]:
    """Scale weights to sum to 1; if they sum to 0, every step counts equally."""
    if not weights:
        return []
    total = math.fsum(weights)
    if total <= 0:
        return [1 / len(weights)] * len(weights)
    return [w / total for w in weights]


class WeightedProgress:
    """Overall progress of a run whose steps finish in order.

    Forward progress never moves backwards: a step that reports less than before, or that
    starts again after a retry, leaves the overall value where it was.
    """

    __slots__ = ("_before", "_value", "weights")

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = normalize_weights(weights)
        raw = list(weights) if math.fsum(weights) > 0 else [1.0] * len(weights)
        total = math.fsum(raw)
        # _before[i] is the share of the steps before step i; computed with fsum so that
        # finishing the last step gives exactly 1.0.
        self._before = [math.fsum(raw[:i]) / total for i in range(len(raw) + 1)] if raw else [0.0]
        self._value = 0.0

    @property
    def value(self) -> float:
        """The current overall progress, between 0 and 1."""
        return round(self._value, PROGRESS_DIGITS)

    def step_done(self, index: int) -> float:
        """Count step ``index`` (and every step before it) as finished."""
        done = self._before[index + 1]
        if done > self._value:
            self._value = done
        return round(self._value, PROGRESS_DIGITS)

    def step_progress(self, index: int, fraction: float) -> float:
        """Record that step ``index`` is ``fraction`` (0 to 1) done."""
        fraction = min(1.0, max(0.0, fraction))
        start = self._before[index]
        value = start + (self._before[index + 1] - start) * fraction
        if value > self._value:
            self._value = value
        return round(self._value, PROGRESS_DIGITS)
