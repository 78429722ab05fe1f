"""GET /runs/{id}/events and GET /events, live: a real uvicorn server, a real streaming client.

Every wait has a timeout and none is a sleep: a run is held at a gate (``GATES``) while a
test looks at it mid-run, and a stream is read until the event the test expects.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sse_starlette import ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message

from app.api.routes import streams
from app.main import create_app
from app.runs.log_bus import LogEventBus
from app.settings import Settings
from app.store.records import Change, EventRow
from tests.configurations import CONFIGURATIONS, executor_settings, store_of
from tests.databases import database_url

from .conftest import WAIT, services_of, wait_until_finished
from .live import Event, open_stream, serve, serve_thread
from .pipelines import GATES

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
PING_SECONDS = 0.1
ENDED_SECONDS = 1.0  # how long a stream may stay open once its run is known to have ended
PROGRESS_CALLS = 20_000  # per step: 60 000 reports in well under a second
TERMINAL_EVENTS = ("run.succeeded", "run.failed", "run.cancelled")
CONTROLLED_SUCCESS = [
    "run.queued",
    "run.started",
    "step.started",
    "step.succeeded",
    "step.started",
    "step.succeeded",
    "step.started",
    "step.succeeded",
    "run.succeeded",
]


@dataclass
class Live:
    """A service on a uvicorn server, and a client that talks to it over a socket."""

    settings: Settings
    client: httpx.AsyncClient


@asynccontextmanager
async def live_service(settings: Settings) -> AsyncIterator[Live]:
    """``create_app(settings)`` on a live server, with a client whose every read times out."""
    app = create_app(settings)
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=WAIT) as c:
        yield Live(settings, c)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so that the services the tests share outlive a single test."""
    return "asyncio"


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here on every store; module-wide, as the services the tests share are."""
    return str(request.param)


@contextmanager
def settings_for(request: pytest.FixtureRequest, backend: str) -> Iterator[Settings]:
    """The settings of the ``settings`` fixture, on a database of its own, for a service
    that several tests share."""
    tmp_path_factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    with database_url(store_of(backend), tmp_path_factory.mktemp("live")) as url:
        yield Settings(
            database_url=url,
            pipelines=["tests.app.pipelines", "tests.app.pipelines:NOOP_10"],
            entry_points=False,
            workers=4,
            poll_seconds=0.05,
            **executor_settings(backend, request),
        )


@asynccontextmanager
async def shared_service(request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Live]:
    """A live service on a database of its own, for several tests to share."""
    with settings_for(request, backend) as settings:
        async with live_service(settings) as service:
            yield service


@pytest.fixture(scope="module")
async def live(request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Live]:
    """One live service for the tests that only look at runs of their own."""
    async with shared_service(request, backend) as service:
        yield service


async def start_run(live: Live, pipeline: str, params: dict[str, Any] | None = None) -> str:
    """Queue a run through the API and return its id."""
    response = await live.client.post("/runs", json={"pipeline": pipeline, "params": params or {}})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


@asynccontextmanager
async def held_run(live: Live, **params: Any) -> AsyncIterator[tuple[str, str]]:
    """A ``controlled`` run (with ``params``) held inside step ``b`` at a gate of its own;
    yields the run id and the gate, and opens the gate when the block ends, whatever
    happened."""
    gate = f"sse-{uuid.uuid4().hex}"
    run_id = await start_run(live, "controlled", {**params, "gate_at": "b", "gate": gate})
    try:
        assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)
        yield run_id, gate
    finally:
        GATES.open(gate)


async def finished_run(live: Live, pipeline: str, params: dict[str, Any] | None = None) -> str:
    """A run that has ended: its stream from the beginning was read to the end."""
    run_id = await start_run(live, pipeline, params)
    async with open_stream(live.client, f"/runs/{run_id}/events", last_event_id=0) as stream:
        await stream.read_to_end(WAIT)
    return run_id


async def all_run_events(live: Live, run_id: str) -> list[Event]:
    """Every event of an ended run, replayed from the start."""
    async with open_stream(live.client, f"/runs/{run_id}/events", last_event_id=0) as stream:
        return await stream.read_to_end(WAIT)


def ids(events: list[Event]) -> list[int]:
    """The ``id:`` of each event that carried one, as a number."""
    return [int(e["id"]) for e in events if e["id"] is not None]


def sans_retry(events: list[Event]) -> list[Event]:
    """The events as a comparison sees them: which one carried the retry hint is not content."""
    return [Event(id=e["id"], event=e["event"], data=e["data"], retry=None) for e in events]


def types(events: list[Event]) -> list[str | None]:
    """The ``event:`` of each event."""
    return [e["event"] for e in events]


def is_terminal(event: Event) -> bool:
    """Whether ``event`` is a run's final event."""
    return event["event"] in TERMINAL_EVENTS


def is_logged(message: str) -> Callable[[Event], bool]:
    """A test for the ``step.log`` event of ``message``."""

    def matches(event: Event) -> bool:
        return event["event"] == "step.log" and event["data"]["message"] == message

    return matches


def step_is(type_: str, step: str) -> Callable[[Event], bool]:
    """A test for the event of type ``type_`` about step ``step``."""

    def matches(event: Event) -> bool:
        return event["event"] == type_ and event["data"]["step"] == step

    return matches


# -- GET /runs/{id}/events -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "ending", "last"),
    [({}, "open", "run.succeeded"), ({"fail_at": "b"}, "open", "run.failed"),
     ({}, "cancel", "run.cancelled")],
    ids=["succeeded", "failed", "cancelled"],
)  # fmt: skip
async def test_new_connection_mid_run_gets_the_snapshot_then_gapless_events_until_the_end(
    live: Live, params: dict[str, Any], ending: str, last: str
) -> None:
    async with (
        held_run(live, **params) as (run_id, gate),
        open_stream(live.client, f"/runs/{run_id}/events") as stream,
    ):
        snapshot = await anext(stream)
        run = (await live.client.get(f"/runs/{run_id}")).json()
        if ending == "cancel":
            assert (await live.client.post(f"/runs/{run_id}/cancel")).status_code == 202
        else:
            GATES.open(gate)
        rest = await stream.read_to_end(WAIT)

    assert snapshot["event"] == "run.snapshot"
    assert snapshot["data"] == run
    assert snapshot["id"] == str(run["last_event_id"])
    assert run["status"] == "running"
    assert [s["status"] for s in run["steps"]] == ["succeeded", "running", "pending"]
    first = run["last_event_id"] + 1
    assert ids(rest) == list(range(first, first + len(rest)))
    assert [int(e["id"] or 0) for e in rest] == [e["data"]["seq"] for e in rest]
    assert types(rest)[-1] == last
    assert not any(is_terminal(e) for e in rest[:-1])
    everything = await all_run_events(live, run_id)
    assert sans_retry(rest) == sans_retry(everything[run["last_event_id"] :])


@pytest.mark.parametrize("last_event_id", [None, 0], ids=["new", "resumed"])
async def test_run_stream_sends_the_retry_hint_exactly_once_with_its_first_event(
    live: Live, last_event_id: int | None
) -> None:
    async with held_run(live) as (run_id, gate):
        path = f"/runs/{run_id}/events"
        async with open_stream(live.client, path, last_event_id=last_event_id) as stream:
            first = await anext(stream)
            GATES.open(gate)
            events = [first, *await stream.read_to_end(WAIT)]

    assert [e["retry"] for e in events if e["retry"] is not None] == [live.settings.sse_retry_ms]
    assert first["retry"] == live.settings.sse_retry_ms
    assert first["event"] == ("run.snapshot" if last_event_id is None else "run.queued")


async def test_reconnect_mid_run_with_last_event_id_gets_exactly_the_missed_events(
    live: Live,
) -> None:
    async with held_run(live) as (run_id, gate):
        path = f"/runs/{run_id}/events"
        async with open_stream(live.client, path, last_event_id=0) as stream:
            before = await stream.read_until(step_is("step.succeeded", "a"), WAIT)
        position = int(before[-1]["id"] or 0)
        async with open_stream(live.client, path, last_event_id=position) as stream:
            replayed = await stream.read_until(step_is("step.started", "b"), WAIT)
            GATES.open(gate)
            after = replayed + await stream.read_to_end(WAIT)

    everything = await all_run_events(live, run_id)
    assert "run.snapshot" not in types(after)
    assert ids(after) == list(range(position + 1, len(everything) + 1))
    assert sans_retry(before + after) == sans_retry(everything)
    assert types(everything) == CONTROLLED_SUCCESS


async def test_new_connection_after_the_end_gets_the_snapshot_and_the_final_event_then_ends(
    live: Live,
) -> None:
    run_id = await finished_run(live, "controlled", {"fail_at": "c"})
    run = (await live.client.get(f"/runs/{run_id}")).json()

    async with open_stream(live.client, f"/runs/{run_id}/events") as stream:
        events = await stream.read_to_end(WAIT)

    last = run["last_event_id"]
    assert types(events) == ["run.snapshot", "run.failed"]
    assert [e["retry"] for e in events] == [live.settings.sse_retry_ms, None]
    assert events[0]["data"] == run
    assert ids(events) == [last, last]
    assert events[1]["data"]["seq"] == last
    assert events[1]["data"]["error"]["step"] == "c"


async def test_every_frame_is_what_sse_starlette_encodes_for_its_fields(live: Live) -> None:
    """The frames go out as bytes Stepline writes itself: they must stay exactly what
    sse-starlette's encoder makes of the same fields (CRLF lines, one data line, ``retry``
    after the data), whatever a client's parser is."""
    run_id = await finished_run(live, "controlled", {"fail_at": "c"})
    async with live.client.stream(
        "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "0"}
    ) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])

    frames = [frame + b"\r\n\r\n" for frame in body.split(b"\r\n\r\n") if frame]
    events = [frame for frame in frames if not frame.startswith(b":")]  # pings are comments
    assert len(events) >= 9
    for number, frame in enumerate(events):
        fields = dict(line.split(b": ", 1) for line in frame.rstrip(b"\r\n").split(b"\r\n"))
        assert set(fields) == ({b"id", b"event", b"data", b"retry"} if number == 0
                               else {b"id", b"event", b"data"})  # fmt: skip
        retry = int(fields[b"retry"]) if b"retry" in fields else None
        encoded = ServerSentEvent(
            fields[b"data"].decode(), event=fields[b"event"].decode(),
            id=fields[b"id"].decode(), retry=retry,
        ).encode()  # fmt: skip
        assert frame == encoded
    assert fields[b"event"] == b"run.failed"  # the last frame: the run's final event


async def test_reconnect_at_or_past_the_final_event_gets_204_no_content(live: Live) -> None:
    run_id = await finished_run(live, "controlled")
    last = (await live.client.get(f"/runs/{run_id}")).json()["last_event_id"]

    responses = [
        await live.client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": str(position)})
        for position in (last, last + 1, last + 1000)
    ]

    assert [(r.status_code, r.content) for r in responses] == [(204, b"")] * 3


async def test_the_last_event_id_param_resumes_like_the_header_which_wins(live: Live) -> None:
    run_id = await finished_run(live, "controlled")
    last = (await live.client.get(f"/runs/{run_id}")).json()["last_event_id"]
    path = f"/runs/{run_id}/events"

    async with open_stream(live.client, path, params={"last_event_id": str(last - 2)}) as stream:
        resumed = await stream.read_to_end(WAIT)
    async with open_stream(
        live.client, path, last_event_id=last - 1, params={"last_event_id": "0"}
    ) as stream:
        by_header = await stream.read_to_end(WAIT)
    ended = await live.client.get(path, params={"last_event_id": str(last)})
    invalid = [
        await live.client.get(path, params={"last_event_id": value}) for value in ("-1", "x")
    ]

    assert ids(resumed) == [last - 1, last]
    assert ids(by_header) == [last]
    assert (ended.status_code, ended.content) == (204, b"")
    assert [r.status_code for r in invalid] == [422, 422]
    assert {r.headers["content-type"] for r in invalid} == {"application/problem+json"}


async def test_reconnect_just_before_the_final_event_gets_only_the_final_event(live: Live) -> None:
    run_id = await finished_run(live, "controlled")
    last = (await live.client.get(f"/runs/{run_id}")).json()["last_event_id"]

    path = f"/runs/{run_id}/events"
    async with open_stream(live.client, path, last_event_id=last - 1) as stream:
        events = await stream.read_to_end(WAIT)

    assert [(e["event"], e["id"]) for e in events] == [("run.succeeded", str(last))]


async def test_a_last_event_id_past_a_running_runs_events_is_a_400_problem(
    live: Live,
) -> None:
    async with held_run(live) as (run_id, _gate):
        path = f"/runs/{run_id}/events"
        beyond = (await live.client.get(f"/runs/{run_id}")).json()["last_event_id"] + 1000

        response = await live.client.get(path, headers={"Last-Event-ID": str(beyond)})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert str(beyond) in response.json()["detail"]


async def test_a_stream_held_open_by_a_waiting_run_gets_ping_comments(settings: Settings) -> None:
    async with (
        live_service(settings.model_copy(update={"sse_ping_seconds": PING_SECONDS})) as live,
        held_run(live) as (run_id, gate),
        open_stream(live.client, f"/runs/{run_id}/events") as stream,
    ):
        snapshot = await anext(stream)
        comment = await stream.next_comment(WAIT)
        GATES.open(gate)
        rest = await stream.read_to_end(WAIT)

    assert snapshot["event"] == "run.snapshot"
    assert comment.startswith("ping")
    assert types(rest)[-1] == "run.succeeded"


async def test_a_stream_whose_client_stops_reading_is_dropped_after_the_send_timeout(
    settings: Settings,
) -> None:
    timeout = 0.2
    application = create_app(settings.model_copy(update={"sse_send_timeout_seconds": timeout}))
    services = services_of(application)
    sent: list[Message] = []

    async def stuck_client(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the client reads no more: the send never completes

    async def connected() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as client,
        held_run(Live(settings, client)) as (run_id, _gate),
    ):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": f"/runs/{run_id}/events",
            "raw_path": f"/runs/{run_id}/events".encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"stepline.test")], "client": ("127.0.0.1", 50000),
            "server": ("stepline.test", 80),
        }  # fmt: skip
        begun = time.monotonic()
        with pytest.raises(SendTimeoutError):
            async with asyncio.timeout(WAIT):
                await application(scope, connected, stuck_client)
        dropped_after = time.monotonic() - begun
        metrics = (await client.get("/metrics")).text
        subscribers = services.bus.subscriber_count

    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert b"run.snapshot" in sent[1]["body"]
    assert timeout <= dropped_after < WAIT
    # The stream let go of what it held.
    assert "\nstepline_sse_streams 0.0\n" in metrics
    assert subscribers == 0


async def test_a_live_event_past_a_gap_brings_the_events_in_the_gap_first(
    settings: Settings,
) -> None:
    """Events can reach the in-process bus out of order (the commits of concurrent runs): a
    stream given an event past a gap reads the gap from the log, and sends it first, on both
    streams. (PostgreSQL's log bus reads every event from the log itself: no gap reaches a
    stream there.)"""
    app = create_app(settings)
    services = services_of(app)
    if isinstance(services.bus, LogEventBus):
        pytest.skip("the log bus delivers every event from the log: a stream sees no gap")

    async with (
        serve_thread(app) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client,
        held_run(Live(settings, client)) as (run_id, _gate),
        open_stream(client, f"/runs/{run_id}/events") as run_stream,
        open_stream(client, "/events") as all_stream,
    ):

        async def log(*messages: str, publish: int) -> list[EventRow]:
            """Store a step.log per message; publish only the last ``publish`` of them."""
            events = [
                await services.store.apply(run_id, Change("step.log", {"message": message}))
                for message in messages
            ]
            for event in events[len(events) - publish :]:
                services.bus.publish(event)
            return events

        # Once both streams have sent an event published live, their replay is behind them.
        async with asyncio.timeout(WAIT):
            await server.on_loop(log("marker", publish=1))
        await run_stream.read_until(is_logged("marker"), WAIT)
        await all_stream.read_until(is_logged("marker"), WAIT)
        async with asyncio.timeout(WAIT):
            first, second = await server.on_loop(log("first", "second", publish=1))
        by_run = await run_stream.read_until(is_logged("second"), WAIT)
        by_all = await all_stream.read_until(is_logged("second"), WAIT)

    logged = [("first", first.seq), ("second", second.seq)]
    assert [(e["data"]["message"], int(e["id"] or 0)) for e in by_run] == logged
    logged = [("first", first.id), ("second", second.id)]
    assert [(e["data"]["message"], int(e["id"] or 0)) for e in by_all] == logged


def test_a_frame_is_what_sse_starlette_encodes_whatever_the_event_holds() -> None:
    """Stored events are framed by hand (``streams._sse``): the bytes must be what
    sse-starlette's encoder makes, for any text an event's data can hold."""
    texts = ["plain", "é ü 漢字 🚀", "line\nbreak\r\nand\rreturn", "\u2028\u2029\x85", "%d %s"]
    for number, text in enumerate(texts, start=1):
        event = EventRow(
            id=2**63 - number, run_id=f"run-{text}", seq=number, type="step.log",
            pipeline="p", created_at=datetime.now(UTC), data={"message": text},
        )  # fmt: skip
        for event_id, retry in ((event.seq, None), (event.id, 3000)):
            expected = ServerSentEvent(
                event.json, event=event.type, id=str(event_id), retry=retry
            ).encode()
            assert streams._sse(event, event_id, retry) == expected


async def test_unknown_run_is_a_404_problem_before_any_stream(live: Live) -> None:
    response = await live.client.get("/runs/NOPE/events")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 404
    assert problem["instance"] == "/runs/NOPE/events"


async def test_a_last_event_id_that_is_not_an_event_id_is_a_400_problem(live: Live) -> None:
    run_id = await start_run(live, "NOOP_10")

    responses = [
        await live.client.get(path, headers={"Last-Event-ID": header})
        for path in (f"/runs/{run_id}/events", "/events")
        for header in ("abc", "-1", "1.5")
    ]

    assert [r.status_code for r in responses] == [400] * 6
    assert {r.headers["content-type"] for r in responses} == {PROBLEM}
    assert {r.json()["status"] for r in responses} == {400}


# -- GET /events -----------------------------------------------------------------------------


@dataclass
class Watched:
    """What two ``/events`` streams saw while three runs ran on a quiet service."""

    live: Live
    run_ids: list[str]
    hint: Event
    seen: list[Event]
    outcomes: list[Event]


def of_noop_10(event: Event) -> bool:
    """Whether ``event`` belongs to a ``NOOP_10`` run."""
    return bool(event["data"]["pipeline"] == "NOOP_10")


def a_controlled_failure(event: Event) -> bool:
    """Whether ``event`` is a failure (of a step or a run) of a ``controlled`` run."""
    return event["data"]["pipeline"] == "controlled" and event["event"] in (
        "run.failed",
        "step.failed",
    )


FILTERS: list[tuple[dict[str, str | list[str]], Callable[[Event], bool]]] = [
    ({"type": "run.succeeded,run.failed"}, is_terminal),
    ({"pipeline": "NOOP_10"}, of_noop_10),
    ({"pipeline": ["controlled", "nope"], "type": ["run.failed", "step.failed"]},
     a_controlled_failure),
]  # fmt: skip


@pytest.fixture(scope="module")
async def watched(request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Watched]:
    """One unfiltered ``/events`` stream and one filtered to run outcomes, both connected
    before a run that succeeds, one that fails and a ``NOOP_10`` run start, read until all
    three have ended."""
    async with shared_service(request, backend) as live:
        wanted = {"type": ["run.succeeded", "run.failed"]}
        async with (
            open_stream(live.client, "/events") as everything,
            open_stream(live.client, "/events", params=wanted) as outcomes,
        ):
            assert await everything.next_comment(WAIT) == "connected"
            assert await outcomes.next_comment(WAIT) == "connected"
            run_ids = [
                await start_run(live, "controlled"),
                await start_run(live, "controlled", {"fail_at": "c"}),
                await start_run(live, "NOOP_10"),
            ]
            ended: set[str] = set()

            def all_ended(event: Event) -> bool:
                if is_terminal(event):
                    ended.add(event["data"]["run_id"])
                return len(ended) == len(run_ids)

            hint, *seen = await everything.read_until(all_ended, WAIT)
            ended.clear()
            outcome_hint, *seen_outcomes = await outcomes.read_until(all_ended, WAIT)
        assert outcome_hint == hint
        yield Watched(live, run_ids, hint, seen, seen_outcomes)


async def test_all_events_stream_every_runs_events_live_with_gapless_global_ids(
    watched: Watched,
) -> None:
    seen = watched.seen

    assert ids(seen) == list(range(1, len(seen) + 1))
    assert [int(e["id"] or 0) for e in seen] == [e["data"]["id"] for e in seen]
    assert {e["data"]["run_id"] for e in seen} == set(watched.run_ids)
    for run_id in watched.run_ids:
        own = [e for e in seen if e["data"]["run_id"] == run_id]
        assert [e["data"]["seq"] for e in own] == list(range(1, len(own) + 1))
    retry = watched.live.settings.sse_retry_ms
    assert watched.hint == {"id": None, "event": None, "data": None, "retry": retry}
    assert [e["retry"] for e in seen if e["retry"] is not None] == []


async def test_all_events_filtered_live_by_a_repeated_type_param_gets_only_those_types(
    watched: Watched,
) -> None:
    # The three runs are concurrent: they may end in any order.
    outcome = {e["data"]["run_id"]: e["event"] for e in watched.outcomes}
    assert outcome == dict(
        zip(watched.run_ids, ["run.succeeded", "run.failed", "run.succeeded"], strict=True)
    )
    assert watched.outcomes == [e for e in watched.seen if is_terminal(e)]


@pytest.mark.parametrize(("params", "keep"), FILTERS, ids=["comma", "pipeline", "both"])
async def test_all_events_filtered_by_pipeline_and_type_replay_only_matching_events(
    watched: Watched, params: dict[str, str | list[str]], keep: Callable[[Event], bool]
) -> None:
    expected = [e for e in watched.seen if keep(e)]

    client = watched.live.client
    async with open_stream(client, "/events", params=params, last_event_id=0) as stream:
        replayed = [await anext(stream) for _ in expected]

    assert expected
    assert sans_retry(replayed) == expected
    assert replayed[0]["retry"] == watched.live.settings.sse_retry_ms


async def test_all_events_resumed_with_last_event_id_get_exactly_the_missed_events(
    watched: Watched,
) -> None:
    middle = len(watched.seen) // 2
    missed = watched.seen[middle:]

    client = watched.live.client
    async with open_stream(client, "/events", last_event_id=middle) as stream:
        resumed = [await anext(stream) for _ in missed]

    assert sans_retry(resumed) == missed
    assert resumed[0]["retry"] == watched.live.settings.sse_retry_ms


async def test_all_events_resumed_with_the_last_event_id_param_get_exactly_the_missed_events(
    watched: Watched,
) -> None:
    middle = len(watched.seen) // 2
    missed = watched.seen[middle:]

    client = watched.live.client
    params = {"last_event_id": str(middle)}
    async with open_stream(client, "/events", params=params) as stream:
        resumed = [await anext(stream) for _ in missed]

    assert sans_retry(resumed) == missed


# -- the demo pipelines, end to end ----------------------------------------------------------


async def test_flaky_demo_streams_its_failure_and_rolls_back_in_reverse(live: Live) -> None:
    run_id = await start_run(live, "flaky", {"step_seconds": 0})
    async with open_stream(live.client, f"/runs/{run_id}/events", last_event_id=0) as stream:
        events = await stream.read_to_end(WAIT)
    run = (await live.client.get(f"/runs/{run_id}")).json()

    described = [(e["event"], e["data"].get("step")) for e in events]
    expected = [
        ("run.queued", None),
        ("run.started", None),
        ("step.started", "prepare"),
        ("step.succeeded", "prepare"),
        ("step.started", "transform"),
        ("step.succeeded", "transform"),
        ("step.started", "publish"),
        ("step.failed", "publish"),
        ("run.rollback_started", None),
        ("step.rollback_started", "publish"),
        ("step.log", "publish"),
        ("step.rolled_back", "publish"),
        ("step.rollback_started", "transform"),
        ("step.log", "transform"),
        ("step.rolled_back", "transform"),
        ("step.rollback_started", "prepare"),
        ("step.log", "prepare"),
        ("step.rolled_back", "prepare"),
        ("run.failed", None),
    ]
    # publish reports 0.5 just before it raises: whether that progress is stored before the
    # failure supersedes it depends on thread timing, so the sequence may hold it or not.
    with_progress = [*expected[:7], ("step.progress", "publish"), *expected[7:]]
    assert described in (expected, with_progress)
    for event in events:
        if event["event"] == "step.progress":
            assert event["data"]["step_progress"] == 0.5
            assert event["data"]["progress"] == pytest.approx(0.8)
    assert ids(events) == list(range(1, len(events) + 1))
    rollback = next(e for e in events if e["event"] == "run.rollback_started")
    assert rollback["data"]["steps"] == ["publish", "transform", "prepare"]
    assert [e["data"]["event"] for e in events if e["event"] == "step.log"] == [
        "publish_partial_undone",
        "transform_undone",
        "prepare_undone",
    ]
    assert run["status"] == "failed"
    assert run["error"]["step"] == "publish"
    assert run["error"]["message"] == "publish target refused the connection"
    assert run["rollback_progress"] == 1.0
    assert [(s["name"], s["status"], s["rollback"]["status"]) for s in run["steps"]] == [
        ("prepare", "succeeded", "rolled_back"),
        ("transform", "succeeded", "rolled_back"),
        ("publish", "failed", "rolled_back"),
    ]


async def test_train_demo_streams_weighted_progress_20_80_100(live: Live) -> None:
    run_id = await start_run(live, "train", {"step_seconds": 0.05, "epochs": 2})
    async with open_stream(live.client, f"/runs/{run_id}/events", last_event_id=0) as stream:
        events = await stream.read_to_end(WAIT)

    moving = [e for e in events if e["event"] in ("step.progress", "step.succeeded")]
    done = [e["data"]["progress"] for e in moving if e["event"] == "step.succeeded"]
    assert done == [0.2, 0.8, 1.0]
    assert types(events)[-1] == "run.succeeded"
    progress = [e["data"]["progress"] for e in moving]
    assert progress == sorted(progress)
    floor = 0.0
    for event in moving:
        if event["event"] == "step.succeeded":
            floor = event["data"]["progress"]
        else:
            assert event["data"]["step"] == "train"
            assert 0.2 <= floor <= event["data"]["progress"] <= 0.8


# -- progress coalescing (stored events; no stream needed) -----------------------------------


async def test_a_flood_of_progress_stores_at_most_the_rate_limit_and_every_transition(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post(
        "/runs", json={"pipeline": "controlled", "params": {"progress_calls": PROGRESS_CALLS}}
    )
    run_id = response.json()["id"]
    assert await wait_until_finished(app, run_id) == "succeeded"

    services = services_of(app)
    stored = await services.store.run_events(run_id, 0, 100_000)
    run = await services.store.get_run(run_id)

    assert run.started_at is not None
    assert run.finished_at is not None
    seconds = (run.finished_at - run.started_at).total_seconds()
    progress = [e for e in stored if e.type == "step.progress"]
    # The step's end supersedes the progress still waiting to be written: a step this fast
    # may leave none at all. What matters is the bound, whatever the speed.
    assert len(progress) <= seconds * services.settings.progress_per_second + 1 < 50
    assert [e.type for e in stored if e.type != "step.progress"] == CONTROLLED_SUCCESS
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
