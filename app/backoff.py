"""How long to wait before trying again something that keeps failing (a lost connection)."""

from __future__ import annotations

import random

__all__ = ["backoff_seconds"]


def backoff_seconds(failures: int, first: float = 0.1, most: float = 5.0) -> float:
    """The wait after ``failures`` failed attempts in a row: ``first``, doubling up to
    ``most``, and jittered down to half, so that processes cut off together do not all come
    back at the same instant."""
    ceiling = min(most, first * 2 ** min(failures, 32))
    return random.uniform(ceiling / 2, ceiling)
