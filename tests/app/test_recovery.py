"""A run left unfinished by a process that stopped is finished by the next one."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from app.store.sqlite import sqlite_path

from .conftest import WAIT, services_of, wait_until_finished
from .pipelines import GATES

pytestmark = pytest.mark.anyio

LEASE_SECONDS = 0.6  # short, so that a stopped owner's lease runs out within the test


@pytest.fixture
def short_leases(settings: Settings) -> Settings:
    return settings.model_copy(update={"lease_seconds": LEASE_SECONDS})


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as client,
    ):
        yield application, client


async def leave_held(settings: Settings, pipeline: str) -> str:
    """Start a run, hold it in step b, and stop the process under it."""
    gate = f"recovery-{uuid.uuid4().hex}"
    async with serving(settings) as (_app, client):
        body = {"pipeline": pipeline, "params": {"gate_at": "b", "gate": gate}}
        run_id: str = (await client.post("/runs", json=body)).json()["id"]
        assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)
    GATES.open(gate)
    return run_id


async def test_a_run_interrupted_mid_step_is_rolled_back_by_the_next_process(
    short_leases: Settings,
) -> None:
    run_id = await leave_held(short_leases, "controlled")

    async with serving(short_leases) as (app, client):
        assert await wait_until_finished(app, run_id) == "failed"
        run = (await client.get(f"/runs/{run_id}")).json()
        stored = await services_of(app).store.run_events(run_id, 0, 1000)

    steps = {s["name"]: s for s in run["steps"]}
    assert [steps[n]["status"] for n in "abc"] == ["succeeded", "failed", "pending"]
    assert [steps[n]["rollback"]["status"] for n in "abc"] == [
        "rolled_back", "rolled_back", "not_needed",
    ]  # fmt: skip
    assert "recovered by rollback (attempt 1 of 3)" in run["error"]["message"]
    recovered = [e for e in stored if e.type == "run.recovered"]
    assert [(e.data["attempt"], e.data["how"]) for e in recovered] == [(1, "rollback")]
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    undone = [e.data["step"] for e in stored if e.type == "step.rolled_back"]
    assert undone == ["b", "a"]


async def test_a_resumable_run_runs_the_interrupted_step_again_and_finishes(
    short_leases: Settings,
) -> None:
    run_id = await leave_held(short_leases, "resumable")

    async with serving(short_leases) as (app, _client):
        assert await wait_until_finished(app, run_id) == "succeeded"
        stored = await services_of(app).store.run_events(run_id, 0, 1000)
        run = await services_of(app).store.get_run(run_id)

    started = [e.data["step"] for e in stored if e.type == "step.started"]
    assert started == ["a", "b", "b", "c"]
    assert [e.data["how"] for e in stored if e.type == "run.recovered"] == ["resume"]
    assert run.progress == 1.0
    assert {s.rollback_status for s in run.steps} == {"not_needed"}


async def test_a_run_that_keeps_stopping_its_process_ends_failed_after_the_cap(
    short_leases: Settings,
) -> None:
    run_id = await leave_held(short_leases, "controlled")
    path = sqlite_path(short_leases.database_url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE runs SET recovery_attempts = 3 WHERE id = ?", (run_id,))

    async with serving(short_leases) as (app, client):
        assert await wait_until_finished(app, run_id) == "failed"
        run = (await client.get(f"/runs/{run_id}")).json()
        other = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]
        assert await wait_until_finished(app, other) == "succeeded"

    assert run["error"]["type"] == "RecoveryExhausted"
    assert "gave up after 3 recovery attempts" in run["summary"]
    assert [s["status"] for s in run["steps"]] == ["succeeded", "failed", "pending"]


async def test_a_run_whose_step_had_failed_is_rolled_back_even_if_resumable(
    short_leases: Settings,
) -> None:
    run_id = await leave_held(short_leases, "resumable")
    path = sqlite_path(short_leases.database_url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        # As if the process died between storing step.failed and starting the rollback.
        conn.execute(
            'UPDATE step_runs SET status = ? WHERE run_id = ? AND "index" = 1',
            ("failed", run_id),
        )

    async with serving(short_leases) as (app, client):
        assert await wait_until_finished(app, run_id) == "failed"
        run = (await client.get(f"/runs/{run_id}")).json()
        stored = await services_of(app).store.run_events(run_id, 0, 1000)

    assert [e.data["how"] for e in stored if e.type == "run.recovered"] == ["rollback"]
    assert [s["rollback"]["status"] for s in run["steps"]] == [
        "rolled_back", "rolled_back", "not_needed",
    ]  # fmt: skip
    assert [e.data["step"] for e in stored if e.type == "step.started"] == ["a", "b"]
