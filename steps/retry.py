"""Retry policy of a step: how many attempts, how long between them, which errors retry."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_RETRY_POLICY", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step is retried before the run gives up and rolls back.

    The delay before attempt ``n + 1`` is ``initial_delay * multiplier ** (n - 1)``, capped at
    ``max_delay``, then spread by ``jitter`` (0.1 means ±10 %) so that many runs failing
    together do not retry in lockstep. Only exceptions that are instances of ``retry_on`` are
    retried; a step that returns ``StepResult(success=False)`` has decided and is not retried.
    """

    max_attempts: int = 1
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether a step that failed on ``attempt`` (from 1) with ``error`` gets another go."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (from 1) before the next one."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        if self.jitter == 0 or base == 0:
            return base
        import random  # imported here: it is slow to import and only retries need it

        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_RETRY_POLICY = RetryPolicy()
"""One attempt, no retry: what a step gets unless it says otherwise."""
