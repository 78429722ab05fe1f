"""Ownership: a key without ``admin`` sees and touches only the runs it created; another
key's run is answered exactly as a run that does not exist. On every store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from app.store.records import RunRow
from tests.app.conftest import WAIT, services_of, wait_until_finished
from tests.app.keys import bearer, create_key, stored_keys
from tests.app.live import Event, open_stream, serve
from tests.app.pipelines import GATES
from tests.configurations import CONFIGURATIONS
from tests.databases import table_counts

pytestmark = pytest.mark.anyio

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ABSENT = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a run id no run has
TABLES = ("runs", "step_runs", "events", "idempotency_keys")


@pytest.fixture(params=CONFIGURATIONS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gate() -> Iterator[str]:
    name = uuid.uuid4().hex
    yield name
    GATES.open(name)


async def held_run(client: httpx.AsyncClient, app: FastAPI, key: str, gate: str) -> str:
    """A run of ``key``'s held at a gate in its second step (it writes nothing meanwhile)."""
    body = {"pipeline": "controlled", "params": {"gate_at": "b", "gate": gate}}
    response = await client.post("/runs", json=body, headers=bearer(key))
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)
    return run_id


async def state(app: FastAPI, run_id: str) -> tuple[RunRow, list[Any]]:
    """What a request could change about a run (the lease moves with heartbeats)."""
    store = services_of(app).store
    run = await store.get_run(run_id)
    return dataclasses.replace(run, lease_expires_at=None), await store.run_events(run_id, 0, 10**6)


def run_id_paths(app: FastAPI) -> list[str]:
    return sorted(path for path in app.openapi()["paths"] if "{run_id}" in path)


async def test_another_keys_run_is_answered_as_a_run_that_does_not_exist(
    client: httpx.AsyncClient, app: FastAPI, gate: str, store_url: str
) -> None:
    alice = await create_key(app, "alice", "read", "run")
    bob = await create_key(app, "bob", "read", "run")
    run_id = await held_run(client, app, bob, gate)
    before = await state(app, run_id)
    counts = table_counts(store_url, TABLES)
    secret_bits = ("controlled", "gate", "running", "params", "progress")
    paths = run_id_paths(app)
    assert {"/runs/{run_id}", "/runs/{run_id}/cancel", "/runs/{run_id}/events",
            "/runs/{run_id}/logs"} <= set(paths)  # fmt: skip

    for path in paths:
        for method in METHODS:
            for body in (None, {}, {"rollback": False}):
                kwargs: dict[str, Any] = {"headers": bearer(alice)}
                if body is not None:
                    kwargs["json"] = body
                theirs = await client.request(method, path.format(run_id=run_id), **kwargs)
                absent = await client.request(method, path.format(run_id=ABSENT), **kwargs)
                where = f"{method} {path} {body}: {theirs.status_code} {theirs.text}"

                assert theirs.status_code == absent.status_code, where
                assert theirs.status_code in (404, 405), where
                assert theirs.headers["content-type"] == "application/problem+json", where
                assert theirs.text.replace(run_id, ABSENT) == absent.text, where
                assert not any(bit in theirs.text for bit in secret_bits), where

    assert await state(app, run_id) == before
    assert table_counts(store_url, TABLES) == counts
    mine = await client.get(f"/runs/{run_id}", headers=bearer(bob))
    assert mine.status_code == 200
    assert mine.json()["status"] == "running"


async def test_a_key_lists_its_own_runs_and_admin_every_run(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    anonymous = (await client.post("/runs", json={"pipeline": "controlled"})).json()["id"]
    alice = await create_key(app, "alice", "read", "run")
    bob = await create_key(app, "bob", "read", "run")
    admin = await create_key(app, "admin", "admin")
    created: dict[str, list[str]] = {"alice": [], "bob": [], "admin": []}
    for _ in range(3):
        for name, key in (("alice", alice), ("bob", bob), ("admin", admin)):
            response = await client.post(
                "/runs", json={"pipeline": "controlled"}, headers=bearer(key)
            )
            created[name].append(response.json()["id"])

    async def listed(key: str, limit: int) -> list[str]:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/runs", params=params, headers=bearer(key))).json()
            ids += [run["id"] for run in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    assert await listed(alice, 2) == created["alice"][::-1]
    assert await listed(bob, 1) == created["bob"][::-1]
    everything = await listed(admin, 4)
    assert sorted(everything) == sorted([anonymous, *(i for ids in created.values() for i in ids)])
    for run_id in everything:
        assert await wait_until_finished(app, run_id) == "succeeded"


async def test_idempotency_keys_belong_to_the_api_key_that_used_them(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    alice = await create_key(app, "alice", "run", "read")
    bob = await create_key(app, "bob", "run", "read")
    body = {"pipeline": "controlled"}
    repeat = {"Idempotency-Key": "nightly"}

    first = await client.post("/runs", json=body, headers={**bearer(alice), **repeat})
    again = await client.post("/runs", json=body, headers={**bearer(alice), **repeat})
    other = await client.post("/runs", json=body, headers={**bearer(bob), **repeat})
    conflict = await client.post(
        "/runs", json={"pipeline": "NOOP_10"}, headers={**bearer(bob), **repeat}
    )

    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert conflict.status_code == 409
    assert first.json()["id"] not in conflict.text
    for response in (first, other):
        assert await wait_until_finished(app, response.json()["id"]) == "succeeded"


async def test_the_events_stream_of_a_key_carries_its_own_runs_only(
    settings: Settings, store_url: str
) -> None:
    alice, bob = await stored_keys(store_url, ("alice", ("read", "run")), ("bob", ("read", "run")))
    body = {"pipeline": "controlled", "params": {"logs": 1}}
    async with (
        serve(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT, headers=bearer(alice)) as client,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT, headers=bearer(bob)) as other,
    ):

        async def finish(as_: httpx.AsyncClient) -> str:
            run_id: str = (await as_.post("/runs", json=body)).json()["id"]
            async with open_stream(as_, f"/runs/{run_id}/events") as stream:
                await stream.read_to_end(WAIT)  # the stream ends after the run's last event
            return run_id

        def done(run_id: str) -> Callable[[Event], bool]:
            return lambda e: e["event"] == "run.succeeded" and e["data"]["run_id"] == run_id

        await finish(other)
        async with open_stream(client, "/events") as stream:
            await finish(other)
            mine = await finish(client)
            live = await stream.read_until(done(mine), WAIT)
        async with open_stream(client, "/events", last_event_id=0) as stream:
            replayed = await stream.read_until(done(mine), WAIT)

    live = [e for e in live if e["event"] is not None]  # not the first retry: hint
    assert {e["data"]["run_id"] for e in live} == {mine}
    assert {e["data"]["run_id"] for e in replayed} == {mine}
    assert [e["id"] for e in replayed] == [e["id"] for e in live]


@pytest.mark.parametrize(
    "extra",
    [
        {"status": "succeeded"},
        {"owner": "someone"},
        {"owner_key_id": "0123456789ab"},
        {"progress": 1.0},
        {"result": {"ok": True}},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"steps": []},
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_server_set_fields_cannot_be_assigned_and_nothing_is_stored(
    client: httpx.AsyncClient, app: FastAPI, store_url: str, extra: dict[str, Any],
    content_type: str,
) -> None:  # fmt: skip
    key = await create_key(app, "runner", "run")
    counts = table_counts(store_url, TABLES)
    body = json.dumps({"pipeline": "controlled", **extra}).encode()

    response = await client.post(
        "/runs", content=body, headers={"content-type": content_type, **bearer(key)}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ["body", next(iter(extra))]
    assert table_counts(store_url, TABLES) == counts
