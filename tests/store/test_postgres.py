"""What only the PostgreSQL store has: its URL, its column types, its migration lock, the
documents JSONB cannot hold as they are, and the announcement of every committed event."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import asyncpg
import pytest

from app.errors import InvalidTransition
from app.states import RunStatus
from app.store import SqliteStore, open_store
from app.store.migrate import head_revision
from app.store.postgres import EVENTS_CHANNEL, PostgresStore, postgres_dsn
from app.store.records import Change, NewRun
from tests.databases import POSTGRES, execute

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds a test waits for what it expects


def test_the_store_is_chosen_by_the_url() -> None:
    assert isinstance(open_store("sqlite+aiosqlite:///./x.db"), SqliteStore)
    assert isinstance(open_store("postgresql+asyncpg://u:p@db:6543/runs"), PostgresStore)
    assert postgres_dsn("postgresql+asyncpg://u:p@db:6543/runs") == "postgresql://u:p@db:6543/runs"


@pytest.mark.parametrize(
    "url", ["postgresql://u@db/runs", "postgresql+psycopg://u@db/runs", "mysql+aiomysql://db/x"]
)
def test_other_urls_are_refused_naming_the_ones_that_work(url: str) -> None:
    with pytest.raises(ValueError, match="STEPLINE_DATABASE_URL") as raised:
        open_store(url)

    assert "sqlite+aiosqlite:///" in str(raised.value)
    assert "postgresql+asyncpg://" in str(raised.value)


async def test_documents_are_jsonb_and_times_are_timestamptz(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.start()
    await store.close()

    columns = execute(
        postgres_url,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public'",
    )
    types = {(table, column): kind for table, column, kind in columns}

    for column in ("params", "labels", "error", "result", "checkpoint"):
        assert types["runs", column] == "jsonb"
    for column in ("error", "rollback_error", "result_data", "rollback_data"):
        assert types["step_runs", column] == "jsonb"
    assert types["events", "data"] == "jsonb"
    for table, column in (("runs", "created_at"), ("runs", "lease_expires_at"),
                          ("step_runs", "started_at"), ("events", "created_at")):  # fmt: skip
        assert types[table, column] == "timestamp with time zone"
    assert types["events", "id"] == "bigint"


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(3)]

    await asyncio.gather(*(store.start() for store in stores))
    try:
        assert execute(postgres_url, "SELECT version_num FROM alembic_version") == [
            (head_revision(),)
        ]
        for store in stores:
            assert await store.check_ready() is None
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_database_that_went_away_is_not_ready(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.start()
    try:
        name = postgres_url.rsplit("/", 1)[1]
        execute(POSTGRES, f'DROP DATABASE "{name}" WITH (FORCE)')

        problem = await store.check_ready()

        assert problem is not None
        assert problem.startswith("database unreachable")
    finally:
        await store.close()


async def test_nul_characters_and_nan_are_stored_as_jsonb_allows(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.start()
    try:
        params = {"line": "a\x00b", "escaped": "\\u0000", "loss": math.nan, "inf": math.inf}
        run, _ = await store.create_run(NewRun("p", params, {}, ()))

        stored = await store.get_run(run.id)

        assert stored.params == {
            "line": "a\ufffdb",
            "escaped": "\\u0000",
            "loss": None,
            "inf": None,
        }
    finally:
        await store.close()


async def test_every_committed_event_is_announced_with_its_ids_only_in_commit_order(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url)
    await store.start()
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_dsn(postgres_url))
    try:
        await listener.add_listener(
            EVENTS_CHANNEL,
            lambda _c, _pid, _channel, payload: heard.put_nowait(json.loads(payload)),
        )
        run, queued = await store.create_run(NewRun("p", {"secret": "not announced"}, {}, ()))
        assert queued is not None
        with pytest.raises(InvalidTransition):  # rolled back: nothing to announce
            await store.apply(run.id, Change("run.started", expect=frozenset({RunStatus.failed})))
        both = await store.apply_all(run.id, [Change("step.log", {"line": "x"})] * 2)

        async with asyncio.timeout(WAIT):
            announced = [await heard.get() for _ in range(3)]

        assert announced == [{"id": e.id, "run_id": run.id, "seq": e.seq} for e in (queued, *both)]
        assert [e.seq for e in (queued, *both)] == [1, 2, 3]
    finally:
        await listener.close()
        await store.close()
