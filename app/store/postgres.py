"""The scale-out store: PostgreSQL through asyncpg, plain SQL on a connection pool.

Every write is one transaction. Concurrency is the database's business, so several API
replicas can share one database:

- A run's row is locked (``FOR NO KEY UPDATE``) before its status is checked and its next
  ``seq`` taken, so concurrent writers of one run queue up and its events stay gapless.
- Claims lock the runs they take with ``SKIP LOCKED``: two workers never wait for, nor take,
  the same run.
- A reader that resumes after event id ``n`` (``GET /events``) must never see an id larger
  than that of an event still to commit, or it would skip that event for good. Writers take
  a shared transaction-scoped advisory lock just before drawing an event id and hold it to
  their commit (shared, so that writers do not queue on it); readers of the global order take the
  same lock exclusively, which waits out every writer holding an id, then read. It is the
  last lock a writer takes, and the readers hold no other, so it cannot deadlock.
- Each event is announced on ``EVENTS_CHANNEL`` with ``NOTIFY`` in the transaction that
  writes it, so PostgreSQL sends it at the commit, or never if the transaction rolls back:
  every writer, whichever replica or worker it runs in, tells every listening replica
  (``app.store.pg_listener``) that the log has grown. The price: PostgreSQL passes the
  commits of notifying transactions one at a time, to queue announcements in commit order.
- Idempotency keys rely on the table's primary key: of two concurrent creates with one key,
  the second waits for the first to commit, then returns its run.

The schema is the Alembic one (``app.store.schema``); migrations run at ``start`` through
SQLAlchemy's asyncpg dialect, one replica at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from pydantic_core import to_json
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.errors import IdempotencyConflict, InvalidTransition, LeaseLost, RunNotFound
from app.ids import new_run_id
from app.states import RollbackStatus, RunStatus, StepStatus, can_transition
from app.store import _postgres_security as security
from app.store.claims import claimable, run_async
from app.store.migrate import head_revision, upgrade_async
from app.store.records import (
    ApiKeyRow,
    Change,
    EventRow,
    NewApiKey,
    NewRun,
    RunFilter,
    RunRow,
    StepRow,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "APPLICATION_NAME", "EVENTS_CHANNEL", "PostgresStore", "application_name", "postgres_dsn",
]  # fmt: skip

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

POOL_MIN = 1
POOL_MAX = 10
ACQUIRE_TIMEOUT = 30.0  # seconds a request waits for a free connection before it fails
READY_TIMEOUT = 5.0  # seconds a readiness probe waits for the database
CLOSE_TIMEOUT = 10.0  # seconds ``close`` waits for connections still in use
CREATE_ATTEMPTS = 3

# Advisory lock keys ("Stepline" and "Stepline" + 1 in ASCII): one keeps readers of the
# global event order behind every writer holding an id, the other lets one replica at a
# time migrate.
EVENT_ORDER_LOCK = 0x537465706C696E65
MIGRATION_LOCK = EVENT_ORDER_LOCK + 1
CAPPED_CLAIMS_LOCK = EVENT_ORDER_LOCK + 3
# Every committed event is announced here, with its ids only: the log stays the one source
# of the event itself, and a payload never nears NOTIFY's 8000-byte limit.
EVENTS_CHANNEL = "stepline_events"

_RUN_COLUMNS = (
    "id", "pipeline", "status", "params", "labels", "progress", "rollback_progress", "error",
    "result", "summary", "created_at", "started_at", "finished_at", "updated_at", "last_seq",
    "cancel_requested", "rollback_on_cancel", "owner", "lease_expires_at", "epoch",
    "recovery_attempts", "checkpoint", "owner_key_id",
)  # fmt: skip
_STEP_COLUMNS = (
    "index", "name", "weight", "can_rollback", "status", "progress", "attempts", "started_at",
    "finished_at", "duration_seconds", "error", "rollback_status", "rollback_started_at",
    "rollback_finished_at", "rollback_error", "result_data", "rollback_data",
)  # fmt: skip
# How the store's connections show in pg_stat_activity, followed by "<pid>@<host>".
APPLICATION_NAME = "stepline"
MAX_APPLICATION_NAME = 63  # PostgreSQL's limit (NAMEDATALEN - 1)
_EVENT_COLUMNS = "id, run_id, seq, type, pipeline, created_at, data"
# Runs with their steps in one statement, so that a read sees one snapshot without a
# transaction of its own; step columns get a prefix, as several names clash with the run's.
_RUN_WITH_STEPS = ", ".join(
    [f"r.{c}" for c in _RUN_COLUMNS] + [f's."{c}" AS "step_{c}"' for c in _STEP_COLUMNS]
)
_BOOL_COLUMNS = frozenset({"cancel_requested", "rollback_on_cancel", "can_rollback"})
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class _KeyTaken(Exception):
    """Another transaction stored the same idempotency key first: look it up again."""


def postgres_dsn(url: str) -> str | None:
    """The asyncpg DSN of a ``postgresql+asyncpg://`` URL, or None for any other URL."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql+asyncpg":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def json_dumps(value: Any) -> str:
    """JSON for stored documents, as the SQLite store writes it (values JSON cannot hold are
    stored as their ``str``), except where JSONB is stricter: NaN and infinities become
    null, and a NUL character (which JSONB refuses) becomes U+FFFD."""
    text = to_json(value, fallback=str, inf_nan_mode="null").decode()
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", text)
    return text


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # A naive time means local time, as on SQLite (asyncpg would take it for UTC).
    return value.astimezone(UTC)


def _to_db(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _BOOL_COLUMNS:
        return bool(value)  # SQLite takes 0 and 1 here; so does this store
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, Enum):
        return value.value
    return value


def application_name(role: str = APPLICATION_NAME) -> str:
    """``role`` and the process that holds the connection (``<pid>@<host>``), so that an
    operator can tell whose each connection (and each running statement) is."""
    return f"{role} {os.getpid()}@{socket.gethostname()}"[:MAX_APPLICATION_NAME]


async def _init_connection(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=json_dumps, decoder=json.loads
    )


def _step(record: asyncpg.Record) -> StepRow:
    return StepRow(**{c: record[f"step_{c}"] for c in _STEP_COLUMNS})


def _runs(records: Iterable[asyncpg.Record]) -> list[RunRow]:
    """Runs from the rows of ``_RUN_WITH_STEPS`` (one per step), in the rows' order."""
    columns: dict[str, dict[str, Any]] = {}
    steps: dict[str, list[StepRow]] = {}
    for record in records:
        run_id = record["id"]
        if run_id not in columns:
            columns[run_id] = {c: record[c] for c in _RUN_COLUMNS}
            steps[run_id] = []
        if record["step_index"] is not None:
            steps[run_id].append(_step(record))
    return [
        RunRow(**{**row, "status": RunStatus(row["status"])}, steps=tuple(steps[run_id]))
        for run_id, row in columns.items()
    ]


def _event(record: asyncpg.Record) -> EventRow:
    return EventRow(**dict(record.items()))


async def _read_run(conn: Connection, run_id: str) -> RunRow:
    records = await conn.fetch(
        f"SELECT {_RUN_WITH_STEPS} FROM runs r "
        'LEFT JOIN step_runs s ON s.run_id = r.id WHERE r.id = $1 ORDER BY s."index"',
        run_id,
    )
    if not records:
        raise RunNotFound(f"no run with id {run_id!r}")
    return _runs(records)[0]


async def _insert_event(
    conn: Connection,
    run_id: str,
    seq: int,
    type_: str,
    pipeline: str,
    now: datetime,
    data: dict[str, Any],
) -> EventRow:
    # Held to the commit: readers of the global order wait for this event (see the module).
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", EVENT_ORDER_LOCK)
    # The announcement rides in the same statement (no extra round trip) and in the same
    # transaction, so it goes out at the commit, or not at all.
    event_id = await conn.fetchval(
        "WITH e AS (INSERT INTO events (run_id, seq, type, pipeline, created_at, data) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, run_id, seq) "
        "SELECT id, pg_notify($7, json_build_object('id', id, 'run_id', run_id, 'seq', seq)"
        "::text) FROM e",
        run_id, seq, type_, pipeline, now, data, EVENTS_CHANNEL,
    )  # fmt: skip
    return EventRow(event_id, run_id, seq, type_, pipeline, now, data)


async def _take(conn: Connection, run_id: str, owner: str, until: datetime) -> None:
    await conn.execute(
        "UPDATE runs SET owner = $1, lease_expires_at = $2, epoch = epoch + 1 WHERE id = $3",
        owner, until, run_id,
    )  # fmt: skip


def _assignments(values: Mapping[str, Any], first: int) -> str:
    return ", ".join(f'"{column}" = ${n}' for n, column in enumerate(values, start=first))


async def _apply(
    conn: Connection, run_id: str, change: Change, epoch: int | None = None
) -> EventRow:
    current = await conn.fetchrow(
        "SELECT status, last_seq, progress, pipeline, epoch FROM runs WHERE id = $1 "
        "FOR NO KEY UPDATE",
        run_id,
    )
    if current is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    if epoch is not None and current["epoch"] != epoch:
        raise LeaseLost(
            f"run {run_id} is at epoch {current['epoch']}; a write for epoch {epoch} is stale"
        )
    status = RunStatus(current["status"])
    if change.expect is not None and status not in change.expect:
        raise InvalidTransition(
            f"run {run_id} is {status.value}; {change.event} needs "
            + " or ".join(sorted(s.value for s in change.expect)),
            run_status=status.value,
        )
    values = dict(change.run)
    if status in change.moves:
        values["status"] = change.moves[status]
    new_status = values.get("status")
    if new_status is not None:
        new_status = RunStatus(new_status)
        if new_status != status and not can_transition(status, new_status):
            raise InvalidTransition(
                f"run {run_id} cannot go from {status.value} to {new_status.value}",
                run_status=status.value,
            )
        values["status"] = new_status
    now, seq = _now(), current["last_seq"] + 1
    values["last_seq"], values["updated_at"] = seq, now
    await conn.execute(
        f"UPDATE runs SET {_assignments(values, 2)} WHERE id = $1",
        run_id,
        *(_to_db(k, v) for k, v in values.items()),
    )
    for index, step_values in change.steps.items():
        if step_values:
            await conn.execute(
                f"UPDATE step_runs SET {_assignments(step_values, 3)} "
                'WHERE run_id = $1 AND "index" = $2',
                run_id,
                index,
                *(_to_db(k, v) for k, v in step_values.items()),
            )
    data = {
        "status": (new_status or status).value,
        "progress": values.get("progress", current["progress"]),
        **change.data,
    }
    return await _insert_event(conn, run_id, seq, change.event, current["pipeline"], now, data)


async def _schema_revision(
    conn: Connection | asyncpg.Connection[asyncpg.Record],
) -> str | None:
    try:
        revision = await conn.fetchval(
            "SELECT version_num FROM alembic_version", timeout=READY_TIMEOUT
        )
    except asyncpg.UndefinedTableError:
        return None
    return None if revision is None else str(revision)


class PostgresStore:
    """Runs, steps and events in a PostgreSQL database (see ``app.store.base.Store``)."""

    def __init__(self, url: str) -> None:
        dsn = postgres_dsn(url)
        if dsn is None:
            raise ValueError(f"{url!r} is not a postgresql+asyncpg URL")
        self.url, self._dsn = url, dsn
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def start(self) -> None:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            await upgrade_async(engine, before=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        finally:
            await engine.dispose()
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            init=_init_connection,
            server_settings={"application_name": application_name()},
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                pool.terminate()  # a connection still in use must not hold up shutdown

    @property
    def dsn(self) -> str:
        """The asyncpg DSN, for a connection of one's own (a listener)."""
        return self._dsn

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("the store is not started")
        return self._pool

    # -- writes --------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[RunRow, EventRow | None]:
        for _ in range(CREATE_ATTEMPTS):
            try:
                async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
                    return await self._create(conn, run)
            except _KeyTaken:
                continue  # the key's run is committed now: the next attempt finds it
        raise RuntimeError(f"idempotency key {run.idempotency_key!r} keeps changing hands")

    async def _create(self, conn: Connection, run: NewRun) -> tuple[RunRow, EventRow | None]:
        if run.idempotency_key is not None:
            found = await conn.fetchrow(
                "SELECT run_id, request_hash FROM idempotency_keys WHERE key = $1",
                run.idempotency_key,
            )
            if found is not None:
                if found["request_hash"] != run.request_hash:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different request body",
                        run_id=found["run_id"],
                    )
                return await _read_run(conn, found["run_id"]), None
        await security.check_queue(conn, run)
        now, run_id = _now(), new_run_id()
        await conn.execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES "
            "($1, $2, $3, $4, $5, 0.0, NULL, NULL, NULL, NULL, $6, NULL, NULL, $6, 1, false, "
            "true, NULL, NULL, 0, 0, NULL, $7)",
            run_id, run.pipeline, RunStatus.queued.value, run.params, run.labels, now,
            run.owner_key_id,
        )  # fmt: skip
        if run.steps:
            await conn.execute(
                'INSERT INTO step_runs (run_id, "index", name, weight, can_rollback, status, '
                "progress, attempts, rollback_status) "
                "SELECT $1, s.i, s.name, s.weight, s.can_rollback, $2, 0.0, 0, $3 "
                "FROM unnest($4::int[], $5::text[], $6::float8[], $7::bool[]) "
                "AS s(i, name, weight, can_rollback)",
                run_id, StepStatus.pending.value, RollbackStatus.not_needed.value,
                list(range(len(run.steps))), [s.name for s in run.steps],
                [s.weight for s in run.steps], [s.can_rollback for s in run.steps],
            )  # fmt: skip
        if run.idempotency_key is not None:
            # Before the event: a key taken meanwhile undoes this transaction, and an event
            # id it had drawn would leave a gap in the log.
            stored = await conn.fetchval(
                "INSERT INTO idempotency_keys (key, request_hash, run_id, created_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING true",
                run.idempotency_key, run.request_hash, run_id, now,
            )  # fmt: skip
            if stored is None:
                raise _KeyTaken
        data = {"status": RunStatus.queued.value, "progress": 0.0}
        event = await _insert_event(conn, run_id, 1, "run.queued", run.pipeline, now, data)
        steps = tuple(
            StepRow(i, s.name, s.weight, s.can_rollback, StepStatus.pending.value, 0.0, 0,
                    None, None, None, None, RollbackStatus.not_needed.value, None, None, None)
            for i, s in enumerate(run.steps)
        )  # fmt: skip
        created = RunRow(
            id=run_id, pipeline=run.pipeline, status=RunStatus.queued, params=run.params,
            labels=run.labels, progress=0.0, rollback_progress=None, error=None, result=None,
            summary=None, created_at=now, started_at=None, finished_at=None, updated_at=now,
            last_seq=1, cancel_requested=False, rollback_on_cancel=True,
            owner_key_id=run.owner_key_id, steps=steps,
        )  # fmt: skip
        return created, event

    async def apply(self, run_id: str, change: Change, epoch: int | None = None) -> EventRow:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            return await _apply(conn, run_id, change, epoch)

    async def apply_all(
        self, run_id: str, changes: Sequence[Change], epoch: int | None = None
    ) -> list[EventRow]:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            return [await _apply(conn, run_id, change, epoch) for change in changes]

    async def claim_queued(
        self,
        limit: int,
        owner: str,
        lease_seconds: float,
        limits: Mapping[str, int] | None = None,
    ) -> list[tuple[RunRow, EventRow]]:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            if limits:
                # Claims that count runs against caps take turns, cluster-wide, until they
                # commit: two claimers could otherwise both see room for the last run.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", CAPPED_CLAIMS_LOCK)

                async def query(sql: str, params: list[Any]) -> list[Any]:
                    return list(await conn.fetch(sql, *params))

                lock = " FOR NO KEY UPDATE SKIP LOCKED"
                plan = claimable(limit, limits, numbered=True, lock=lock)
                ids = await run_async(plan, query)
            else:
                rows = await conn.fetch(
                    "SELECT id FROM runs WHERE status = $1 ORDER BY id LIMIT $2 "
                    "FOR NO KEY UPDATE SKIP LOCKED",
                    RunStatus.queued.value,
                    limit,
                )
                ids = [row[0] for row in rows]
            claimed = []
            for run_id in ids:
                now = _now()
                await _take(conn, run_id, owner, now + timedelta(seconds=lease_seconds))
                change = Change(
                    "run.started",
                    {"owner": owner},
                    expect=frozenset({RunStatus.queued}),
                    run={"status": RunStatus.running, "started_at": now},
                )
                event = await _apply(conn, run_id, change)
                claimed.append((await _read_run(conn, run_id), event))
            return claimed

    async def claim_orphans(
        self, limit: int, owner: str, lease_seconds: float, now: datetime | None = None
    ) -> list[RunRow]:
        """Take over up to ``limit`` unfinished runs whose owner's lease has run out (or
        that were released); each gets a new epoch, so the old owner can write no more."""
        moment = _utc(now) if now is not None else _now()
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            ids = [
                record["id"]
                for record in await conn.fetch(
                    "SELECT id FROM runs WHERE status = ANY($1::text[]) AND "
                    "(lease_expires_at IS NULL OR lease_expires_at < $2) "
                    "AND (owner IS NULL OR owner <> $3) ORDER BY id LIMIT $4 "
                    "FOR NO KEY UPDATE SKIP LOCKED",
                    [RunStatus.running.value, RunStatus.rolling_back.value,
                     RunStatus.cancelling.value], moment, owner, limit,
                )
            ]  # fmt: skip
            for run_id in ids:
                await _take(conn, run_id, owner, moment + timedelta(seconds=lease_seconds))
            return [await _read_run(conn, run_id) for run_id in ids]

    async def renew_leases(
        self,
        owner: str,
        epochs: Mapping[str, int],
        lease_seconds: float,
        *,
        while_last_seq: Mapping[str, int] | None = None,
    ) -> set[str]:
        """Extend the leases of the runs ``owner`` holds (with ``while_last_seq``, only
        those that have written nothing since); return the others."""
        if not epochs:
            return set()
        until = _now() + timedelta(seconds=lease_seconds)
        ids = list(epochs)
        seqs = None if while_last_seq is None else [while_last_seq.get(i) for i in ids]
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            renewed = await conn.fetch(
                "UPDATE runs SET lease_expires_at = $1 "
                "FROM unnest($2::text[], $3::int[], $5::int[]) AS held(id, epoch, seq) "
                "WHERE runs.id = held.id AND runs.epoch = held.epoch AND runs.owner = $4 "
                "AND ($5::int[] IS NULL OR runs.last_seq = held.seq) "
                "RETURNING runs.id",
                until, ids, [epochs[i] for i in ids], owner, seqs,
            )  # fmt: skip
        return set(epochs) - {record["id"] for record in renewed}

    async def release(self, run_id: str, epoch: int) -> bool:
        """Give up a run without finishing it, so that recovery can take it at once."""
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            released = await conn.fetchval(
                "UPDATE runs SET owner = NULL, lease_expires_at = NULL "
                "WHERE id = $1 AND epoch = $2 RETURNING true",
                run_id, epoch,
            )  # fmt: skip
        return released is not None

    # -- reads ---------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRow:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await _read_run(conn, run_id)

    async def cancel_request(self, run_id: str) -> bool | None:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            found = await conn.fetchrow(
                "SELECT cancel_requested, rollback_on_cancel FROM runs WHERE id = $1", run_id
            )
        if found is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return bool(found[1]) if found[0] else None

    async def list_runs(self, filters: RunFilter, before: str | None, limit: int) -> list[RunRow]:
        where: list[str] = ["true"]
        params: list[Any] = []

        def condition(sql: str, value: Any) -> None:
            params.append(value)
            where.append(sql.format(f"${len(params)}"))

        if before is not None:
            condition("id < {}", before)
        if filters.owner_key_id is not None:
            condition("owner_key_id = {}", filters.owner_key_id)
        if filters.pipeline is not None:
            condition("pipeline = {}", filters.pipeline)
        if filters.status is not None:
            condition("status = {}", filters.status.value)
        if filters.created_after is not None:
            condition("created_at >= {}", _utc(filters.created_after))
        if filters.created_before is not None:
            condition("created_at < {}", _utc(filters.created_before))
        if filters.labels:
            condition("labels @> {}::jsonb", dict(filters.labels))
        params.append(limit)
        sql = (
            f"WITH page AS (SELECT * FROM runs WHERE {' AND '.join(where)} "
            f"ORDER BY id DESC LIMIT ${len(params)}) "
            f"SELECT {_RUN_WITH_STEPS} FROM page r LEFT JOIN step_runs s ON s.run_id = r.id "
            'ORDER BY r.id DESC, s."index"'
        )
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return _runs(await conn.fetch(sql, *params))

    async def run_events(self, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        return await self._events(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = $1 AND seq > $2 "
            "ORDER BY seq LIMIT $3",
            (run_id, after_seq, limit),
        )

    async def all_events(
        self,
        after_id: int,
        limit: int,
        pipelines: Sequence[str] = (),
        types: Sequence[str] = (),
        owner_key_id: str | None = None,
    ) -> list[EventRow]:
        where: list[str] = ["id > $1"]
        params: list[Any] = [after_id]
        if owner_key_id is not None:
            params.append(owner_key_id)
            where.append(f"run_id IN (SELECT id FROM runs WHERE owner_key_id = ${len(params)})")
        if pipelines:
            params.append(list(pipelines))
            where.append(f"pipeline = ANY(${len(params)}::text[])")
        if types:
            params.append(list(types))
            where.append(f"type = ANY(${len(params)}::text[])")
        params.append(limit)
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY id LIMIT ${len(params)}"
        )
        async with self._settled() as conn:
            return [_event(record) for record in await conn.fetch(sql, *params)]

    async def last_event_id(self) -> int:
        async with self._settled() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM events"))

    @contextlib.asynccontextmanager
    async def _settled(self) -> AsyncIterator[Connection]:
        """A connection on which no event id is in flight: every id drawn so far is
        committed (or rolled back) and new ones wait, until the block ends."""
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", EVENT_ORDER_LOCK)
            yield conn

    async def run_logs(
        self, run_id: str, step: str | None, after_seq: int, limit: int
    ) -> list[EventRow]:
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = $1 AND type = 'step.log' "
            "AND seq > $2"
        )
        params: list[Any] = [run_id, after_seq]
        if step is not None:
            params.append(step)
            sql += f" AND data->>'step' = ${len(params)}"
        params.append(limit)
        return await self._events(sql + f" ORDER BY seq LIMIT ${len(params)}", params)

    async def _events(self, sql: str, params: Sequence[Any]) -> list[EventRow]:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return [_event(record) for record in await conn.fetch(sql, *params)]

    async def count_runs(self) -> dict[tuple[str, str], int]:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            records = await conn.fetch("SELECT pipeline, status, count(*) FROM runs GROUP BY 1, 2")
        return {(pipeline, status): count for pipeline, status, count in records}

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(self, key: NewApiKey) -> ApiKeyRow:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await security.create_key(conn, key, _now())

    async def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await security.find_key(conn, key_id)

    async def list_api_keys(self) -> list[ApiKeyRow]:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await security.list_keys(conn)

    async def revoke_api_key(self, id_or_name: str) -> ApiKeyRow | None:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            return await security.revoke_key(conn, id_or_name, _now())

    async def has_api_keys(self) -> bool:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return await security.has_keys(conn)

    async def server_secret(self, name: str, candidate: str) -> str:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            return await security.server_secret(conn, name, candidate, _now())

    async def use_stream_token(self, token_id: str, expires_at: datetime) -> bool:
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            return await security.use_token(conn, token_id, _utc(expires_at), _now())

    async def check_ready(self) -> str | None:
        try:
            if self._pool is None:  # not started (or closed): ask the database all the same
                conn = await asyncpg.connect(self._dsn, timeout=READY_TIMEOUT)
                try:
                    current = await _schema_revision(conn)
                finally:
                    await conn.close()
            else:
                async with self._pool.acquire(timeout=READY_TIMEOUT) as pooled:
                    current = await _schema_revision(pooled)
        except Exception as exc:
            return f"database unreachable: {type(exc).__name__}: {exc}"
        head = head_revision()
        if current != head:
            return f"database schema is at {current}, this version needs {head}"
        return None
