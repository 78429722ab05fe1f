"""Graceful shutdown: no new runs, streams told, running steps finished, runs carried on."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings

from .conftest import WAIT, services_of, wait_until_finished
from .live import open_stream, serve
from .pipelines import GATES
from .processes import free_port, stepline_serve

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def test_once_shutdown_begins_new_runs_get_a_503_problem(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    services_of(app).begin_shutdown()

    response = await client.post("/runs", json={"pipeline": "NOOP_10"})

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert "shutting down" in response.json()["detail"]


async def test_streams_end_with_a_final_event_and_a_running_step_finishes_first(
    settings: Settings,
) -> None:
    gate = f"shutdown-{uuid.uuid4().hex}"
    slow = settings.model_copy(update={"graceful_shutdown_seconds": WAIT})
    application = create_app(slow)
    async with serve(application) as url, httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        body = {"pipeline": "controlled", "params": {"gate_at": "b", "gate": gate}}
        run_id = (await client.post("/runs", json=body)).json()["id"]
        assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)
        async with (
            open_stream(client, f"/runs/{run_id}/events") as run_stream,
            open_stream(client, "/events") as all_stream,
        ):
            await anext(run_stream)  # the snapshot: the stream is live
            services_of(application).request_shutdown()
            run_events = await run_stream.read_to_end(WAIT)
            all_events = await all_stream.read_until(lambda e: e["event"] == "stream.closing", WAIT)
        GATES.open(gate)  # the step in progress may finish within the grace period

    assert run_events[-1]["event"] == "stream.closing"
    assert all_events[-1]["event"] == "stream.closing"
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        assert await wait_until_finished(restarted, run_id) == "succeeded"
        stored = await services_of(restarted).store.run_events(run_id, 0, 1000)
        resumed = await services_of(restarted).store.get_run(run_id)
    assert resumed.recovery_attempts == 0  # a clean stop is not a failed attempt
    started = [e.data["step"] for e in stored if e.type == "step.started"]
    assert started == ["a", "b", "c"]  # b finished before the stop; c ran after the restart
    assert [e.data["how"] for e in stored if e.type == "run.recovered"] == ["resume"]


GRACE_SECONDS = 2
EXIT_SLACK_SECONDS = 5


@contextlib.contextmanager
def stepline(database: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        "STEPLINE_GRACEFUL_SHUTDOWN_SECONDS": str(GRACE_SECONDS),
        "STEPLINE_WORKERS": "4",
        "STEPLINE_LEASE_SECONDS": "2",
    }
    with stepline_serve(database, port, env) as process:
        yield process


@pytest.mark.slow
async def test_sigterm_with_runs_and_streams_in_flight(tmp_path: Path) -> None:
    database, ledger, port = tmp_path / "s.db", tmp_path / "ledger.txt", free_port()
    url = f"http://127.0.0.1:{port}"
    body = {"pipeline": "ledger", "params": {"ledger": str(ledger), "step_seconds": 0.5}}
    with stepline(database, port) as process:
        limits = httpx.Limits(max_connections=200)  # 100 streams, a slow POST, the rest
        async with httpx.AsyncClient(base_url=url, timeout=WAIT, limits=limits) as client:
            run_ids = [(await client.post("/runs", json=body)).json()["id"] for _ in range(20)]
            late_body_may_finish = asyncio.Event()
            late = asyncio.create_task(post_slowly(client, late_body_may_finish))
            closed = await streams_closed_by_sigterm(client, process, streams=100)
            late_body_may_finish.set()
            refused = await late
        started = time.monotonic()
        await asyncio.to_thread(process.wait, GRACE_SECONDS + EXIT_SLACK_SECONDS)
        took = time.monotonic() - started

    assert closed == 100
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert took <= GRACE_SECONDS + EXIT_SLACK_SECONDS
    with stepline(database, port):
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
            finished = await asyncio.gather(*(final_status(client, run_id) for run_id in run_ids))
    assert finished == ["succeeded"] * 20


async def post_slowly(client: httpx.AsyncClient, may_finish: asyncio.Event) -> httpx.Response:
    """A POST /runs whose body is still arriving when the server is told to stop."""

    async def body() -> AsyncIterator[bytes]:
        yield b'{"pipeline": '
        await may_finish.wait()
        yield b'"NOOP_10"}'

    return await client.post("/runs", content=body(), headers={"content-type": "application/json"})


async def streams_closed_by_sigterm(
    client: httpx.AsyncClient, process: subprocess.Popen[bytes], streams: int
) -> int:
    """Open ``streams`` event streams, send SIGTERM, count those that got the final event."""
    connected = asyncio.Semaphore(0)

    async def follow() -> bool:
        async with client.stream("GET", "/events") as response:
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith(":"):
                    connected.release()
                    break
            async for line in lines:
                if line == "event: stream.closing":
                    return True
        return False

    followers = [asyncio.create_task(follow()) for _ in range(streams)]
    async with asyncio.timeout(WAIT):
        for _ in range(streams):
            await connected.acquire()
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(WAIT):
        return sum(await asyncio.gather(*followers))


async def final_status(client: httpx.AsyncClient, run_id: str) -> str:
    """Follow the run's stream to its end and return its status."""
    async with asyncio.timeout(60), client.stream("GET", f"/runs/{run_id}/events") as response:
        async for _line in response.aiter_lines():
            pass
    return str((await client.get(f"/runs/{run_id}")).json()["status"])
