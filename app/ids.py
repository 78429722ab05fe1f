"""Run ids: ULIDs, so that sorting ids sorts runs by creation time."""

from __future__ import annotations

import base64
import os
import time

__all__ = ["new_run_id"]

# Crockford's base32 in the order of RFC 4648's: base64.b32encode does the encoding in C.
_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_run_id() -> str:
    """A 26-character ULID: 48 bits of milliseconds, then 80 random bits."""
    # 20 bytes are 32 base32 digits; the value fits the last 26 (130 bits).
    raw = (time.time_ns() // 1_000_000).to_bytes(10, "big") + os.urandom(10)
    return base64.b32encode(raw)[-26:].translate(_CROCKFORD).decode()
