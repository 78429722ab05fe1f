"""Server-sent events: one run's events, and every run's events for dashboards.

A stream subscribes to the bus first, then replays the event log after the client's
position, then tails live events, dropping any it already sent: nothing is lost between
replay and live, and nothing is sent twice. ``id:`` is the run's event sequence (the global
event id on ``/events``), so a client that reconnects with ``Last-Event-ID`` gets exactly
what it missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from app.api.auth import StreamKey
from app.api.deps import Services, ServicesDep
from app.api.problems_doc import PROBLEMS
from app.api.views import run_json
from app.errors import BadRequest
from app.runs.bus import Subscription
from app.security.keys import Principal
from app.states import TERMINAL
from app.store.records import EventRow, RunRow

router = APIRouter(tags=["events"])

REPLAY_BATCH = 500
MAX_EVENT_ID = 2**63 - 1  # event ids and sequences are SQL BIGINTs
TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled"})
RESUME_DESCRIPTION = (
    "Resume after this event, as the Last-Event-ID header does (the header wins when both "
    "are sent): for clients that open a new connection rather than let the browser "
    "reconnect, such as an EventSource opened with a fresh stream token."
)
LastEventId = Annotated[str | None, Header()]
Resume = Annotated[
    int | None,
    Query(alias="last_event_id", ge=0, le=MAX_EVENT_ID, description=RESUME_DESCRIPTION),
]
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream of events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def _position(last_event_id: str | None, resume: int | None = None) -> int | None:
    """Where a stream resumes: after the ``Last-Event-ID`` header's event, else after the
    ``last_event_id`` query parameter's (the header is what a browser resends by itself)."""
    if last_event_id is None or not last_event_id.strip():
        return resume
    try:
        position = int(last_event_id)
    except ValueError:
        raise BadRequest(f"Last-Event-ID must be an event id, not {last_event_id!r}") from None
    if not 0 <= position <= MAX_EVENT_ID:
        raise BadRequest(f"Last-Event-ID must be an event id, not {last_event_id!r}")
    return position


def _sse(event: EventRow, event_id: int, retry: int | None = None) -> bytes:
    """The event's frame: byte for byte what ``ServerSentEvent(event.json, event=event.type,
    id=str(event_id), retry=retry).encode()`` makes, at a tenth of the cost (every stream
    frames every event it sends). Its JSON holds no line break, nor do its type and id, so
    nothing needs splitting or cleaning."""
    tail = b"\r\n" if retry is None else b"retry: %d\r\n\r\n" % retry
    head = b"id: %d\r\nevent: %s\r\ndata: " % (event_id, event.type.encode())
    return head + event.json.encode() + b"\r\n" + tail


def _closing(last_event_id: int) -> bytes:
    # The stream's last word when the server stops: reconnecting with Last-Event-ID (a
    # browser does it by itself) resumes exactly here, on this server or another.
    data = json.dumps({"type": "stream.closing", "reason": "the server is shutting down",
                       "last_event_id": last_event_id})  # fmt: skip
    return ServerSentEvent(data, event="stream.closing").encode()


def _seq(event: EventRow) -> int:
    return event.seq


def _id(event: EventRow) -> int:
    return event.id


@dataclass(frozen=True)
class _Log:
    """The part of the event log one stream follows, and how it numbers what it sends."""

    read: Callable[[int, int], Awaitable[list[EventRow]]]
    """Up to ``limit`` events after ``position``, in order."""
    position: Callable[[EventRow], int]
    """An event's place in this log, and its ``id:`` in the stream."""
    wanted: Callable[[EventRow], bool] | None = None
    """Whether to send an event (None: every one); one not wanted is passed over, and a
    resume skips it."""
    visible: Callable[[EventRow], Awaitable[bool]] | None = None
    """Whether a live event belongs in this log at all (None: every one); ``read``
    filters the events it reads by itself."""
    ends: bool = False
    """The stream ends after a run's final event."""


async def _follow(
    log: _Log, subscription: Subscription, position: int, retry: int | None
) -> AsyncIterator[bytes]:
    """Replay ``log`` after ``position``, then follow its live events, each sent once and in
    order: a live event that arrives after a gap (published out of order, or before the
    replay read its predecessors) brings the gap from the log. ``retry`` goes with the first
    event sent."""
    cursor = position  # every event up to here has been sent or passed over
    # Events that are ready together leave in one write (``chunk``): a send through the
    # middleware stack and the socket costs more than framing the event.

    def take(events: Iterable[EventRow], chunk: list[bytes]) -> bool:
        """Frame into ``chunk`` the events past the cursor; True at the stream's end."""
        nonlocal cursor, retry
        for event in events:
            at = log.position(event)
            if at <= cursor:
                continue
            cursor = at
            if log.wanted is None or log.wanted(event):
                chunk.append(_sse(event, at, retry))
                retry = None
            if log.ends and event.type in TERMINAL_EVENTS:
                return True
        return False

    while True:  # replay
        batch = await log.read(cursor, REPLAY_BATCH)
        chunk: list[bytes] = []
        ended = take(batch, chunk)
        if chunk:
            yield b"".join(chunk)
        if ended:
            return
        if len(batch) < REPLAY_BATCH:
            break
    while True:  # then live
        chunk = []
        for live in await subscription.get_ready():
            if live is None:
                chunk.append(_closing(cursor))
                yield b"".join(chunk)
                return
            at = log.position(live)
            if at <= cursor or (log.visible is not None and not await log.visible(live)):
                continue
            missed = await log.read(cursor, at - cursor - 1) if at > cursor + 1 else []
            if take((*missed, live), chunk):
                yield b"".join(chunk)
                return
        if chunk:
            yield b"".join(chunk)


class _HeldStream(EventSourceResponse):
    """A stream that gives its key's slot back when it ends, however it ends."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # The base class's per-send timeout, on asyncio's timer rather than an anyio cancel
        # scope, which looks up the running library and task on every send of every stream.
        if self.send_timeout is None:
            await send(message)
            return
        deadline = asyncio.timeout(self.send_timeout)
        try:
            async with deadline:
                await send(message)
        except TimeoutError:
            if deadline.expired():
                raise SendTimeoutError() from None
            raise


def _stream(
    services: Services, principal: Principal, stream: AsyncIterator[ServerSentEvent | bytes]
) -> EventSourceResponse:
    settings = services.settings
    slots, key = services.quotas.streams, principal.key_id
    if key is not None:
        slots.acquire(key)  # 429 when the key holds its most streams

    async def counted() -> AsyncIterator[ServerSentEvent | bytes]:
        services.metrics.sse_streams.inc()
        try:
            async for item in stream:
                yield item
        finally:
            services.metrics.sse_streams.dec()

    return _HeldStream(
        counted(),
        ping=settings.sse_ping_seconds,
        send_timeout=settings.sse_send_timeout_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        release=(lambda: slots.release(key)) if key is not None else (lambda: None),
    )


@router.get(
    "/runs/{run_id}/events",
    name="stream_run_events",
    response_class=EventSourceResponse,
    responses={**SSE_RESPONSE, 204: {"description": "The run ended before this position"},
               **PROBLEMS(400, 401, 403, 404, 422, 429)},
)  # fmt: skip
async def stream_run_events(
    run_id: str,
    services: ServicesDep,
    principal: StreamKey,
    last_event_id: LastEventId = None,
    resume: Resume = None,
) -> Response:
    """First ``run.snapshot`` (the run as ``GET /runs/{id}`` shows it, with the id of the
    last event it reflects), then every event as it happens; ends after the run's final
    event. With ``Last-Event-ID``, exactly the missed events; 204 once the run has ended
    before that position, which stops a browser's ``EventSource`` from reconnecting.
    ``?last_event_id=`` does the same as the header."""
    position = _position(last_event_id, resume)
    run = await services.runs.get(run_id, principal.owner_filter)  # 404 before the stream
    if position is not None and run.status in TERMINAL and position >= run.last_seq:
        return Response(status_code=204)
    if position is not None and position > run.last_seq:
        # No client can have seen an event that does not exist yet: refuse it rather than
        # wait for events the stream would then skip as already sent.
        raise BadRequest(f"Last-Event-ID {position} is past this run's last event ({run.last_seq})")
    return _stream(services, principal, _run_events(services, run, position))


async def _run_events(
    services: Services, run: RunRow, position: int | None
) -> AsyncIterator[ServerSentEvent | bytes]:
    store, run_id = services.store, run.id
    retry: int | None = services.settings.sse_retry_ms  # sent once, with the first event
    async with services.bus.subscribe(run_id) as subscription:
        if position is None:
            # The run as read before subscribing: what follows, read after subscribing,
            # brings whatever happened in between.
            snapshot = run_json(run).decode()
            yield ServerSentEvent(snapshot, event="run.snapshot", id=str(run.last_seq), retry=retry)
            retry, position = None, run.last_seq
            if run.status in TERMINAL:
                for event in await store.run_events(run_id, run.last_seq - 1, 1):
                    yield _sse(event, event.seq)
                return
        log = _Log(
            read=lambda after, limit: store.run_events(run_id, after, limit),
            position=_seq,
            ends=True,
        )
        async for chunk in _follow(log, subscription, position, retry):
            yield chunk


@router.get(
    "/events",
    name="stream_events",
    response_class=EventSourceResponse,
    responses={**SSE_RESPONSE, **PROBLEMS(400, 401, 403, 422, 429)},
)
async def stream_events(
    services: ServicesDep,
    principal: StreamKey,
    pipeline: Annotated[list[str] | None, Query(description="Only these pipelines")] = None,
    type: Annotated[  # the query parameter's public name
        list[str] | None, Query(description="Only these event types, e.g. run.failed")
    ] = None,
    last_event_id: LastEventId = None,
    resume: Resume = None,
) -> Response:
    """Every run's events as they happen, for dashboards; ``id:`` is the global event id,
    so ``Last-Event-ID`` (or ``?last_event_id=``) resumes here too. Never ends on its own.
    A key without the ``admin`` scope gets the events of the runs it created only."""
    position = _position(last_event_id, resume)
    pipelines = [p for item in pipeline or [] for p in item.split(",") if p]
    types = [t for item in type or [] for t in item.split(",") if t]
    owner = principal.owner_filter
    return _stream(services, principal, _all_events(services, position, pipelines, types, owner))


async def _all_events(
    services: Services,
    position: int | None,
    pipelines: list[str],
    types: list[str],
    owner: str | None,
) -> AsyncIterator[ServerSentEvent | bytes]:
    store = services.store
    retry: int | None = services.settings.sse_retry_ms  # sent once, with the first event

    def wanted(event: EventRow) -> bool:
        return (not pipelines or event.pipeline in pipelines) and (not types or event.type in types)

    async def visible(event: EventRow) -> bool:
        # Read from the log, events are filtered by owner in the query; live ones here.
        return await services.runs.owner_of(event.run_id) == owner

    async with services.bus.subscribe(None) as subscription:
        if position is None:
            position = await store.last_event_id()
            yield ServerSentEvent(comment="connected", retry=retry)
            retry = None
        log = _Log(
            read=lambda after, limit: store.all_events(after, limit, owner_key_id=owner),
            position=_id,
            wanted=wanted if pipelines or types else None,
            visible=visible if owner is not None else None,
        )
        async for chunk in _follow(log, subscription, position, retry):
            yield chunk
