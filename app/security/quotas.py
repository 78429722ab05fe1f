"""Per-key quotas kept in memory: how fast a key may create runs, and how many event
streams it may hold open at once. (Queued runs are counted by the store, which sees every
replica's; these two are counted by each process.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.errors import TooManyRequests

__all__ = ["STREAM_RETRY_SECONDS", "Quotas", "RateLimiter", "StreamSlots"]

STREAM_RETRY_SECONDS = 5.0  # a stream's slot frees when a client disconnects: soon, if ever


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: a burst of ``per_minute`` runs, refilled evenly over a
    minute. ``per_minute=None`` allows everything."""

    def __init__(
        self, per_minute: int | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s; ``TooManyRequests`` (with when to retry) if none is
        left."""
        if self.per_minute is None:
            return
        now, capacity, per_second = self.clock(), float(self.per_minute), self.per_minute / 60
        bucket = self._buckets.setdefault(key, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * per_second)
        bucket.updated = now
        if bucket.tokens < 1:
            raise TooManyRequests(
                f"this key may create {self.per_minute} runs a minute",
                retry_after=(1 - bucket.tokens) / per_second,
            )
        bucket.tokens -= 1


class StreamSlots:
    """At most ``per_key`` open event streams per key (``None``: no limit)."""

    def __init__(self, per_key: int | None) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        """Take a slot of ``key``'s; ``TooManyRequests`` if all are taken."""
        if self.per_key is None:
            return
        held = self._open.get(key, 0)
        if held >= self.per_key:
            raise TooManyRequests(
                f"this key has {held} event streams open, its most",
                retry_after=STREAM_RETRY_SECONDS,
            )
        self._open[key] = held + 1

    def release(self, key: str) -> None:
        if self.per_key is None:
            return
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)

    def held(self, key: str) -> int:
        return self._open.get(key, 0)


@dataclass(frozen=True, slots=True)
class Quotas:
    """The in-memory quotas of one app."""

    runs: RateLimiter
    streams: StreamSlots
