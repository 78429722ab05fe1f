"""The SSE client of ``sse_fanout.py``: many ``GET /events`` subscribers in one process.

Each subscriber is one TCP connection with an ``asyncio.Protocol`` that parses the stream by
hand (``event:``, ``id:`` and ``data:`` lines; the chunked framing lines are skipped), and
tallies, per event, the delay from the ``time`` in its JSON to the moment it arrived.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from _harness import HOST

TERMINAL_EVENTS = frozenset({b"run.succeeded", b"run.failed", b"run.cancelled"})
TIME_KEY = b'"time":"'


@dataclass
class Tally:
    """What all subscribers of one phase received."""

    subscribers: int
    delays: dict[bytes, array[float]] = field(default_factory=dict)
    """Seconds from send to receipt, by the event's ``time``."""
    received: list[int] = field(default_factory=list)
    terminal: list[int] = field(default_factory=list)
    connected: int = 0
    recorded: list[tuple[str, str, bytes]] = field(default_factory=list)
    """Subscriber 0's events: type, id and ``data:``, for the bare phase to replay."""
    _sent: dict[bytes, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.received = [0] * self.subscribers
        self.terminal = [0] * self.subscribers

    def arrived(self, line: bytes, now: float) -> None:
        """Count a ``data:`` line received at ``now``; its ``time`` is parsed once per event."""
        start = line.index(TIME_KEY) + len(TIME_KEY)
        stamp = line[start : line.index(b'"', start)]
        sent = self._sent.get(stamp)
        if sent is None:
            sent = self._sent[stamp] = datetime.fromisoformat(stamp.decode()).timestamp()
            self.delays[stamp] = array("d")
        self.delays[stamp].append(now - sent)


class Follower(asyncio.Protocol):
    """One subscriber on ``GET /events``: tallies what arrives until its connection closes.

    A protocol rather than a stream reader: no task wakes up per read, so the client's own
    share of the delay stays small with a thousand connections.
    """

    def __init__(self, port: int, tally: Tally, index: int) -> None:
        self.port, self.tally, self.index = port, tally, index
        self.head = True
        self.pending, self.kind, self.event_id = b"", b"", b""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(
            f"GET /events HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        tally, index = self.tally, self.index
        data = self.pending + data
        if self.head:
            if b"\r\n\r\n" not in data:
                self.pending = data
                return
            head, _, data = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                error = RuntimeError(f"subscriber {index}: {head.splitlines()[0]!r}")
                if not self.closed.done():
                    self.closed.set_exception(error)
                assert self.transport is not None
                self.transport.close()
                return
            self.head = False
        *lines, self.pending = data.split(b"\n")
        for raw in lines:  # chunked framing lines are neither data:, event: nor id:
            line = raw.rstrip(b"\r")
            if line.startswith(b"data:"):
                tally.arrived(line, now)
                tally.received[index] += 1
                if self.kind in TERMINAL_EVENTS:
                    tally.terminal[index] += 1
                if index == 0:
                    tally.recorded.append((self.kind.decode(), self.event_id.decode(), line[5:]))
            elif line.startswith(b"event:"):
                self.kind = line[6:].strip()
            elif line.startswith(b"id:"):
                self.event_id = line[3:].strip()
            elif line == b": connected":
                tally.connected += 1


async def follow(port: int, tally: Tally, index: int) -> None:
    """One subscriber: follow ``/events`` until cancelled or closed."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(
        lambda: Follower(port, tally, index), HOST, port
    )
    try:
        await protocol.closed
    finally:
        transport.close()
