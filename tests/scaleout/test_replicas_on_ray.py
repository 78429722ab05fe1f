"""Two API replicas (two ``stepline serve`` processes) on one PostgreSQL database, executing
their runs on the session's Ray: what a client streams from either is the run's event log.

Replica A claims the runs created through it and has Ray execute them; replica B looks for
queued runs so rarely that it takes none. So each run is claimed by A (``run.started``
names its owner), executed by a Ray worker process (each step says which), and whatever B
streams of it came to B through the database: the worker's commits, announced by NOTIFY,
read from the log.

Every wait has a timeout and none is a sleep: a run waits at a file gate until the test
creates the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.live import Event, open_stream
from tests.app.processes import ROOT
from tests.app.replicas import (
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
from tests.databases import database_url, execute
from tests.raycluster import RayHead

from .conftest import WAIT

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def replicas(ray_cluster: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    directory = tmp_path_factory.mktemp("replicas-on-ray")
    with database_url("postgres", directory) as url:
        env = {
            "STEPLINE_PIPELINES": "tests.scaleout.pipelines",
            "STEPLINE_DEMO_PIPELINES": "false",
            "STEPLINE_WORKERS": "2",
            "STEPLINE_EXECUTOR": "ray",
            "STEPLINE_RAY_ADDRESS": ray_cluster.address,
        }
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


def log_documents(replicas: Replicas, run_id: str) -> list[dict[str, Any]]:
    """The run's events as the events table holds them, each as one document (the
    ``data`` column with the row's other columns), less the time, in order."""
    rows = execute(
        replicas.database,
        "SELECT id, run_id, seq, type, pipeline, data::text FROM events "
        f"WHERE run_id = '{run_id}' ORDER BY seq",
    )
    return [
        {"id": int(id_), "run_id": run, "seq": int(seq), "type": type_, "pipeline": pipeline,
         **json.loads(data)}
        for id_, run, seq, type_, pipeline, data in rows
    ]  # fmt: skip


def documents(events: list[Event]) -> list[dict[str, Any]]:
    """What a stream sent of each event, less the time (formatted by the server)."""
    return [{k: v for k, v in e["data"].items() if k != "time"} for e in events]


def ran_on_a_ray_worker(run: dict[str, Any], replicas: Replicas) -> bool:
    """Whether every step ran in one process, neither replica nor this one, which imported
    this checkout's ``app``."""
    where = list(run["result"]["steps"].values())
    pids = {w["pid"] for w in where}
    servers = {replicas.pid_a, replicas.pid_b, os.getpid()}
    apps = {Path(w["app"]).parent for w in where}
    return (
        len(where) == 3 and len(pids) == 1 and pids.isdisjoint(servers) and apps == {ROOT / "app"}
    )


async def test_a_run_created_on_one_replica_and_executed_on_ray_streams_from_the_other(
    replicas: Replicas, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    async with (
        held_run(replicas, a, "gated_where") as (run_id, gate),
        open_stream(b, f"/runs/{run_id}/events") as on_b,
    ):
        snapshot = await anext(on_b)
        gate.touch()
        live = await on_b.read_to_end(WAIT)
    on_a, replayed_on_b = await replay(a, run_id), await replay(b, run_id)
    runs = [(await client.get(f"/runs/{run_id}")).json() for client in (a, b)]
    log = log_documents(replicas, run_id)

    assert snapshot["event"] == "run.snapshot"
    assert snapshot["data"]["status"] == "running"
    seen = int(str(snapshot["id"]))
    assert documents(live) == log[seen:]  # exactly the rest of the log, nothing else
    assert live[-1]["event"] == "run.succeeded"
    assert content(replayed_on_b) == content(on_a)
    assert documents(on_a) == log
    assert as_stored(on_a) == stored(replicas, run_id)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert executed_by(on_a, replicas.pid_a)
    assert runs[0] == runs[1]
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["last_event_id"] == len(log)
    assert ran_on_a_ray_worker(runs[0], replicas)


async def test_last_event_id_resumes_on_the_other_replica_with_exactly_the_missed_events(
    replicas: Replicas, a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    async with held_run(replicas, a, "gated_where") as (run_id, gate):
        async with open_stream(b, f"/runs/{run_id}/events", last_event_id=0) as first:
            before = await first.read_until(step_started("b"), WAIT)
        position = int(str(before[-1]["id"]))
        async with open_stream(b, f"/runs/{run_id}/events", last_event_id=position) as again:
            gate.touch()
            after = await again.read_to_end(WAIT)
    run = (await a.get(f"/runs/{run_id}")).json()

    assert int(str(after[0]["id"])) == position + 1
    assert documents(before + after) == log_documents(replicas, run_id)
    assert after[-1]["event"] == "run.succeeded"
    assert executed_by(before, replicas.pid_a)
    assert ran_on_a_ray_worker(run, replicas)
