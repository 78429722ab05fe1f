"""POST /runs/{id}/cancel and GET /runs/{id}/logs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.configurations import CONFIGURATIONS

from .conftest import WAIT, services_of, wait_until_finished
from .pipelines import GATES

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


@pytest.fixture(params=CONFIGURATIONS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here on every store."""
    return str(request.param)


async def start_held(client: httpx.AsyncClient, at: str, **params: object) -> tuple[str, str]:
    """Start a ``controlled`` run that waits at step ``at``; return its id and gate."""
    gate = f"gate-{uuid.uuid4()}"
    body = {"pipeline": "controlled", "params": {"gate_at": at, "gate": gate, **params}}
    run_id = (await client.post("/runs", json=body)).json()["id"]
    assert await asyncio.to_thread(GATES.reached(gate).wait, 20)
    return run_id, gate


async def test_cancelling_a_running_run_rolls_back_its_completed_steps(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    run_id, _gate = await start_held(client, "b")

    response = await client.post(f"/runs/{run_id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelling"
    assert response.json()["cancel_requested"] is True
    assert await wait_until_finished(app, run_id) == "cancelled"
    run = (await client.get(f"/runs/{run_id}")).json()
    steps = {s["name"]: s for s in run["steps"]}
    assert [steps[n]["status"] for n in "abc"] == ["succeeded", "cancelled", "pending"]
    assert [steps[n]["rollback"]["status"] for n in "abc"] == [
        "rolled_back",
        "rolled_back",
        "not_needed",
    ]
    assert run["error"]["step"] == "b"
    stored = await services_of(app).store.run_events(run_id, 0, 1000)
    assert [(e.type, e.data.get("step")) for e in stored] == [
        ("run.queued", None), ("run.started", None),
        ("step.started", "a"), ("step.succeeded", "a"),
        ("step.started", "b"), ("run.cancelling", None), ("step.cancelled", "b"),
        ("run.rollback_started", None),
        ("step.rollback_started", "b"), ("step.rolled_back", "b"),
        ("step.rollback_started", "a"), ("step.rolled_back", "a"),
        ("run.cancelled", None),
    ]  # fmt: skip


async def test_cancel_without_rollback_leaves_completed_steps(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    run_id, _gate = await start_held(client, "b")

    response = await client.post(f"/runs/{run_id}/cancel", json={"rollback": False})

    assert response.status_code == 202
    assert await wait_until_finished(app, run_id) == "cancelled"
    steps = (await client.get(f"/runs/{run_id}")).json()["steps"]
    assert {s["rollback"]["status"] for s in steps} == {"not_needed"}
    assert steps[0]["status"] == "succeeded"


async def test_a_queued_run_is_cancelled_at_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    workers = services_of(app).runs.workers
    held = [await start_held(client, "a") for _ in range(workers.concurrency)]
    queued = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]

    response = await client.post(f"/runs/{queued}/cancel")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    assert {s["status"] for s in body["steps"]} == {"pending"}
    for _run_id, gate in held:
        GATES.open(gate)
    for run_id, _gate in held:
        assert await wait_until_finished(app, run_id) == "succeeded"
    assert (await client.get(f"/runs/{queued}")).json()["status"] == "cancelled"


async def test_a_cancel_between_the_claim_and_the_execution_is_honoured(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services_of(app).store
    claim_queued = store.claim_queued
    claimed, answer = asyncio.Event(), asyncio.Event()

    async def held_claim(*args: Any, **kwargs: Any) -> Any:
        """The first claim that takes a run waits to hand it over."""
        taken = await claim_queued(*args, **kwargs)
        if taken and not claimed.is_set():
            claimed.set()
            await answer.wait()
        return taken

    monkeypatch.setattr(store, "claim_queued", held_claim)
    run_id = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]
    async with asyncio.timeout(WAIT):
        await claimed.wait()  # claimed in the database, not yet executing anywhere
    response = await client.post(f"/runs/{run_id}/cancel")
    answer.set()

    assert response.status_code == 202
    assert response.json()["status"] == "cancelling"
    assert await wait_until_finished(app, run_id) == "cancelled"
    run = (await client.get(f"/runs/{run_id}")).json()
    assert {s["status"] for s in run["steps"]} == {"pending"}  # no step began


async def test_cancelling_a_finished_run_is_a_409(client: httpx.AsyncClient, app: FastAPI) -> None:
    run_id = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]
    await wait_until_finished(app, run_id)

    response = await client.post(f"/runs/{run_id}/cancel")

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("invalid-transition")
    assert response.json()["run_status"] == "succeeded"


async def test_cancelling_an_unknown_run_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/runs/01NOSUCHRUN0000000000000000/cancel")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_a_cancel_body_with_unknown_fields_is_a_422(client: httpx.AsyncClient) -> None:
    run_id = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]

    response = await client.post(f"/runs/{run_id}/cancel", json={"rollback": True, "force": 1})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_one_runs_failure_does_not_affect_another(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    failing = (
        await client.post("/runs", json={"pipeline": "controlled", "params": {"fail_at": "a"}})
    ).json()["id"]
    fine = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]

    assert await wait_until_finished(app, failing) == "failed"
    assert await wait_until_finished(app, fine) == "succeeded"


async def test_logs_are_listed_per_step_and_paginated(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = {"pipeline": "controlled", "params": {"logs": 3}}
    run_id = (await client.post("/runs", json=body)).json()["id"]
    await wait_until_finished(app, run_id)

    everything = (await client.get(f"/runs/{run_id}/logs", params={"limit": 100})).json()
    page1 = (await client.get(f"/runs/{run_id}/logs", params={"limit": 4})).json()
    page2 = (
        await client.get(f"/runs/{run_id}/logs", params={"limit": 4, "after": page1["next_after"]})
    ).json()
    only_b = (await client.get(f"/runs/{run_id}/logs", params={"step": "b"})).json()

    lines = everything["items"]
    assert [(line["step"], line["event"], line["data"]) for line in lines] == [
        (step, "line", {"n": n}) for step in "abc" for n in range(3)
    ]
    assert all(line["level"] == "info" for line in lines)
    assert everything["next_after"] is None
    assert [line["seq"] for line in page1["items"] + page2["items"]] == [
        line["seq"] for line in lines[:8]
    ]
    assert [line["data"]["n"] for line in only_b["items"]] == [0, 1, 2]
    assert {line["step"] for line in only_b["items"]} == {"b"}


async def test_logs_of_an_unknown_run_are_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/runs/01NOSUCHRUN0000000000000000/logs")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
