"""Weighted progress: ``progress = Σ wᵢ·pᵢ / Σ wᵢ`` over the steps of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

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
    starts again after a retry, leaves the overall value where it was. ``value`` is the
    current overall progress between 0 and 1, rounded to ``PROGRESS_DIGITS``.
    """

    __slots__ = ("_after", "_before", "_exact", "_reached", "value", "weights")

    def __init__(self, weights: Sequence[float]) -> None:
        raw = [float(w) for w in weights]
        total = math.fsum(raw)
        if total <= 0:
            raw, total = [1.0] * len(raw), float(len(raw) or 1)
        self.weights = [w / total for w in raw]
        # _before[i] is the share of the steps before step i, _after[i] that up to step i.
        self._before = [0.0, *(done / total for done in accumulate(raw))]
        if raw:
            self._before[-1] = 1.0  # exact, whatever the rounding of the running sum
        self._after = self._before[1:]
        # Rounding is the dearest part of counting a step done: do it once per weighting.
        self._reached = [round(done, PROGRESS_DIGITS) for done in self._after]
        self._exact = 0.0
        self.value = 0.0

    def fresh(self) -> WeightedProgress:
        """A progress at 0 over the same weights, sharing the tables computed from them."""
        progress = object.__new__(WeightedProgress)
        progress.weights = self.weights
        progress._before, progress._after = self._before, self._after
        progress._reached = self._reached
        progress._exact = 0.0
        progress.value = 0.0
        return progress

    def step_done(self, index: int) -> float:
        """Count step ``index`` (and every step before it) as finished."""
        done = self._after[index]
        if done > self._exact:
            self._exact = done
            self.value = self._reached[index]
        return self.value

    def step_progress(self, index: int, fraction: float) -> float:
        """Record that step ``index`` is ``fraction`` (0 to 1) done."""
        fraction = min(1.0, max(0.0, fraction))
        start = self._before[index]
        exact = start + (self._after[index] - start) * fraction
        if exact > self._exact:
            self._exact = exact
            self.value = round(exact, PROGRESS_DIGITS)
        return self.value
