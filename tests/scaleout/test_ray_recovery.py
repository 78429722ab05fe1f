"""A Ray worker killed mid-step: its run is taken over and recovered per its policy."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from app.store.postgres import PostgresStore
from app.store.records import NewRun, NewStep
from tests.databases import execute
from tests.raycluster import RayHead

from .conftest import LEASE_SECONDS, run_epoch, wait_for_log, wait_for_run, wait_until_finished

pytestmark = pytest.mark.anyio

SWEEP_SECONDS = LEASE_SECONDS / 3  # how often the reconciler looks for orphans
SLACK_SECONDS = 2.0  # a busy machine's scheduling delays


async def test_a_kill_9_of_the_ray_worker_mid_step_is_recovered_per_the_pipeline_policy(
    client: httpx.AsyncClient, store_url: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "worker.pid"
    body = {"pipeline": "block_once", "params": {"pid_file": str(pid_file)}}
    run_id = (await client.post("/runs", json=body)).json()["id"]
    worker = int((await wait_for_log(client, run_id))["pid"])
    assert worker != os.getpid()

    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    await wait_for_run(client, run_id, lambda run: run_epoch(store_url, run_id) > 1)
    taken_over = time.monotonic() - killed
    run = await wait_until_finished(client, run_id)
    events = [row[0] for row in execute(
        store_url, f"SELECT type FROM events WHERE run_id = '{run_id}' ORDER BY seq"
    )]  # fmt: skip
    recovered = execute(
        store_url,
        "SELECT data->>'how', data->>'attempt' FROM events "
        f"WHERE run_id = '{run_id}' AND type = 'run.recovered'",
    )

    assert taken_over < LEASE_SECONDS + SWEEP_SECONDS + SLACK_SECONDS
    assert run["status"] == "succeeded", run
    assert recovered == [("resume", "1")]
    assert events == [
        "run.queued", "run.started", "step.started", "step.succeeded", "step.started",
        "step.log", "run.recovered", "step.started", "step.succeeded", "run.succeeded",
    ]  # fmt: skip
    again = run["result"]["steps"]["block_once"]
    assert again["first_pid"] == worker != again["pid"]


async def test_a_run_held_by_a_replica_that_died_is_taken_over_when_its_lease_runs_out(
    ray_cluster: RayHead, settings: Settings, store_url: str
) -> None:
    store = PostgresStore(store_url)
    await store.start()
    try:
        steps = (NewStep("sync_where", 0.5, False), NewStep("async_where", 0.5, False))
        created, _event = await store.create_run(NewRun("mixed", {}, {}, steps))
        [(held, _started)] = await store.claim_queued(1, "a-replica-that-died", LEASE_SECONDS)
    finally:
        await store.close()

    async with serving(settings) as client:
        run = await wait_until_finished(client, created.id)

    assert run["status"] == "succeeded", run
    recovered = execute(
        store_url,
        "SELECT data->>'how', data->>'attempt' FROM events "
        f"WHERE run_id = '{created.id}' AND type = 'run.recovered'",
    )
    # Stopped before its first step: nothing to redo or undo, and no attempt counted.
    assert recovered == [("resume", "0")]
    assert run_epoch(store_url, created.id) == held.epoch + 1


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own, started and stopped by the test, and a client of it."""
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as client,
    ):
        yield client


async def test_a_replica_that_stops_mid_step_releases_the_run_for_recovery(
    ray_cluster: RayHead, settings: Settings, store_url: str
) -> None:
    async with serving(settings) as client:
        run_id = (await client.post("/runs", json={"pipeline": "waiting"})).json()["id"]
        await wait_for_run(client, run_id, lambda run: run["steps"][1]["status"] == "running")
    # Stopped past its grace period: the step was cut short, and the run left to recover.
    [(status, owner)] = execute(store_url, f"SELECT status, owner FROM runs WHERE id = '{run_id}'")
    assert (status, owner) == ("running", None)

    async with serving(settings) as client:
        run = await wait_until_finished(client, run_id)

    assert run["status"] == "failed", run
    assert "recovered by rollback (attempt 1 of 3)" in run["error"]["message"]
    assert [s["rollback"]["status"] for s in run["steps"]] == ["rolled_back", "not_supported"]


async def test_a_run_waiting_in_rays_queue_keeps_its_lease_until_its_worker_begins(
    client: httpx.AsyncClient, store_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    body = {"pipeline": "hog", "params": {"gate": str(gate)}}
    first = (await client.post("/runs", json=body)).json()["id"]
    await wait_for_run(client, first, lambda run: run["steps"][0]["status"] == "running")
    second = (await client.post("/runs", json=body)).json()["id"]
    claimed = await wait_for_run(client, second, lambda run: run["status"] == "running")
    since = datetime.fromisoformat(claimed["started_at"])

    # Renewed past two leases while its task waits for the CPUs the first run holds.
    waiting = await wait_for_run(
        client, second, lambda _run: lease_of(store_url, second) > since + 2 * LEASE
    )
    gate.touch()
    runs = [await wait_until_finished(client, run_id) for run_id in (first, second)]

    assert [s["status"] for s in waiting["steps"]] == ["pending"]
    assert [run["status"] for run in runs] == ["succeeded", "succeeded"]
    assert [run_epoch(store_url, run_id) for run_id in (first, second)] == [1, 1]
    recovered = execute(
        store_url, f"SELECT count(*) FROM events WHERE type = 'run.recovered' AND run_id IN "
        f"('{first}', '{second}')",
    )  # fmt: skip
    assert recovered == [(0,)]


LEASE = timedelta(seconds=LEASE_SECONDS)


def lease_of(url: str, run_id: str) -> datetime:
    """When the run's lease runs out, unless renewed."""
    [(until,)] = execute(url, f"SELECT lease_expires_at FROM runs WHERE id = '{run_id}'")
    assert isinstance(until, datetime)
    return until
