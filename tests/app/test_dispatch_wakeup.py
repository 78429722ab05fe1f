"""A run queued while the dispatcher is claiming is claimed at once, not at the next poll.

The dispatcher is told of each new run (``Executor.wake``). A claim already under way may
not see a run queued meanwhile; the wake-up that came with it must then make the dispatcher
look again. Here the dispatcher polls once an hour, so only a wake-up can start the run
within the test's wait. In every configuration: the in-process pool and the Ray executor
have a dispatcher each.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.settings import Settings
from tests.configurations import CONFIGURATIONS

from .conftest import WAIT, services_of, wait_until_finished

pytestmark = pytest.mark.anyio


@pytest.fixture(params=CONFIGURATIONS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"poll_seconds": 3600.0})


async def test_a_run_queued_while_the_dispatcher_claims_is_claimed_without_a_poll(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    store = services.store
    claim_queued = store.claim_queued
    claiming, answer = asyncio.Event(), asyncio.Event()

    async def held_claim(*args: Any, **kwargs: Any) -> Any:
        """The first claim from now on finds what is queued, then waits to answer."""
        claimed = await claim_queued(*args, **kwargs)
        if not claiming.is_set():
            claiming.set()
            await answer.wait()
        return claimed

    monkeypatch.setattr(store, "claim_queued", held_claim)
    services.runs.workers.wake()
    async with asyncio.timeout(WAIT):
        await claiming.wait()  # a claim is under way, and found nothing
    response = await client.post("/runs", json={"pipeline": "NOOP_10"})
    assert response.status_code == 202
    answer.set()  # the claim answers without the run: the run's wake-up must not be lost

    assert await wait_until_finished(app, response.json()["id"], within=WAIT / 2) == "succeeded"
