"""The bus of PostgreSQL replicas on its own (``LogEventBus`` told of commits by
``EventListener``): events of any writer, from the log, once each.

Two stores on one database stand for two replicas: ``other`` writes as another replica
would, ``local`` is the store of the process whose bus is under test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from app.main import create_app
from app.runs.bus import EventBus, Subscription
from app.runs.log_bus import LogEventBus
from app.settings import Settings
from app.states import RunStatus
from app.store import pg_listener
from app.store.pg_listener import APPLICATION_NAME, EventListener
from app.store.postgres import PostgresStore
from app.store.records import Change, EventRow, NewRun
from tests.databases import database_url

from .conftest import services_of

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds a test waits for what it expects
STARTED = Change("run.started", expect=frozenset({RunStatus.queued}),
                 run={"status": RunStatus.running})  # fmt: skip


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with database_url("postgres", tmp_path) as created:
        yield created


@asynccontextmanager
async def started(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def running_bus(store: PostgresStore) -> AsyncIterator[LogEventBus]:
    bus = LogEventBus(store, EventListener(store.dsn))
    await bus.start()
    try:
        yield bus
    finally:
        bus.close()
        await bus.stop()


async def take(subscription: Subscription, count: int) -> list[EventRow]:
    """The next ``count`` events of ``subscription``, waiting at most ``WAIT`` seconds."""
    events = []
    async with asyncio.timeout(WAIT):
        while len(events) < count:
            event = await subscription.get()
            assert event is not None, "the bus closed"
            events.append(event)
    return events


async def write_a_run(store: PostgresStore, logs: int) -> list[EventRow]:
    run, queued = await store.create_run(NewRun("p", {}, {}, ()))
    assert queued is not None
    started_event = await store.apply(run.id, STARTED)
    lines = await store.apply_all(run.id, [Change("step.log", {"n": n}) for n in range(logs)])
    return [queued, started_event, *lines]


async def listener_pids(connection: asyncpg.Connection[asyncpg.Record]) -> list[int]:
    """The backends of this process's listeners on the test's database."""
    records = await connection.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE $1",
        f"{APPLICATION_NAME} {os.getpid()}@%",
    )
    return [record["pid"] for record in records]


async def test_events_of_every_writer_arrive_once_each_in_global_order(url: str) -> None:
    async with (
        started(url) as local,
        started(url) as other,
        running_bus(local) as bus,
        bus.subscribe() as everything,
    ):
        written = []
        for writer in (other, local, other):
            events = await write_a_run(writer, logs=3)
            if writer is local:
                for event in events:  # as the service does after each commit
                    bus.publish(event)
            written += events

        delivered = await take(everything, len(written))
        late = await write_a_run(other, logs=0)  # nothing delivered twice came before it
        after = await take(everything, len(late))
        log = await local.all_events(0, 1000)

    assert delivered == sorted(written, key=lambda e: e.id)
    assert after == late
    assert delivered + after == log


async def test_a_run_subscription_gets_only_its_run_from_another_writer(url: str) -> None:
    async with started(url) as local, started(url) as other:
        run, _ = await other.create_run(NewRun("p", {}, {}, ()))  # before the bus starts
        async with running_bus(local) as bus, bus.subscribe(run.id) as mine:
            await write_a_run(other, logs=2)  # another run
            ours = [await other.apply(run.id, STARTED), await other.apply(run.id, Change("x"))]

            assert await take(mine, 2) == ours


async def test_a_listener_cut_off_reconnects_and_delivers_what_committed_meanwhile(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first reconnection attempt 0.5 to 1 s after the cut: the writes below (a few
    # milliseconds) commit while nobody listens, and only the catch-up can deliver them.
    monkeypatch.setattr(pg_listener, "BACKOFF_FIRST", 1.0)
    admin = await asyncpg.connect(PostgresStore(url).dsn)
    try:
        async with (
            started(url) as local,
            started(url) as other,
            running_bus(local) as bus,
            bus.subscribe() as everything,
        ):
            before = await write_a_run(other, logs=1)
            assert await take(everything, len(before)) == before
            [cut] = await listener_pids(admin)

            # Waits until the backend is gone: what commits next, no listener hears.
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", cut)
            meanwhile = [event for _ in range(3) for event in await write_a_run(other, 2)]
            delivered = await take(everything, len(meanwhile))

            assert delivered == meanwhile
            assert bus.feed.connected
            [again] = await listener_pids(admin)
            assert again != cut
            after = await write_a_run(other, logs=0)  # heard live again
            assert await take(everything, len(after)) == after
    finally:
        await admin.close()


def test_postgresql_gets_the_bus_of_every_replica_and_sqlite_keeps_the_in_process_one(
    tmp_path: Path,
) -> None:
    def bus_of(database_url: str) -> EventBus:
        settings = Settings(database_url=database_url, entry_points=False)
        return services_of(create_app(settings)).bus  # nothing connects before the start

    assert isinstance(bus_of("postgresql+asyncpg://u@db.invalid/runs"), LogEventBus)
    assert type(bus_of(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")) is EventBus
