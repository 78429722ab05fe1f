"""500 runs across two API replicas (two ``stepline serve`` processes, both claiming) and the
session's Ray: each step execution is recorded in a ledger by the step itself, and the
ledger, the event log and the runs table are checked once every run has ended.

- No step executes concurrently with itself: in the ledger (one file that every Ray worker
  appends to; appends land whole and in order), each step of each run has exactly one
  start followed by its end, from one process. A run claimed twice, or executed by two
  tasks, would show two starts.
- A capped pipeline's runs (``max_concurrency=2``), claimed by either replica, never have
  more than two executing at once, by the ledger's order; created together, they reach
  two (uncapped, four of them execute at once on the tests' four Ray CPUs).
- Every run is terminal (succeeded), and every run's event log is gapless (seq 1..n, n its
  last event) and holds exactly the events of a run that went straight through.

The test waits for the runs' ends on a replica's ``/events`` stream, not by polling.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.app.live import Event, open_stream
from tests.app.processes import free_port, stepline_serve
from tests.databases import database_url, execute
from tests.raycluster import RayHead

from .conftest import WAIT

pytestmark = pytest.mark.anyio

RUNS = 500
CAPPED = 50  # of them, of the pipeline that runs two at a time
CAP = 2
HOLD = 0.005  # seconds each step of a run takes
# The capped runs' steps take longer: uncapped, more than two of them would execute at once.
CAPPED_HOLD = 0.03
CREATING = 16  # requests to create runs in flight at once
ENDED_WITHIN = 150.0  # seconds for all the runs to end
TERMINAL = ["run.succeeded", "run.failed", "run.cancelled"]
STRAIGHT_THROUGH = [
    "run.queued", "run.started", "step.started", "step.succeeded", "step.started",
    "step.succeeded", "step.started", "step.succeeded", "run.succeeded",
]  # fmt: skip
STEPS = ("s1", "s2", "s3")


@dataclass
class Cluster:
    """Two servers on one database: their URLs and process ids."""

    database: str
    urls: tuple[str, str]
    pids: tuple[int, int]


@contextmanager
def two_replicas(ray: RayHead, directory: Path) -> Iterator[Cluster]:
    """Two servers on one new database, both claiming runs and executing them on ``ray``."""
    with database_url("postgres", directory) as url, ExitStack() as stack:
        env = {
            "STEPLINE_DATABASE_URL": url,
            "STEPLINE_PIPELINES": "tests.scaleout.pipelines",
            "STEPLINE_DEMO_PIPELINES": "false",
            "STEPLINE_EXECUTOR": "ray",
            "STEPLINE_RAY_ADDRESS": ray.address,
            "STEPLINE_WORKERS": "4",
            "STEPLINE_POLL_SECONDS": "0.1",
            "STEPLINE_RUNS_PER_MINUTE": "0",
        }
        ports = free_port(), free_port()
        servers = [stack.enter_context(stepline_serve(directory / f"r{p}", p, env)) for p in ports]
        yield Cluster(
            url,
            (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"),
            (servers[0].pid, servers[1].pid),
        )


async def create_runs(clients: list[httpx.AsyncClient], ledger: Path) -> list[str]:
    """``RUNS`` runs, the last ``CAPPED`` of the capped pipeline (created together, once
    Ray's workers are warm, so that many wait at once), created alternately through each
    replica, ``CREATING`` requests at a time."""
    slots = asyncio.Semaphore(CREATING)

    async def create(n: int) -> str:
        capped = n >= RUNS - CAPPED
        body = {
            "pipeline": "tally_capped" if capped else "tally",
            "params": {"ledger": str(ledger), "hold": CAPPED_HOLD if capped else HOLD},
        }
        async with slots:
            response = await clients[n % 2].post("/runs", json=body)
        assert response.status_code == 202, response.text
        run_id: str = response.json()["id"]
        return run_id

    return list(await asyncio.gather(*(create(n) for n in range(RUNS))))


def read_ledger(ledger: Path) -> list[tuple[str, str, str, int]]:
    """``(start|end, run id, step, pid)`` of each record, in the order they were written."""
    records = []
    for line in ledger.read_text().splitlines():
        what, run_id, step, pid, _ns = line.split(" ")
        records.append((what, run_id, step, int(pid)))
    return records


def most_at_once(records: list[tuple[str, str, str, int]], runs: set[str]) -> int:
    """The most of ``runs`` executing at once: from their first step's start to their last
    step's end, in the ledger's order."""
    executing, most = 0, 0
    for what, run_id, step, _pid in records:
        if run_id not in runs:
            continue
        if (what, step) == ("start", STEPS[0]):
            executing += 1
            most = max(most, executing)
        elif (what, step) == ("end", STEPS[-1]):
            executing -= 1
    return most


@pytest.mark.timeout(240)  # 500 runs on a machine of two cores, and two servers to start
async def test_500_runs_on_two_replicas_and_ray_each_step_once_every_run_ended_gapless(
    ray_cluster: RayHead, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    with two_replicas(ray_cluster, tmp_path) as cluster:
        async with (
            httpx.AsyncClient(base_url=cluster.urls[0], timeout=WAIT) as a,
            httpx.AsyncClient(base_url=cluster.urls[1], timeout=WAIT) as b,
            open_stream(a, "/events", params={"type": TERMINAL}) as endings,
        ):
            assert await endings.next_comment(WAIT) == "connected"
            run_ids = await create_runs([a, b], ledger)
            ended: set[str] = set()

            def all_ended(event: Event) -> bool:
                if event["event"] in TERMINAL:
                    ended.add(event["data"]["run_id"])
                return len(ended) == RUNS

            await endings.read_until(all_ended, ENDED_WITHIN)

        statuses = execute(cluster.database, "SELECT status, count(*) FROM runs GROUP BY status")
        logs = execute(
            cluster.database,
            "SELECT r.id, r.pipeline, r.last_seq, array_agg(e.seq ORDER BY e.seq), "
            "array_agg(e.type ORDER BY e.seq), "
            "min(e.data->>'owner') FILTER (WHERE e.type = 'run.started') "
            "FROM runs r JOIN events e ON e.run_id = r.id GROUP BY r.id",
        )
    records = read_ledger(ledger)

    assert ended == set(run_ids)
    assert statuses == [("succeeded", RUNS)]
    assert len(logs) == RUNS
    for run_id, _pipeline, last_seq, seqs, types, _owner in logs:
        assert list(seqs) == list(range(1, last_seq + 1)), run_id
        assert list(types) == STRAIGHT_THROUGH, run_id
    claimed_by = {int(owner.split(":")[1]) for *_, owner in logs}
    assert claimed_by == set(cluster.pids)  # both replicas claimed runs

    executions: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for what, run_id, step, pid in records:
        executions[run_id, step].append((what, pid))
    assert set(executions) == {(run_id, step) for run_id in run_ids for step in STEPS}
    for key, seen in executions.items():
        [(start, pid), (end, same_pid)] = seen  # once: one start, then its end, no other
        assert (start, end, pid) == ("start", "end", same_pid), key
    workers = {pid for _what, _run, _step, pid in records}
    assert workers.isdisjoint({*cluster.pids, os.getpid()})  # Ray worker processes

    capped = {run_id for run_id, pipeline, *_ in logs if pipeline == "tally_capped"}
    assert len(capped) == CAPPED
    assert most_at_once(records, capped) == CAP  # held at the cap, and up to it
    assert most_at_once(records, set(run_ids) - capped) > CAP  # the others are not held back
