"""The bare apps the HTTP benchmarks compare Stepline with, served like ``stepline serve``.

``create``: ``POST /runs`` validates the body with Stepline's own ``RunCreate`` and answers
202 with no body; no store, no middleware, no service.

``broadcast``: ``GET /events`` is an sse-starlette stream fed by one ``asyncio.Queue`` per
subscriber, with the ping, send timeout, retry hint and headers of Stepline's ``/events``.
``POST /replay`` takes a list of events (``offset`` seconds from now, ``type``, ``id``,
``data``) and publishes each at its offset: ``data`` with ``time`` set to the send time,
serialised once and put on every subscriber's queue.

``pipeline``: a run service that stores and executes nothing. ``POST /template`` takes what
one real run looked like to its client (``created``: the body ``POST /runs`` answered;
``chunks``: its event stream, in the writes it came in). Then ``POST /runs`` validates the
body with ``RunCreate`` and answers 202 with that body and a ``Location``, and
``GET /runs/{id}/events`` sends those writes at once through sse-starlette, with the ping,
send timeout and headers of Stepline's streams, and ends.

All answer ``GET /healthz``. Run as
``python bench/_baselines.py create|broadcast|pipeline --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.schemas import RunCreate
from app.settings import Settings

HOST = "127.0.0.1"
DEFAULTS = Settings()
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # as app.api.routes.streams


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/runs", status_code=202)
    async def create_run(body: RunCreate) -> Response:
        return Response(status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


Item = tuple[str, str, str]  # event type, id, JSON data


def broadcast_app() -> FastAPI:
    app = FastAPI()
    subscribers: set[asyncio.Queue[Item]] = set()
    replays: set[asyncio.Task[None]] = set()

    async def stream() -> AsyncIterator[ServerSentEvent]:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        subscribers.add(queue)
        try:
            yield ServerSentEvent(comment="connected", retry=DEFAULTS.sse_retry_ms)
            while True:
                type_, id_, data = await queue.get()
                yield ServerSentEvent(data, event=type_, id=id_)
        finally:
            subscribers.discard(queue)

    async def replay(events: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for event in events:
            delay = start + float(event["offset"]) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {**event["data"], "time": datetime.now(UTC).isoformat()}
            item = (event["type"], str(event["id"]), json.dumps(body, separators=(",", ":")))
            for queue in subscribers:
                queue.put_nowait(item)

    @app.get("/events")
    async def events() -> EventSourceResponse:
        return EventSourceResponse(
            stream(),
            ping=DEFAULTS.sse_ping_seconds,
            send_timeout=DEFAULTS.sse_send_timeout_seconds,
            headers=SSE_HEADERS,
        )

    @app.post("/replay", status_code=202)
    async def start_replay(request: Request) -> dict[str, int]:
        events = (await request.json())["events"]
        task = asyncio.create_task(replay(events))
        replays.add(task)
        task.add_done_callback(replays.discard)
        return {"subscribers": len(subscribers), "events": len(events)}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def pipeline_app() -> FastAPI:
    app = FastAPI()
    template: dict[str, Any] = {"created": b"{}", "chunks": []}
    runs = itertools.count(1)

    @app.post("/template", status_code=204)
    async def set_template(request: Request) -> Response:
        body = await request.json()
        template["created"] = body["created"].encode()
        template["chunks"] = [chunk.encode() for chunk in body["chunks"]]
        return Response(status_code=204)

    @app.post("/runs", status_code=202)
    async def create_run(body: RunCreate) -> Response:
        location = f"/runs/{next(runs)}"
        return Response(template["created"], status_code=202, headers={"Location": location},
                        media_type="application/json")  # fmt: skip

    async def stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
        for chunk in chunks:  # already encoded: as many writes as Stepline made
            yield chunk

    @app.get("/runs/{run_id}/events")
    async def run_events(run_id: str) -> EventSourceResponse:
        return EventSourceResponse(
            stream(template["chunks"]),
            ping=DEFAULTS.sse_ping_seconds,
            send_timeout=DEFAULTS.sse_send_timeout_seconds,
            headers=SSE_HEADERS,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


APPS = {"create": create_app, "broadcast": broadcast_app, "pipeline": pipeline_app}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a bare baseline app.")
    parser.add_argument("kind", choices=sorted(APPS))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(  # the flags of app.cli's ``stepline serve``
        APPS[args.kind](),
        host=HOST,
        port=args.port,
        timeout_graceful_shutdown=int(DEFAULTS.graceful_shutdown_seconds) or None,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=DEFAULTS.limit_concurrency or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
