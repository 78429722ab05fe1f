"""``stepline serve`` executing its runs on Ray through Ray Client (``ray://``), as the API
replicas of deploy/compose.yaml do: a driver on a machine without a raylet.

The session's Ray head serves Ray Client too (``RayHead.client_address``). The server is a
process of its own, on a fresh PostgreSQL database; everything is checked over HTTP: a run
with sync and async steps executes in a Ray worker process, a cancel reaches it and rolls
back, its events stream over SSE, and a server stopped mid-step has Ray stop the task
(``ray.cancel`` over Ray Client) and releases the run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import app.runs.ray_executor as ray_executor
from tests.app.live import open_stream
from tests.app.processes import ROOT, free_port, stepline_serve
from tests.databases import database_url, execute
from tests.raycluster import RayHead

from .conftest import TERMINAL, WAIT, wait_for_run

STOP_SECONDS = 30.0  # a stopped server exits within this (its grace period is 0.5 s)
# Should the head's server process for the client die as it starts all the same (see
# CLIENT_CONNECT_ATTEMPTS), the server's connection fails after about 40 s and is tried
# again: the server listens that much later.
START_SECONDS = 100.0


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    database: str
    env: dict[str, str]


def serve_env(url: str, head: RayHead) -> dict[str, str]:
    return {
        "STEPLINE_DATABASE_URL": url,
        "STEPLINE_PIPELINES": "tests.scaleout.pipelines",
        "STEPLINE_DEMO_PIPELINES": "false",
        "STEPLINE_WORKERS": "2",
        "STEPLINE_POLL_SECONDS": "0.05",
        "STEPLINE_GRACEFUL_SHUTDOWN_SECONDS": "0.5",
        "STEPLINE_EXECUTOR": "ray",
        "STEPLINE_RAY_ADDRESS": head.client_address,
    }


@pytest.fixture(scope="module")
def server(ray_cluster: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("ray-client")
    with database_url("postgres", directory) as url:
        env = serve_env(url, ray_cluster)
        port = free_port()
        with stepline_serve(
            directory / "server", port, env, start_seconds=START_SECONDS
        ) as process:
            yield Server(f"http://127.0.0.1:{port}", process.pid, url, env)
            # Stopped, not killed: a Ray Client that vanishes keeps its server process on
            # the head (and its tasks) for Ray's reconnect grace period of 30 s.
            process.send_signal(signal.SIGTERM)
            process.wait(STOP_SECONDS)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as c:
        yield c


async def finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return await wait_for_run(client, run_id, lambda run: run["status"] in TERMINAL)


def test_the_server_joins_ray_as_a_ray_client(server: Server) -> None:
    assert server.env["STEPLINE_RAY_ADDRESS"].startswith("ray://127.0.0.1:")


@pytest.mark.anyio
async def test_a_run_with_sync_and_async_steps_succeeds_in_a_ray_worker_process(
    server: Server, client: httpx.AsyncClient
) -> None:
    response = await client.post("/runs", json={"pipeline": "mixed"})
    assert response.status_code == 202, response.text
    run = await finished(client, response.json()["id"])

    assert run["status"] == "succeeded", run
    assert [s["status"] for s in run["steps"]] == ["succeeded", "succeeded"]
    where = run["result"]["steps"]
    assert where["sync_where"]["pid"] == where["async_where"]["pid"]
    assert where["sync_where"]["pid"] not in {server.pid, os.getpid()}
    assert Path(where["async_where"]["app"]).parent == ROOT / "app"  # this checkout's code


@pytest.mark.anyio
async def test_a_cancel_reaches_the_ray_worker_and_rolls_back(client: httpx.AsyncClient) -> None:
    run_id = (await client.post("/runs", json={"pipeline": "waiting"})).json()["id"]
    await wait_for_run(client, run_id, lambda run: run["steps"][1]["status"] == "running")

    response = await client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text
    run = await finished(client, run_id)

    assert run["status"] == "cancelled", run
    assert [s["status"] for s in run["steps"]] == ["succeeded", "cancelled"]
    assert run["steps"][0]["rollback"]["status"] == "rolled_back"


@pytest.mark.anyio
async def test_the_runs_events_stream_over_sse_as_the_worker_writes_them(
    server: Server, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    body = {"pipeline": "gated_where", "params": {"gate": str(gate), "logs": 1}}
    run_id = (await client.post("/runs", json={**body})).json()["id"]
    try:
        async with open_stream(client, f"/runs/{run_id}/events", last_event_id=0) as stream:
            before = await stream.read_until(
                lambda e: e["event"] == "step.started" and e["data"]["step"] == "b", WAIT
            )
            gate.touch()  # step b waits for it on the worker: the rest comes live
            after = await stream.read_to_end(WAIT)
    finally:
        gate.touch()
    stored = execute(
        server.database, f"SELECT seq, type FROM events WHERE run_id = '{run_id}' ORDER BY seq"
    )

    events = before + after
    assert [(int(str(e["id"])), e["event"]) for e in events] == [
        (int(seq), str(kind)) for seq, kind in stored
    ]
    assert events[-1]["event"] == "run.succeeded"
    assert [e["data"]["step"] for e in events if e["event"] == "step.succeeded"] == ["a", "b", "c"]


@pytest.mark.anyio
async def test_a_server_stopped_mid_step_has_ray_stop_the_task_and_releases_the_run(
    ray_cluster: RayHead, tmp_path: Path
) -> None:
    port = free_port()
    # A database of its own: no other server's reconciler recovers the released run.
    with (
        database_url("postgres", tmp_path) as url,
        stepline_serve(
            tmp_path / "server", port, serve_env(url, ray_cluster), start_seconds=START_SECONDS
        ) as process,
    ):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as c:
            run_id = (await c.post("/runs", json={"pipeline": "waiting"})).json()["id"]
            run = await wait_for_run(c, run_id, lambda run: run["steps"][1]["status"] == "running")
        process.send_signal(signal.SIGTERM)
        code = process.wait(STOP_SECONDS)
        [(status, owner)] = execute(url, f"SELECT status, owner FROM runs WHERE id = '{run_id}'")

    # uvicorn shuts down gracefully, then re-raises the signal.
    assert code in (0, -signal.SIGTERM)
    assert run["steps"][1]["status"] == "running"
    # Past its grace period the step was cut short (its task cancelled through Ray Client),
    # and the run released for a reconciler to recover.
    assert (status, owner) == ("running", None)


def test_a_ray_client_connection_the_head_failed_to_serve_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []

    def init(**kwargs: Any) -> None:
        calls.append(kwargs)
        if len(calls) == 1:
            raise ConnectionAbortedError("Initialization failure from server")

    monkeypatch.setattr(ray_executor.ray, "init", init)

    ray_executor._join("ray://head:10001")

    assert calls == [{"address": "ray://head:10001", "namespace": "stepline"}] * 2


def test_a_ray_client_connection_is_given_up_after_its_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    def init(**kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionAbortedError("Initialization failure from server")

    monkeypatch.setattr(ray_executor.ray, "init", init)

    with pytest.raises(ConnectionAbortedError):
        ray_executor._join("ray://head:10001")
    assert calls == ray_executor.CLIENT_CONNECT_ATTEMPTS


def test_a_driver_on_a_node_joins_once_without_the_dashboard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray_executor.ray, "init", lambda **kwargs: calls.append(kwargs))

    ray_executor._join("10.0.0.1:6379")

    assert calls == [{"address": "10.0.0.1:6379", "include_dashboard": False,
                      "namespace": "stepline"}]  # fmt: skip
