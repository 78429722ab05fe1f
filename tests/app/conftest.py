"""Fixtures of the service tests: an app on a fresh database, an HTTP client, helpers.

The database is a SQLite file. A module whose tests hold in every configuration overrides
``backend`` with ``params=CONFIGURATIONS`` (from ``tests.configurations``): its tests then
also run on a fresh PostgreSQL database each, with runs executed in process and on Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.api.deps import Services
from app.main import create_app
from app.settings import Settings
from app.states import TERMINAL, RunStatus
from tests.configurations import executor_settings, store_of
from tests.databases import database_url

WAIT = 20.0  # seconds any test waits for what it expects


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def backend() -> str:
    """The configuration the service runs in (see ``tests.configurations``)."""
    return "sqlite"


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of ``backend``'s store."""
    with database_url(store_of(backend), tmp_path) as url:
        yield url


@pytest.fixture
def settings(store_url: str, backend: str, request: pytest.FixtureRequest) -> Settings:
    return Settings(
        database_url=store_url,
        pipelines=["tests.app.pipelines", "tests.app.pipelines:NOOP_10"],
        entry_points=False,
        workers=4,
        poll_seconds=0.05,
        graceful_shutdown_seconds=0.5,  # tests that stop an app mid-step need not wait long
        **executor_settings(backend, request),
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
        yield c


def services_of(app: FastAPI) -> Services:
    return app.state.services  # type: ignore[no-any-return]


async def wait_until_finished(app: FastAPI, run_id: str, within: float = WAIT) -> RunStatus:
    """Wait for the run's final event on the bus (not by polling) and return its status."""

    services = services_of(app)
    async with services.bus.subscribe(run_id) as subscription:
        run = await services.store.get_run(run_id)
        async with asyncio.timeout(within):
            while run.status not in TERMINAL:
                event = await subscription.get()
                if event is None:
                    break
                if event.type in ("run.succeeded", "run.failed", "run.cancelled"):
                    break
        return (await services.store.get_run(run_id)).status


async def wait_for_event(app: FastAPI, run_id: str, type_: str, within: float = WAIT) -> None:
    """Wait until the run has stored an event of ``type_``."""

    services = services_of(app)
    async with services.bus.subscribe(run_id) as subscription:
        stored = await services.store.run_events(run_id, 0, 10_000)
        if any(e.type == type_ for e in stored):
            return
        async with asyncio.timeout(within):
            while True:
                event = await subscription.get()
                if event is None or event.type == type_:
                    return
