"""Runs executed on Ray: state, events and cancel all go through PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings, SettingsError
from tests.app.conftest import services_of
from tests.app.live import open_stream

from .conftest import WAIT, wait_for_run, wait_until_finished

pytestmark = pytest.mark.anyio


async def replayed_events(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """Every event of an ended run, replayed from the log by ``GET /runs/{id}/events``."""
    async with open_stream(client, f"/runs/{run_id}/events", last_event_id=0) as stream:
        events = await stream.read_to_end(WAIT)
    return [{"seq": int(e["id"] or 0), "type": e["event"], **e["data"]} for e in events]


async def test_a_run_with_sync_and_async_steps_succeeds_in_a_ray_worker_process(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/runs", json={"pipeline": "mixed"})
    assert response.status_code == 202
    run_id = response.json()["id"]

    run = await wait_until_finished(client, run_id)
    events = await replayed_events(client, run_id)

    assert run["status"] == "succeeded", run
    assert [s["status"] for s in run["steps"]] == ["succeeded", "succeeded"]
    where = run["result"]["steps"]
    assert where["sync_where"]["pid"] == where["async_where"]["pid"] != os.getpid()
    # The worker imports this checkout, not another copy of the service.
    assert Path(where["sync_where"]["app"]).parent == Path(__file__).parents[2] / "app"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events] == [
        "run.queued", "run.started", "step.started", "step.succeeded", "step.started",
        "step.succeeded", "run.succeeded",
    ]  # fmt: skip


async def test_the_apps_bus_delivers_every_event_a_ray_worker_writes_in_the_logs_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services = services_of(app)
    async with services.bus.subscribe() as everything:  # every run's events, live
        run_id = (await client.post("/runs", json={"pipeline": "mixed"})).json()["id"]
        delivered = []
        async with asyncio.timeout(WAIT):
            while not delivered or delivered[-1].type != "run.succeeded":
                event = await everything.get()
                assert event is not None
                delivered.append(event)
    log = await services.store.run_events(run_id, 0, 1000)

    assert delivered == log  # from run.queued (written here) to run.succeeded (on Ray)
    assert [e.type for e in delivered][2:] == [
        "step.started", "step.succeeded", "step.started", "step.succeeded", "run.succeeded",
    ]  # fmt: skip


async def test_cancel_reaches_the_ray_worker_and_rolls_back_completed_steps(
    client: httpx.AsyncClient,
) -> None:
    run_id = (await client.post("/runs", json={"pipeline": "waiting"})).json()["id"]
    await wait_for_run(client, run_id, lambda run: run["steps"][1]["status"] == "running")

    response = await client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text
    run = await wait_until_finished(client, run_id)
    events = await replayed_events(client, run_id)

    assert run["status"] == "cancelled", run
    assert [s["status"] for s in run["steps"]] == ["succeeded", "cancelled"]
    assert run["steps"][0]["rollback"]["status"] == "rolled_back"
    types = [e["type"] for e in events]
    assert types[-1] == "run.cancelled"
    assert "run.cancelling" in types
    assert "step.rolled_back" in types
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_a_pipeline_shows_the_resources_it_declares(client: httpx.AsyncClient) -> None:
    hungry = (await client.get("/pipelines/hungry")).json()
    mixed = (await client.get("/pipelines/mixed")).json()
    noop = (await client.get("/pipelines/NOOP_10")).json()

    assert hungry["resources"] == {
        "num_cpus": 4.0,
        "num_gpus": 0.5,
        "memory": 2 * 1024**3,
        "resources": {"tpu": 1.0},
    }
    assert mixed["resources"] == {
        "num_cpus": 0.5, "num_gpus": None, "memory": None, "resources": {},
    }  # fmt: skip
    assert noop["resources"] == {
        "num_cpus": None, "num_gpus": None, "memory": None, "resources": {},
    }  # fmt: skip


def test_the_ray_executor_refuses_a_sqlite_store(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'stepline.db'}",
        executor="ray",
        demo_pipelines=False,
        entry_points=False,
    )

    with pytest.raises(SettingsError, match="needs a PostgreSQL store"):
        create_app(settings)
