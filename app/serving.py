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
    """uvicorn's httptools protocol with a deadline for receiving each request.

    A connection notes when it began waiting for a request; one sweep a fraction of the
    deadline apart closes those that waited too long. No timer per request: arming and
    cancelling one costs the hot path more than everything else this class does.
    """

    request_timeout: ClassVar[float] = DEFAULT_REQUEST_TIMEOUT
    # Per class (``deadline_protocol`` makes one per deadline): connection -> waiting since.
    _waiting: ClassVar[dict[DeadlineProtocol, float]] = {}
    _sweeper: ClassVar[asyncio.TimerHandle | None] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self not in self._waiting:  # a pipelined request that starts while another runs
            self._wait()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._waiting.pop(self, None)

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # else the next request has arrived and is started now
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._wait()

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

    def _wait(self) -> None:
        cls = type(self)
        cls._waiting[self] = self.loop.time()
        if cls._sweeper is None:
            cls._sweeper = self.loop.call_later(cls._sweep_every(), cls._sweep, self.loop)

    @classmethod
    def _sweep_every(cls) -> float:
        return max(cls.request_timeout / 4, 0.05)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop) -> None:
        cls._sweeper = None
        now = loop.time()
        late = [c for c, since in cls._waiting.items() if now - since >= cls.request_timeout]
        for connection in late:
            del cls._waiting[connection]
            if not connection.transport.is_closing():
                log.warning(
                    "closed a connection that sent no whole request in %gs", cls.request_timeout
                )
                connection.transport.close()
        if cls._waiting:
            cls._sweeper = loop.call_later(cls._sweep_every(), cls._sweep, loop)


def deadline_protocol(request_timeout: float) -> type[DeadlineProtocol]:
    """``DeadlineProtocol`` with this deadline, for ``uvicorn.Config(http=...)``."""
    return type(
        "DeadlineProtocol",
        (DeadlineProtocol,),
        {"request_timeout": request_timeout, "_waiting": {}, "_sweeper": None},
    )
