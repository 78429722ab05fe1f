"""Ownership: a claim fences off the previous owner, whose writes then change nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.errors import LeaseLost
from app.states import RunStatus
from app.store.records import Change, NewRun, NewStep
from app.store.sqlite import SqliteStore

from .conftest import WAIT, services_of
from .pipelines import GATES

pytestmark = pytest.mark.anyio

LEASE = 30.0
AFTER_EXPIRY = timedelta(seconds=LEASE + 1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(f"sqlite+aiosqlite:///{tmp_path / 'fencing.db'}")
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


async def queued_run(store: SqliteStore) -> str:
    run, _event = await store.create_run(
        NewRun("p", {}, {}, (NewStep("a", 0.5, True), NewStep("b", 0.5, True)))
    )
    return run.id


async def test_claims_give_an_owner_a_lease_and_a_new_epoch(store: SqliteStore) -> None:
    run_id = await queued_run(store)

    [(run, event)] = await store.claim_queued(5, "worker-a", LEASE)

    assert (run.id, run.status, run.owner, run.epoch) == (run_id, RunStatus.running, "worker-a", 1)
    assert run.lease_expires_at is not None
    assert run.lease_expires_at > datetime.now(UTC)
    assert event.type == "run.started"
    assert await store.claim_queued(5, "worker-b", LEASE) == []


async def test_a_live_lease_is_not_taken_over(store: SqliteStore) -> None:
    await queued_run(store)
    await store.claim_queued(1, "worker-a", LEASE)

    assert await store.claim_orphans(10, "worker-b", LEASE) == []


async def test_after_a_takeover_the_stale_owner_writes_nothing_and_is_told(
    store: SqliteStore,
) -> None:
    run_id = await queued_run(store)
    [(mine, _)] = await store.claim_queued(1, "worker-a", LEASE)
    later = datetime.now(UTC) + AFTER_EXPIRY
    [taken] = await store.claim_orphans(10, "worker-b", LEASE, now=later)
    before = await store.get_run(run_id)
    events_before = await store.run_events(run_id, 0, 100)
    step_started = Change("step.started", {"step": "a"}, steps={0: {"status": "running"}})

    with pytest.raises(LeaseLost, match="stale"):
        await store.apply(run_id, step_started, epoch=mine.epoch)
    lost = await store.renew_leases("worker-a", {run_id: mine.epoch}, LEASE)

    assert (taken.owner, taken.epoch) == ("worker-b", mine.epoch + 1)
    assert lost == {run_id}
    assert await store.get_run(run_id) == before
    assert await store.run_events(run_id, 0, 100) == events_before
    assert (await store.apply(run_id, step_started, epoch=taken.epoch)).seq == before.last_seq + 1
    assert await store.renew_leases("worker-b", {run_id: taken.epoch}, LEASE) == set()


async def test_a_released_run_can_be_taken_at_once(store: SqliteStore) -> None:
    await queued_run(store)
    [(mine, _)] = await store.claim_queued(1, "worker-a", LEASE)

    assert await store.release(mine.id, mine.epoch) is True
    [taken] = await store.claim_orphans(10, "worker-b", LEASE)

    assert (taken.id, taken.owner, taken.epoch) == (mine.id, "worker-b", mine.epoch + 1)
    assert await store.release(mine.id, mine.epoch) is False


async def test_a_worker_whose_run_was_taken_over_stops_working_on_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    gate = f"fencing-{uuid.uuid4().hex}"
    body = {"pipeline": "controlled", "params": {"gate_at": "b", "gate": gate}}
    run_id = (await client.post("/runs", json=body)).json()["id"]
    assert await asyncio.to_thread(GATES.reached(gate).wait, WAIT)
    services = services_of(app)
    store = services.store
    later = datetime.now(UTC) + timedelta(seconds=services.settings.lease_seconds + 1)
    [taken] = await store.claim_orphans(10, "another-worker", 5.0, now=later)
    seen = len(await store.run_events(run_id, 0, 1000))

    GATES.open(gate)  # the stale worker finishes step b and tries to record it
    async with asyncio.timeout(WAIT):
        await services.runs.workers.drain(WAIT)

    run = await store.get_run(run_id)
    assert (run.owner, run.epoch, run.status) == ("another-worker", taken.epoch, "running")
    assert len(await store.run_events(run_id, 0, 1000)) == seen
    assert [s.status for s in run.steps] == ["succeeded", "running", "pending"]
