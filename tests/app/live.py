"""A real uvicorn server in a background thread, and a small reader of server-sent events.

``httpx.ASGITransport`` buffers a whole response body, so a live stream can only be watched
through a real server and a real socket (as uvicorn's own tests do).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypedDict, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

__all__ = ["Event", "EventStream", "ServerThread", "open_stream", "serve", "serve_thread"]

T = TypeVar("T")

STARTUP_SECONDS = 10.0
SHUTDOWN_SECONDS = 10.0
GRACEFUL_SHUTDOWN_SECONDS = 2


class ServerThread(uvicorn.Server):
    """A uvicorn server that says when it is listening (``ready``), run in its own thread."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    def run_in_thread(self) -> None:
        try:
            self.run()
        finally:
            self.ready.set()

    @property
    def port(self) -> int:
        """The port the server is bound to (it was asked for any free one)."""
        return int(self.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` on the server's own loop, where the app's store and bus live."""
        assert self.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))


@asynccontextmanager
async def serve(
    app: ASGIApp, *, within: float = STARTUP_SECONDS, **options: Any
) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port and yield its base URL; ``options`` are
    more ``uvicorn.Config`` arguments (see ``serve_thread``)."""
    async with serve_thread(app, within=within, **options) as server:
        yield server.url


@asynccontextmanager
async def serve_thread(
    app: ASGIApp, *, within: float = STARTUP_SECONDS, **options: Any
) -> AsyncIterator[ServerThread]:
    """Serve ``app`` on 127.0.0.1 at a free port and yield the server; ``options`` are
    more ``uvicorn.Config`` arguments.

    uvicorn runs the app's lifespan. Raises ``RuntimeError`` if the server is not listening
    within ``within`` seconds or has not stopped ``SHUTDOWN_SECONDS`` after the block ends.
    """
    config = uvicorn.Config(
        app,
        **{
            "host": "127.0.0.1",
            "port": 0,
            "loop": "asyncio",
            "ws": "none",
            "lifespan": "on",
            "log_level": "warning",
            "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
            **options,
        },
    )
    server = ServerThread(config)
    thread = threading.Thread(target=server.run_in_thread, name="live-uvicorn", daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(server.ready.wait, within) or not server.started:
            raise RuntimeError(f"the server did not start within {within} s")
        yield server
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, SHUTDOWN_SECONDS)
        if thread.is_alive():
            raise RuntimeError(f"the server did not stop within {SHUTDOWN_SECONDS} s")


class Event(TypedDict):
    """One dispatched block of fields: ``data`` is parsed JSON when it is JSON.

    Fields the block did not carry are ``None`` (``id`` is not inherited from earlier events,
    unlike a browser's ``lastEventId``), so a test sees exactly what the server sent.
    """

    id: str | None
    event: str | None
    data: Any
    retry: int | None


class EventStream:
    """The server-sent events of a streaming ``httpx`` response, parsed line by line.

    Iterating yields every block that carries at least one field, in order, and stops when
    the response ends; a block cut off by the end is dropped, as the WHATWG parser does.
    Comment lines are kept, without their ``": "`` prefix, in ``comments``.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()
        self._block: dict[str, Any] = {}
        self._data: list[str] = []
        self._ready: deque[Event] = deque()
        self._ended = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._ready:
            if not await self._read_line():
                raise StopAsyncIteration
        return self._ready.popleft()

    async def read_until(self, done: Callable[[Event], bool], within: float) -> list[Event]:
        """The events up to and including the first that ``done`` accepts.

        Raises ``TimeoutError`` after ``within`` seconds and ``AssertionError`` if the
        stream ends first.
        """
        events: list[Event] = []
        async with asyncio.timeout(within):
            async for event in self:
                events.append(event)
                if done(event):
                    return events
        raise AssertionError(f"the stream ended before the awaited event: {events}")

    async def read_to_end(self, within: float) -> list[Event]:
        """Every remaining event, once the server has ended the stream (``TimeoutError``
        if it has not within ``within`` seconds)."""
        async with asyncio.timeout(within):
            return [event async for event in self]

    async def next_comment(self, within: float) -> str:
        """The next comment line; events read on the way stay queued for iteration."""
        seen = len(self.comments)
        async with asyncio.timeout(within):
            while len(self.comments) == seen:
                if not await self._read_line():
                    raise AssertionError("the stream ended before a comment arrived")
        return self.comments[seen]

    async def _read_line(self) -> bool:
        if self._ended:
            return False
        try:
            line = await anext(self._lines)
        except StopAsyncIteration:
            self._ended = True
            return False
        if not line:
            self._dispatch()
        elif line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
        else:
            name, _, value = line.partition(":")
            self._field(name, value.removeprefix(" "))
        return True

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
        elif name in ("event", "id"):
            self._block[name] = value
        elif name == "retry" and value.isdigit():
            self._block["retry"] = int(value)

    def _dispatch(self) -> None:
        if not self._block and not self._data:
            return
        data: Any = None
        if self._data:
            text = "\n".join(self._data)
            try:
                data = json.loads(text)
            except ValueError:
                data = text
        block = self._block
        self._ready.append(
            Event(id=block.get("id"), event=block.get("event"), data=data, retry=block.get("retry"))
        )
        self._block, self._data = {}, []


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    path: str,
    *,
    last_event_id: int | str | None = None,
    params: Mapping[str, str | list[str]] | None = None,
) -> AsyncIterator[EventStream]:
    """GET ``path`` as a stream (with ``Last-Event-ID`` if given), check that it is an
    event stream, and yield its reader; the connection is closed when the block ends."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with client.stream("GET", path, headers=headers, params=params) as response:
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"GET {path}: {response.status_code} {response.text}")
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)
