"""Two replicas, two server processes, one PostgreSQL database: live events cross replicas.

Replica A executes the runs: the runs created through it wake its workers at once. Replica
B's workers look for queued runs so rarely that they take none, so whatever B streams of
those runs came to it through the database (NOTIFY, then a read of the log). Each run says
which process executed it (``run.started`` names its owner), and the tests check that it
was A.

Every wait has a timeout and none is a sleep: a run waits at a file gate (``file_gate``)
until the test creates the file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.store.pg_listener import APPLICATION_NAME
from tests.databases import database_url, execute

from .conftest import WAIT
from .live import Event, open_stream
from .replicas import (
    Replicas,
    as_stored,
    content,
    executed_by,
    held_run,
    replay,
    step_started,
    stored,
    two_replicas,
)

pytestmark = pytest.mark.anyio

PIPELINES = "tests.app.pipelines,tests.app.pipelines:FileGateAction"
TERMINAL_EVENTS = ("run.succeeded", "run.failed", "run.cancelled")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    directory = tmp_path_factory.mktemp("replicas")
    with database_url("postgres", directory) as url:
        env = {"STEPLINE_PIPELINES": PIPELINES, "STEPLINE_WORKERS": "2"}
        with two_replicas(url, directory, env) as replicas:
            yield replicas


@pytest.fixture
async def a(replicas: Replicas) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=replicas.a, timeout=WAIT) as client:
        yield client


@pytest.fixture
async def b(replicas: Replicas) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=replicas.b, timeout=WAIT) as client:
        yield client


async def test_a_run_created_on_one_replica_streams_live_from_the_other(
    replicas: Replicas, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    async with (
        held_run(replicas, a) as (run_id, gate),
        open_stream(b, f"/runs/{run_id}/events") as on_b,
    ):
        snapshot = await anext(on_b)
        gate.touch()
        live = await on_b.read_to_end(WAIT)
    on_a, replayed_on_b = await replay(a, run_id), await replay(b, run_id)
    runs = [(await client.get(f"/runs/{run_id}")).json() for client in (a, b)]

    assert snapshot["event"] == "run.snapshot"
    assert snapshot["data"]["status"] == "running"
    seen = int(str(snapshot["id"]))
    assert content(live) == content(on_a[seen:])
    assert live[-1]["event"] == "run.succeeded"
    assert content(replayed_on_b) == content(on_a)
    assert as_stored(on_a) == stored(replicas, run_id)
    assert [seq for _, seq, _ in as_stored(on_a)] == list(range(1, len(on_a) + 1))
    assert executed_by(on_a, replicas.pid_a)
    assert runs[0] == runs[1]
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["last_event_id"] == len(on_a)


async def test_the_global_stream_of_one_replica_follows_runs_executed_on_the_other(
    replicas: Replicas, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    async with open_stream(b, "/events") as everything:
        assert await everything.next_comment(WAIT) == "connected"
        run_ids = []
        for _ in range(2):
            response = await a.post("/runs", json={"pipeline": "controlled", "params": {}})
            assert response.status_code == 202, response.text
            run_ids.append(response.json()["id"])
        ended: set[str] = set()

        def both_ended(event: Event) -> bool:
            if event["event"] in TERMINAL_EVENTS:
                ended.add(event["data"]["run_id"])
            return ended == set(run_ids)

        # Less the block that only carried the retry hint, with the "connected" comment.
        streamed = [e for e in await everything.read_until(both_ended, WAIT) if e["event"]]

    ids = [int(str(e["id"])) for e in streamed]
    assert ids == sorted(set(ids))
    for run_id in run_ids:
        mine = [e for e in streamed if e["data"]["run_id"] == run_id]
        assert [(int(str(e["id"])), e["data"]["seq"], e["event"]) for e in mine] == stored(
            replicas, run_id
        )
        assert executed_by(mine, replicas.pid_a)
    between = execute(
        replicas.database, f"SELECT id FROM events WHERE id BETWEEN {ids[0]} AND {ids[-1]}"
    )
    assert ids == sorted(int(id_) for (id_,) in between)  # no event of any run left out


async def test_last_event_id_resumes_on_the_other_replica_with_exactly_the_missed_events(
    replicas: Replicas, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    async with held_run(replicas, a) as (run_id, gate):
        async with open_stream(b, f"/runs/{run_id}/events", last_event_id=0) as first:
            before = await first.read_until(step_started("b"), WAIT)
        position = int(str(before[-1]["id"]))
        async with open_stream(b, f"/runs/{run_id}/events", last_event_id=position) as again:
            gate.touch()
            after = await again.read_to_end(WAIT)
    on_a = await replay(a, run_id)

    assert int(str(after[0]["id"])) == position + 1
    assert content(before + after) == content(on_a)
    assert as_stored(before + after) == stored(replicas, run_id)
    assert after[-1]["event"] == "run.succeeded"
    assert executed_by(on_a, replicas.pid_a)


def listener_of(replicas: Replicas, pid: int) -> list[int]:
    """The database backends of the events listener of the server process ``pid``."""
    return [
        int(backend)
        for (backend,) in execute(
            replicas.database,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            f"AND application_name LIKE '{APPLICATION_NAME} {pid}@%'",
        )
    ]


async def test_a_stream_loses_nothing_when_its_replicas_listener_is_cut_off(
    replicas: Replicas, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    async with (
        held_run(replicas, a) as (run_id, gate),
        open_stream(b, f"/runs/{run_id}/events", last_event_id=0) as on_b,
    ):
        before = await on_b.read_until(step_started("b"), WAIT)
        [cut] = listener_of(replicas, replicas.pid_b)
        # Returns once the backend is gone: the rest of the run commits unheard by B, which
        # can only get it by reconnecting and reading the log.
        terminated = execute(replicas.database, f"SELECT pg_terminate_backend({cut}, 5000)")
        assert terminated == [(True,)]
        gate.touch()
        after = await on_b.read_to_end(WAIT)
    on_a = await replay(a, run_id)

    assert content(before + after) == content(on_a)
    assert as_stored(before + after) == stored(replicas, run_id)
    assert after[-1]["event"] == "run.succeeded"
    assert executed_by(on_a, replicas.pid_a)
    [again] = listener_of(replicas, replicas.pid_b)
    assert again != cut
