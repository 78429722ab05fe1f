"""A parser of server-sent events (the WHATWG ``text/event-stream`` format), fed line by line."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEParser", "ServerSentEvent"]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched block: ``event`` defaults to ``"message"``; ``id`` is the block's own
    (``None`` when it carried none, so a stream-level notice is told apart from a stored
    event); ``data`` is the raw text, its lines joined by newlines."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed it the lines of a stream (without their line endings); it returns each event
    as the blank line that ends it arrives. Comments (``:``-lines) are counted, not kept."""

    def __init__(self) -> None:
        self.comments = 0
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            # The spec ignores an id with a NUL: it could not be sent back as a header.
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data, id_, retry = self._event, self._data, self._id, self._retry
        self._event, self._data, self._id, self._retry = "", [], None, None
        if not data and not event and id_ is None:
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=id_, retry=retry)
