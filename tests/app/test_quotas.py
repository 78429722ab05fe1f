"""Quotas: run creation rate, open streams and queued runs per key, queued runs per
pipeline, the size of params; every refusal is problem details."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import WAIT, services_of, wait_until_finished
from tests.app.keys import Clock, bearer, create_key, stored_keys
from tests.app.live import open_stream, serve
from tests.app.pipelines import GATES
from tests.databases import table_counts

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
TABLES = ("runs", "idempotency_keys")  # not events nor steps: runs execute meanwhile


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    quotas = {
        "runs_per_minute": 3,
        "max_queued_runs_per_key": 2,
        "max_queued_runs_per_pipeline": 3,
        "max_params_bytes": 200,
        "max_streams_per_key": 1,
        "workers": 1,
    }
    app = create_app(settings.model_copy(update=quotas))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
            yield app, c


def assert_429(response: httpx.Response, slug: str = "too-many-requests") -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith(slug)
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def test_the_run_after_a_keys_rate_is_a_429_with_retry_after(
    limited: tuple[FastAPI, httpx.AsyncClient], store_url: str
) -> None:
    app, client = limited
    services_of(app).quotas.runs.clock = clock = Clock()
    key = await create_key(app, "runner", "run", "read")
    other = await create_key(app, "other", "run", "read")
    body = {"pipeline": "NOOP_10"}
    created = [await client.post("/runs", json=body, headers=bearer(key)) for _ in range(3)]
    counts = table_counts(store_url, TABLES)

    fast = await client.post("/runs", json=body, headers=bearer(key))
    declared = await client.post(
        "/runs", content=b'{"pipeline": "NOOP_10"}',
        headers={"content-type": "application/json; charset=utf-8", **bearer(key)},
    )  # fmt: skip

    assert [r.status_code for r in created] == [202, 202, 202]
    assert 1 <= assert_429(fast) <= 20  # three a minute: one more every 20 s
    assert_429(declared)
    assert table_counts(store_url, TABLES) == counts
    assert (await client.post("/runs", json=body, headers=bearer(other))).status_code == 202
    clock.advance(20)
    assert (await client.post("/runs", json=body, headers=bearer(key))).status_code == 202
    for response in created:
        await wait_until_finished(app, response.json()["id"])


async def test_queued_runs_are_limited_per_key_and_per_pipeline(
    limited: tuple[FastAPI, httpx.AsyncClient], store_url: str
) -> None:
    app, client = limited
    services_of(app).quotas.runs.per_minute = None  # this test is about the queue
    alice = await create_key(app, "alice", "run", "read")
    bob = await create_key(app, "bob", "run", "read")
    gate = uuid.uuid4().hex
    held = {"pipeline": "controlled", "params": {"gate_at": "a", "gate": gate}}
    runs = [(await client.post("/runs", json=held, headers=bearer(alice))).json()["id"]]
    try:
        assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)  # the one worker
        queued = {"pipeline": "controlled"}
        for key in (alice, alice, bob):
            response = await client.post("/runs", json=queued, headers=bearer(key))
            assert response.status_code == 202, response.text
            runs.append(response.json()["id"])
        counts = table_counts(store_url, TABLES)

        by_key = await client.post("/runs", json=queued, headers=bearer(alice))
        by_pipeline = await client.post("/runs", json=queued, headers=bearer(bob))
        after = table_counts(store_url, TABLES)
        other_pipeline = await client.post(
            "/runs", json={"pipeline": "NOOP_10"}, headers=bearer(bob)
        )

        assert_429(by_key, "queue-full")
        assert "this key" in by_key.json()["detail"]
        assert_429(by_pipeline, "queue-full")
        assert "pipeline 'controlled'" in by_pipeline.json()["detail"]
        assert after == counts
        assert other_pipeline.status_code == 202
        runs.append(other_pipeline.json()["id"])
    finally:
        GATES.open(gate)
    for run_id in runs:
        assert await wait_until_finished(app, run_id) == "succeeded"


async def test_params_over_the_limit_are_a_413_and_nothing_is_stored(
    limited: tuple[FastAPI, httpx.AsyncClient], store_url: str
) -> None:
    app, client = limited
    key = await create_key(app, "runner", "run")
    counts = table_counts(store_url, TABLES)

    response = await client.post(
        "/runs", json={"pipeline": "NOOP_10", "params": {"x": "y" * 300}}, headers=bearer(key)
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert "200" in response.json()["detail"]
    assert table_counts(store_url, TABLES) == counts


async def test_a_streams_slot_is_given_back_when_the_stream_ends(
    limited: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited
    key = await create_key(app, "viewer", "run", "read")
    run_id = (await client.post("/runs", json={"pipeline": "NOOP_10"}, headers=bearer(key))).json()[
        "id"
    ]
    assert await wait_until_finished(app, run_id) == "succeeded"

    for _ in range(3):  # one slot: each stream (it ends with its run) gives it back
        response = await client.get(f"/runs/{run_id}/events", headers=bearer(key))
        assert response.status_code == 200
        assert "run.succeeded" in response.text
    assert services_of(app).quotas.streams.held(key.split("_")[1]) == 0


async def test_the_stream_after_a_keys_most_is_a_429(settings: Settings, store_url: str) -> None:
    alice, bob = await stored_keys(store_url, ("alice", ("read",)), ("bob", ("read",)))
    app = create_app(settings.model_copy(update={"max_streams_per_key": 2}))
    async with (
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT, headers=bearer(alice)) as client,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT) as browser,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT, headers=bearer(bob)) as other,
        open_stream(client, "/events"),
        open_stream(client, "/events", params={"type": "run.failed"}),
    ):
        third = await client.get("/events")
        token = (await client.post("/events/stream-token")).json()["token"]
        by_token = await browser.get("/events", params={"token": token})
        async with open_stream(other, "/events") as stream:  # another key's streams
            assert await stream.read_until(lambda e: e["retry"] is not None, WAIT)

    assert_429(third)
    assert "2 event streams" in third.json()["detail"]
    assert_429(by_token)
