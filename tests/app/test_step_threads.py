"""Sync steps executing in the service's process: every run a worker executes has a thread."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings

from .conftest import WAIT, wait_until_finished
from .pipelines import GATES

pytestmark = pytest.mark.anyio

# More runs at once than the event loop's default executor has threads.
DEFAULT_EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)
WORKERS = DEFAULT_EXECUTOR_THREADS + 2


@pytest.fixture
async def wide_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"workers": WORKERS}))
    async with application.router.lifespan_context(application):
        yield application


async def _reached_all(gates: list[str]) -> bool:
    # On a thread of its own, not the loop's executor, whatever the steps hold.
    done = asyncio.get_running_loop().create_future()

    def wait() -> None:
        reached = all(GATES.reached(gate).wait(WAIT) for gate in gates)
        done.get_loop().call_soon_threadsafe(done.set_result, reached)

    threading.Thread(target=wait, daemon=True).start()
    return bool(await done)


async def test_as_many_sync_steps_run_at_once_as_there_are_workers(wide_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=wide_app)
    gates = [f"thread-{uuid.uuid4().hex}" for _ in range(WORKERS)]
    async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as client:
        run_ids = [
            (await client.post(
                "/runs", json={"pipeline": "controlled", "params": {"gate_at": "a", "gate": g}}
            )).json()["id"]
            for g in gates
        ]  # fmt: skip

        # Every step is waiting at its gate at the same time, each in a thread.
        assert await _reached_all(gates)

        for gate in gates:
            GATES.open(gate)
        for run_id in run_ids:
            assert await wait_until_finished(wide_app, run_id) == "succeeded"
