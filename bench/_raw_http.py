"""A small HTTP/1.1 client on asyncio streams, for the load loops of the benchmarks.

httpx spends several milliseconds of CPU per run on a ``POST`` and an event stream of two
dozen events; on a machine of two cores the load generator then takes the CPU the server
would use. This client does only what the benchmarks need: keep-alive connections, a
``Content-Length`` or chunked response body, and the ``event:`` lines of a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

__all__ = ["RawClient", "RawHTTPError", "event_names_in"]

MAX_HEADER_LINES = 100


def event_names_in(body: bytes) -> list[str]:
    """The ``event:`` names of an event stream's body, in order."""
    return [line[6:].strip().decode() for line in body.split(b"\n") if line.startswith(b"event:")]


class RawHTTPError(RuntimeError):
    """A response whose status is not 2xx, or one this client cannot read."""


class _Closed(RawHTTPError):
    """The server had closed the connection before this request."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, dict[bytes, bytes]]:
        self.writer.write(head + body)
        try:
            status_line = await self.reader.readline()
        except ConnectionError as exc:
            raise _Closed(str(exc)) from exc
        if not status_line:
            raise _Closed("connection closed")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise RawHTTPError(f"not an HTTP response: {status_line!r}")
        headers: dict[bytes, bytes] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def body(self, headers: dict[bytes, bytes]) -> bytes:
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            return b"".join([chunk async for chunk in self.chunks()])
        return await self.reader.readexactly(int(headers.get(b"content-length", b"0")))

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readline()  # the blank line after the last chunk
                return
            chunk = await self.reader.readexactly(size + 2)
            yield chunk[:-2]

    def close(self) -> None:
        self.writer.close()


class RawClient:
    """Keep-alive connections to one ``host:port``; not safe to share a request across tasks,
    safe to run many requests at once (each takes a connection of its own)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    async def _send(
        self, head: bytes, body: bytes = b""
    ) -> tuple[_Connection, int, dict[bytes, bytes]]:
        # An idle connection the server has closed meanwhile (keep-alive timeout) is retried
        # once on a new one, as browsers and httpx do.
        while self._idle:
            connection = self._idle.pop()
            try:
                return connection, *await connection.request(head, body)
            except _Closed:
                connection.close()
        connection = await self._open()
        try:
            return connection, *await connection.request(head, body)
        except BaseException:
            connection.close()
            raise

    @contextmanager
    def _held(self, connection: _Connection) -> Iterator[_Connection]:
        try:
            yield connection
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)

    async def post_json(self, path: str, body: bytes) -> bytes:
        """``POST`` a JSON body; the response body (``RawHTTPError`` unless 2xx)."""
        head = (
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + self._host_header
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n"
        )  # fmt: skip
        connection, status, headers = await self._send(head, body)
        with self._held(connection):
            data = await connection.body(headers)
        if not 200 <= status < 300:
            raise RawHTTPError(f"POST {path}: {status} {data[:200]!r}")
        return data

    async def stream_chunks(self, path: str) -> list[bytes]:
        """``GET`` an event stream to its end; its body in the chunks it came in."""
        head = (
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + self._host_header
            + b"\r\nAccept: text/event-stream\r\n\r\n"
        )  # fmt: skip
        connection, status, headers = await self._send(head)
        with self._held(connection):
            if status != 200:
                await connection.body(headers)
                raise RawHTTPError(f"GET {path}: {status}")
            return [chunk async for chunk in connection.chunks()]

    async def event_names(self, path: str) -> list[str]:
        """``GET`` an event stream to its end; the ``event:`` names in order."""
        return event_names_in(b"".join(await self.stream_chunks(path)))

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
