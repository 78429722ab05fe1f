"""The HTTP protocol ``stepline serve`` runs: uvicorn's own (httptools), with a deadline for
receiving each request, and problem details when over the concurrency limit.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a
request takes to arrive: its keep-alive timer is cancelled by the first byte, so a client
sending one byte a second holds a connection (and a slot under ``limit_concurrency``) for
ever. Here a connection gets ``request_timeout`` seconds, from when it opens or its previous
response ends, to deliver a request's headers and body; then it is closed. While a request
is handled (after its body has arrived) no deadline runs, so responses and event streams
may last as long as they need.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import PROBLEM_BASE

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "DeadlineProtocol", "deadline_protocol"]

DEFAULT_REQUEST_TIMEOUT = 15.0
log = logging.getLogger("stepline.server")

_UNAVAILABLE = json.dumps(
    {
        "type": PROBLEM_BASE + "unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "the server is handling as many connections as it may; retry shortly",
        "instance": None,
    }
).encode()


async def _unavailable(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(_UNAVAILABLE)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _UNAVAILABLE, "more_body": False})


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for receiving each request."""

    request_timeout: ClassVar[float] = DEFAULT_REQUEST_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a pipelined request that starts while another is handled

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # else the next request has arrived and is started now
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._arm()

    def on_headers_complete(self) -> None:
        limit = self.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        # uvicorn would answer its own plain-text 503; the API answers problem details.
        log.warning("over the concurrency limit (%d): answered 503", limit)
        app, self.app, self.limit_concurrency = self.app, _unavailable, None
        try:
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.warning(
                "closed a connection that sent no whole request in %gs", self.request_timeout
            )
            self.transport.close()


def deadline_protocol(request_timeout: float) -> type[DeadlineProtocol]:
    """``DeadlineProtocol`` with this deadline, for ``uvicorn.Config(http=...)``."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_timeout": request_timeout})
