"""Fixtures of the Ray executor tests: one small local Ray for the whole session, and an app
executing its runs there, on a fresh PostgreSQL database for each test.

The local Ray is the session's (``ray_cluster``, in ``tests/conftest.py``). Its workers import
``app`` and the test pipelines from this checkout: Ray puts the driver's working directory
on its workers' ``sys.path``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.databases import database_url, execute
from tests.raycluster import RayHead

WAIT = 30.0  # seconds any test waits for what it expects (a Ray worker starts within it)
POLL = 0.05  # between two reads of the state a test waits for
LEASE_SECONDS = 1.5  # short, so that a crashed run is taken over within the test
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    with database_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def settings(store_url: str, ray_cluster: RayHead) -> Settings:
    return Settings(
        database_url=store_url,
        executor="ray",
        ray_address=ray_cluster.address,
        pipelines=["tests.scaleout.pipelines", "tests.app.pipelines:NOOP_10"],
        demo_pipelines=False,
        entry_points=False,
        workers=4,
        poll_seconds=0.05,
        lease_seconds=LEASE_SECONDS,
        graceful_shutdown_seconds=0.5,
    )


@pytest.fixture
async def app(ray_cluster: RayHead, settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
        yield c


async def wait_for_run(
    client: httpx.AsyncClient,
    run_id: str,
    done: Callable[[dict[str, Any]], bool],
    within: float = WAIT,
) -> dict[str, Any]:
    """``GET /runs/{id}`` until ``done`` accepts the run (``TimeoutError`` after ``within``):
    the run executes in another process, whose events this app's bus does not carry."""
    async with asyncio.timeout(within):
        while True:
            run: dict[str, Any] = (await client.get(f"/runs/{run_id}")).json()
            if done(run):
                return run
            await asyncio.sleep(POLL)


async def wait_until_finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return await wait_for_run(client, run_id, lambda run: run["status"] in TERMINAL)


async def wait_for_log(
    client: httpx.AsyncClient, run_id: str, within: float = WAIT, *, nth: int = 1
) -> Any:
    """The data of the ``nth`` line the steps of the run log, once it is stored."""
    async with asyncio.timeout(within):
        while True:
            lines = (await client.get(f"/runs/{run_id}/logs")).json()["items"]
            if len(lines) >= nth:
                return lines[nth - 1]["data"]
            await asyncio.sleep(POLL)


def run_epoch(url: str, run_id: str) -> int:
    """The run's fencing epoch, which grows with every claim."""
    return int(execute(url, f"SELECT epoch FROM runs WHERE id = '{run_id}'")[0][0])
