"""Run ids: ULIDs, so that sorting ids sorts runs by creation time."""

from __future__ import annotations

import base64
import os
import threading
import time

__all__ = ["new_run_id"]

# Crockford's base32 in the order of RFC 4648's: base64.b32encode does the encoding in C.
_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)
_RANDOM_LIMIT = 1 << 80

_lock = threading.Lock()
_last = (0, 0)  # the millisecond and the random part of the last id made here


def new_run_id() -> str:
    """A 26-character ULID: 48 bits of milliseconds, then 80 random bits.

    Monotonic within the process (the ULID spec's monotonic mode): an id made in the same
    millisecond as the one before takes the next value of its random part, so runs created
    in one millisecond are still claimed in the order they were created."""
    global _last
    now = time.time_ns() // 1_000_000
    with _lock:
        last_ms, last_random = _last
        if now <= last_ms and last_random + 1 < _RANDOM_LIMIT:
            # Also when the clock steps back: ids never go back with it.
            now, random = last_ms, last_random + 1
        else:
            now, random = max(now, last_ms + 1), int.from_bytes(os.urandom(10), "big")
        _last = (now, random)
    # 20 bytes are 32 base32 digits; the value fits the last 26 (130 bits).
    raw = now.to_bytes(10, "big") + random.to_bytes(10, "big")
    return base64.b32encode(raw)[-26:].translate(_CROCKFORD).decode()
