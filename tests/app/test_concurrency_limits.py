"""A pipeline's ``max_concurrency``: its runs wait in the queue while it has that many
executing, whatever the number of free workers, and start in order as room appears."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from fastapi import FastAPI

from .conftest import WAIT, services_of, wait_until_finished
from .pipelines import GATES

pytestmark = pytest.mark.anyio


async def statuses(client: httpx.AsyncClient, run_ids: list[str]) -> list[str]:
    return [(await client.get(f"/runs/{run_id}")).json()["status"] for run_id in run_ids]


async def test_a_capped_pipeline_runs_one_at_a_time_while_others_go_on(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    described = (await client.get("/pipelines/serial")).json()
    assert described["max_concurrency"] == 1
    assert (await client.get("/pipelines/controlled")).json()["max_concurrency"] is None

    gates = [f"serial-{i}" for i in range(3)]
    serial = [
        (await client.post("/runs", json={"pipeline": "serial",
                                           "params": {"gate_at": "a", "gate": gate}})).json()["id"]
        for gate in gates
    ]  # fmt: skip
    other = (await client.post("/runs", json={"pipeline": "controlled"})).json()["id"]

    # The workers are free (4), yet only the first serial run starts; the other pipeline's
    # run is not held up behind the queued ones.
    assert await asyncio.to_thread(GATES.reached(gates[0]).wait, WAIT)
    assert await wait_until_finished(app, other) == "succeeded"
    assert await statuses(client, serial) == ["running", "queued", "queued"]

    for index, gate in enumerate(gates):
        GATES.open(gate)
        assert await wait_until_finished(app, serial[index]) == "succeeded"
        if index + 1 < len(gates):
            assert await asyncio.to_thread(GATES.reached(gates[index + 1]).wait, WAIT)

    runs = [await services_of(app).store.get_run(run_id) for run_id in serial]
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None
        assert later.started_at is not None
        assert earlier.finished_at <= later.started_at  # never two at once
