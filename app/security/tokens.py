"""Stream tokens: what a browser's ``EventSource`` (which cannot send headers) presents as
``?token=`` instead of a key.

A token reads ``slt_<payload>.<signature>``: the payload names the key it was minted for,
the one stream it opens (``run:<id>`` or ``events``), when it expires (at most five
minutes on) and a random id; the signature is an HMAC-SHA256 of the payload under the
server's secret. The store records each id as it is used, so a token opens its stream
once, on any replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.errors import Unauthorized

__all__ = [
    "MAX_TOKEN_SECONDS",
    "TOKEN_PATTERN",
    "StreamGrant",
    "StreamTokens",
    "all_events_stream",
    "run_stream",
]

TOKEN_PREFIX = "slt_"
TOKEN_PATTERN = re.compile(r"slt_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
"""What a token looks like (to find one where it must not be, such as a log)."""
MAX_TOKEN_SECONDS = 300.0
NONCE_BYTES = 16


def run_stream(run_id: str) -> str:
    """The name of the stream of one run's events."""
    return f"run:{run_id}"


def all_events_stream() -> str:
    """The name of the stream of every run's events."""
    return "events"


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a valid token grants: one stream, to the key it was minted for, until then."""

    key_id: str | None
    stream: str
    token_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Mints and checks stream tokens; ``secret`` is set when the app starts."""

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        seconds: float = MAX_TOKEN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < seconds <= MAX_TOKEN_SECONDS:
            raise ValueError(f"stream tokens live at most {MAX_TOKEN_SECONDS:g} seconds")
        self.secret, self.seconds, self.clock = secret, seconds, clock

    def _sign(self, payload: bytes) -> bytes:
        if self.secret is None:
            raise RuntimeError("stream tokens have no secret yet: the app has not started")
        return hmac.new(self.secret, payload, hashlib.sha256).digest()

    def mint(self, key_id: str | None, stream: str) -> tuple[str, datetime]:
        """A token for ``stream`` on behalf of ``key_id``, and when it expires."""
        expires = int(self.clock() + self.seconds)
        payload = json.dumps(
            {"k": key_id, "s": stream, "e": expires, "n": secrets.token_hex(NONCE_BYTES)},
            separators=(",", ":"),
        ).encode()
        token = f"{TOKEN_PREFIX}{_b64(payload)}.{_b64(self._sign(payload))}"
        return token, datetime.fromtimestamp(expires, UTC)

    def check(self, token: str, stream: str) -> StreamGrant:
        """The grant of a token for ``stream``; ``Unauthorized`` if it is forged, expired or
        for another stream. (That it has not been used is the store's to say.)"""
        invalid = Unauthorized("the stream token is invalid, expired or for another stream")
        body, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        try:
            payload, mac = _unb64(body), _unb64(signature)
        except ValueError:
            raise invalid from None
        if not token.startswith(TOKEN_PREFIX) or not hmac.compare_digest(mac, self._sign(payload)):
            raise invalid
        claims = json.loads(payload)  # signed by us: well-formed
        if claims["s"] != stream or claims["e"] <= self.clock():
            raise invalid
        return StreamGrant(
            claims["k"], claims["s"], claims["n"], datetime.fromtimestamp(claims["e"], UTC)
        )
