"""Operations: liveness, readiness, Prometheus metrics, and the two ways to serve the app
(``stepline serve`` and ``uvicorn app.main:app``) as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.settings import Settings
from app.store.migrate import head_revision
from app.store.sqlite import sqlite_path

from .conftest import WAIT, services_of, wait_for_event, wait_until_finished
from .pipelines import GATES
from .processes import free_port, wait_until_listening

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
STOP_SECONDS = 5.0  # and exit this long after SIGTERM
HTTP_SECONDS = 5.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str) -> Samples:
    """Every sample of a Prometheus exposition: ``(name, labels) -> value``."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def read_metrics(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


# -- health and readiness ---------------------------------------------------------------------


async def test_healthz_answers_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_200_when_the_database_is_reachable_and_at_the_head(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_answers_503_when_the_database_is_at_another_revision(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    path = sqlite_path(services_of(app).settings.database_url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dface'")

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 503
    assert problem["instance"] == "/readyz"
    assert "f00dface" in problem["detail"]
    assert str(head_revision()) in problem["detail"]


@pytest.mark.parametrize(
    ("database", "says"),
    [
        ("missing-dir/stepline.db", "unable to open database file"),
        ("not-a-database.db", "file is not a database"),
        ("empty.db", "database schema is at None"),  # never migrated
    ],
)
async def test_readyz_answers_503_when_the_database_is_not_usable(
    settings: Settings, tmp_path: Path, database: str, says: str
) -> None:
    if database == "not-a-database.db":
        (tmp_path / database).write_bytes(b"this is not SQLite\n" * 100)
    url = f"sqlite+aiosqlite:///{tmp_path / database}"
    application = create_app(settings.model_copy(update={"database_url": url}))
    transport = httpx.ASGITransport(app=application)  # no lifespan: the store never started
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
            response = await c.get("/readyz")
    finally:
        await services_of(application).store.close()

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 503
    assert says in response.json()["detail"]


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_after_a_run_show_runs_queue_streams_and_step_durations(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    run = (await client.post("/runs", json={"pipeline": "controlled"})).json()
    assert await wait_until_finished(app, run["id"]) == "succeeded"
    stream = await client.get(f"/runs/{run['id']}/events")  # a finished run: the stream ends
    assert stream.status_code == 200

    metrics = await read_metrics(client)

    assert metrics[("stepline_runs", labels(pipeline="controlled", status="succeeded"))] == 1
    assert metrics[("stepline_queue_depth", labels())] == 0
    assert metrics[("stepline_sse_streams", labels())] == 0
    for step in "abc":
        step_labels = labels(pipeline="controlled", step=step)
        assert metrics[("stepline_step_duration_seconds_count", step_labels)] == 1
        assert metrics[("stepline_step_duration_seconds_sum", step_labels)] >= 0
        assert metrics[
            ("stepline_step_duration_seconds_bucket", labels(**dict(step_labels), le="+Inf"))
        ] == 1  # fmt: skip


async def test_metrics_count_a_run_waiting_for_a_busy_worker_as_queued(
    settings: Settings,
) -> None:
    gate = f"ops-{uuid.uuid4().hex}"
    application = create_app(settings.model_copy(update={"workers": 1}))
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as client,
    ):
        params = {"gate_at": "a", "gate": gate}
        first = await client.post("/runs", json={"pipeline": "controlled", "params": params})
        await wait_for_event(application, first.json()["id"], "step.started")
        second = await client.post("/runs", json={"pipeline": "NOOP_10"})
        try:
            busy = await read_metrics(client)
        finally:
            GATES.open(gate)
        for run in (first, second):
            assert await wait_until_finished(application, run.json()["id"]) == "succeeded"
        # A run is stored as finished a moment before its worker lets go of it.
        await services_of(application).runs.workers.drain(WAIT)
        idle = await read_metrics(client)

    assert busy[("stepline_queue_depth", labels())] == 1
    assert busy[("stepline_runs", labels(pipeline="controlled", status="running"))] == 1
    assert busy[("stepline_runs", labels(pipeline="NOOP_10", status="queued"))] == 1
    assert busy[("stepline_runs_executing", labels())] == 1
    assert idle[("stepline_queue_depth", labels())] == 0
    assert idle[("stepline_runs_executing", labels())] == 0
    assert ("stepline_runs", labels(pipeline="NOOP_10", status="queued")) not in idle


# -- serving as a process ---------------------------------------------------------------------


@contextmanager
def server(
    command: list[str], tmp_path: Path, port: int, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in ``tmp_path`` until it listens on ``port``; kill it if it outlives
    the block."""
    log = tmp_path / "server.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEPLINE_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_until_listening(process, port, log)
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_SECONDS)


def check_serves_and_stops_on_sigterm(
    process: subprocess.Popen[bytes], port: int, log: Path
) -> None:
    base = f"http://127.0.0.1:{port}"
    health = httpx.get(f"{base}/healthz", timeout=HTTP_SECONDS)
    ready = httpx.get(f"{base}/readyz", timeout=HTTP_SECONDS)

    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=STOP_SECONDS)

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    # uvicorn shuts down gracefully, then re-raises the signal, so the exit says "SIGTERM".
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()


def test_stepline_serve_answers_healthz_and_exits_on_sigterm(tmp_path: Path) -> None:
    stepline = Path(sys.executable).with_name("stepline")
    assert stepline.exists(), "the stepline console script is not installed"
    port, database = free_port(), tmp_path / "served.db"
    env = {"STEPLINE_PORT": str(port), "STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}

    with server([str(stepline), "serve"], tmp_path, port, env) as process:
        check_serves_and_stops_on_sigterm(process, port, tmp_path / "server.log")

    assert database.exists()


def test_uvicorn_serves_the_module_level_app_built_from_the_environment(
    tmp_path: Path,
) -> None:
    port, database = free_port(), tmp_path / "env.db"
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    env = {"STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}

    with server(command, tmp_path, port, env) as process:
        check_serves_and_stops_on_sigterm(process, port, tmp_path / "server.log")

    assert database.exists()


async def test_a_run_interrupted_by_shutdown_is_not_recorded_as_a_failed_step(
    settings: Settings,
) -> None:
    gate = f"shutdown-{uuid.uuid4().hex}"
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application)
    params = {"gate_at": "b", "gate": gate}
    try:
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as client,
        ):
            created = await client.post("/runs", json={"pipeline": "controlled", "params": params})
            run_id = created.json()["id"]
            await wait_for_event(application, run_id, "step.started")
            assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)
    finally:
        GATES.open(gate)

    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        run = await services_of(restarted).store.get_run(run_id)

    assert (run.error or {}).get("type") != "CancelledError", run.summary
    assert run.status != "failed", run.summary


def test_serve_stops_with_a_message_naming_a_pipeline_that_cannot_be_imported(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stepline.db'}",
        "STEPLINE_PIPELINES": "no_such_module_anywhere:Pipeline",
    }

    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2
    assert "no_such_module_anywhere:Pipeline" in done.stderr
    assert "Traceback" not in done.stderr
