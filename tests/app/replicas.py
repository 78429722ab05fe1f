"""Two API replicas on one PostgreSQL database, as the tests of several server processes
see them: a run held at a file gate, and the run's events as streamed, replayed and stored.

Every wait has a timeout and none is a sleep: a run waits at a file gate until the test
creates the file.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.databases import execute

from .conftest import WAIT
from .live import Event, open_stream
from .processes import free_port, stepline_serve

__all__ = [
    "Replicas", "as_stored", "content", "executed_by", "held_run", "replay", "step_started",
    "stored", "two_replicas",
]  # fmt: skip


@dataclass
class Replicas:
    """Two servers on one database, and where the tests' gate files go."""

    database: str
    a: str
    b: str
    pid_a: int
    pid_b: int
    gates: Path


@contextmanager
def two_replicas(database: str, directory: Path, env: dict[str, str]) -> Iterator[Replicas]:
    """Two ``stepline serve`` processes on ``database``, with ``env``. A executes the runs
    created through it; B looks for queued runs so rarely (once an hour) that it takes none,
    so whatever B streams came to it through the database."""
    env = {**env, "STEPLINE_DATABASE_URL": database}
    port_a, port_b = free_port(), free_port()
    with (
        stepline_serve(directory / "a", port_a, {**env, "STEPLINE_POLL_SECONDS": "0.5"}) as a,
        stepline_serve(directory / "b", port_b, {**env, "STEPLINE_POLL_SECONDS": "3600"}) as b,
    ):
        yield Replicas(database, f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}",
                       a.pid, b.pid, directory)  # fmt: skip


@asynccontextmanager
async def held_run(
    replicas: Replicas, a: httpx.AsyncClient, pipeline: str = "file_gate"
) -> AsyncIterator[tuple[str, Path]]:
    """A run of ``pipeline`` (``file_gate``, or one with its params and steps) created
    through A and held in its step b; yields its id and its gate, and opens the gate when
    the block ends, whatever happened."""
    gate = replicas.gates / f"gate-{uuid.uuid4().hex}"
    response = await a.post("/runs", json={"pipeline": pipeline,
                                           "params": {"gate": str(gate), "logs": 2}})  # fmt: skip
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    try:
        async with open_stream(a, f"/runs/{run_id}/events", last_event_id=0) as stream:
            await stream.read_until(step_started("b"), WAIT)
        yield run_id, gate
    finally:
        gate.touch()


def step_started(step: str) -> Callable[[Event], bool]:
    def matches(event: Event) -> bool:
        return event["event"] == "step.started" and event["data"]["step"] == step

    return matches


async def replay(client: httpx.AsyncClient, run_id: str) -> list[Event]:
    """Every event of an ended run, from the start, as ``client``'s replica replays them."""
    async with open_stream(client, f"/runs/{run_id}/events", last_event_id=0) as stream:
        return await stream.read_to_end(WAIT)


def stored(replicas: Replicas, run_id: str) -> list[tuple[int, int, str]]:
    """``(global id, seq, type)`` of each of the run's events in the events table."""
    return [
        (int(id_), int(seq), str(type_))
        for id_, seq, type_ in execute(
            replicas.database,
            f"SELECT id, seq, type FROM events WHERE run_id = '{run_id}' ORDER BY seq",
        )
    ]


def as_stored(events: list[Event]) -> list[tuple[int, int, str]]:
    """What a run stream sent, as ``stored`` shows it (``id:`` is the run's seq there)."""
    return [(e["data"]["id"], int(str(e["id"])), str(e["event"])) for e in events]


def content(events: list[Event]) -> list[tuple[str | None, str | None, Any]]:
    """The events as a comparison sees them: which one carried the retry hint is not content."""
    return [(e["id"], e["event"], e["data"]) for e in events]


def executed_by(events: list[Event], pid: int) -> bool:
    """Whether the server process ``pid`` claimed the run (``run.started`` names it)."""
    [started] = [e for e in events if e["event"] == "run.started"]
    return f":{pid}:" in started["data"]["owner"]
