"""The embedded store: one SQLite file, plain ``sqlite3``, group-committed writes.

Writes run on the single writer thread (``GroupCommitWriter``): concurrent requests and
runs share commits, so a burst of them costs one ``fsync``. Reads that an index bounds (a
run, a page of its events, a key) run on the calling thread, and reads that may scan (run
lists, filtered event feeds, counts) on a few reader threads; each thread reads on its own
connection, and WAL lets them read while the writer writes. The schema is the Alembic one
(``app.store.schema``), so this store and ``SqlStore`` read and write the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import to_json
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from app.errors import IdempotencyConflict, InvalidTransition, LeaseLost, RunNotFound
from app.ids import new_run_id
from app.states import RollbackStatus, RunStatus, StepStatus, can_transition
from app.store import _sqlite_security as security
from app.store._sqlite_time import moment, stamp
from app.store.claims import claimable, run_sync
from app.store.migrate import head_revision, upgrade_sync
from app.store.records import (
    ApiKeyRow,
    Change,
    EventRow,
    NewApiKey,
    NewRun,
    NewStep,
    RunFilter,
    RunRow,
    StepRow,
)
from app.store.writer import GroupCommitWriter, connect

__all__ = ["SqliteStore", "sqlite_path"]

T = TypeVar("T")
READERS = 4
_RUN_COLUMNS = (
    "id, pipeline, status, params, labels, progress, rollback_progress, error, result, "
    "summary, created_at, started_at, finished_at, updated_at, last_seq, cancel_requested, "
    "rollback_on_cancel, owner, lease_expires_at, epoch, recovery_attempts, checkpoint, "
    "owner_key_id"
)
_STEP_COLUMNS = (
    'run_id, "index", name, weight, can_rollback, status, progress, attempts, started_at, '
    "finished_at, duration_seconds, error, rollback_status, rollback_started_at, "
    "rollback_finished_at, rollback_error, result_data, rollback_data"
)
_EVENT_COLUMNS = "id, run_id, seq, type, pipeline, created_at, data"
_JSON_COLUMNS = frozenset(
    {"params", "labels", "error", "result", "rollback_error", "data", "checkpoint",
     "result_data", "rollback_data"}
)  # fmt: skip
_BOOL_COLUMNS = frozenset({"cancel_requested", "rollback_on_cancel", "can_rollback"})
_TIME_COLUMNS = frozenset(
    {"created_at", "started_at", "finished_at", "updated_at", "rollback_started_at",
     "rollback_finished_at", "lease_expires_at"}
)  # fmt: skip


def json_dumps(value: Any) -> str:
    """JSON for stored documents; values JSON cannot hold are stored as their ``str``.

    pydantic-core's encoder: four times as fast as the standard library's, and it is on
    every write.
    """
    return to_json(value, fallback=str).decode()


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL, or None if ``url`` is not a SQLite file URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return str(parsed.database)


def _now() -> datetime:
    return datetime.now(UTC)


def _to_db(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _JSON_COLUMNS:
        return json_dumps(value)
    if column in _TIME_COLUMNS:
        return stamp(value)
    if column in _BOOL_COLUMNS:
        return int(bool(value))
    if hasattr(value, "value"):  # enums
        return value.value
    return value


@functools.lru_cache(maxsize=64)
def _decoders_of(columns: tuple[str, ...]) -> tuple[Callable[[Any], Any] | None, ...]:
    return tuple(map(_converter, columns))


def _converter(column: str) -> Callable[[Any], Any] | None:
    if column in _JSON_COLUMNS:
        return json.loads
    if column in _TIME_COLUMNS:
        return moment
    if column in _BOOL_COLUMNS:
        return bool
    return None


def _columns(
    names: str, row_type: type[Any], skip: int = 0
) -> tuple[Callable[[Any], Any] | None, ...]:
    """How to decode each column of ``names`` (a SELECT list), in order. The list must name
    the fields of ``row_type`` in its order, after ``skip`` leading columns."""
    columns = tuple(name.strip().strip('"') for name in names.split(","))
    fields = tuple(field.name for field in dataclasses.fields(row_type))
    if columns[skip:] != fields:
        raise TypeError(f"{row_type.__name__} has fields {fields}, the query selects {columns}")
    return _decoders_of(columns)


# Steps and events are decoded by position: a run's steps and the events of a replay are
# the rows read most often, and a dict per row cost as much as the query.
_STEP_DECODERS = _columns(_STEP_COLUMNS, StepRow, skip=1)  # after run_id
_EVENT_DECODERS = _columns(_EVENT_COLUMNS, EventRow)


def _decoded(
    decoders: tuple[Callable[[Any], Any] | None, ...], values: tuple[Any, ...]
) -> list[Any]:
    return [
        value if decode is None or value is None else decode(value)
        for decode, value in zip(decoders, values, strict=True)
    ]


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    """A row as a dict by column name (runs, whose columns vary by query)."""
    names = tuple(column[0] for column in cursor.description)
    return dict(zip(names, _decoded(_decoders_of(names), values), strict=True))


def _step(values: tuple[Any, ...]) -> StepRow:
    """A step from a row of ``_STEP_COLUMNS``."""
    return StepRow(*_decoded(_STEP_DECODERS, values)[1:])


def _run(row: dict[str, Any], steps: tuple[StepRow, ...]) -> RunRow:
    row["status"] = RunStatus(row["status"])
    return RunRow(**row, steps=steps)


def _event(values: tuple[Any, ...]) -> EventRow:
    """An event from a row of ``_EVENT_COLUMNS``."""
    return EventRow(*_decoded(_EVENT_DECODERS, values))


_QUEUED = RunStatus.queued.value
_PENDING = StepStatus.pending.value
_NOT_NEEDED = RollbackStatus.not_needed.value


@functools.lru_cache(maxsize=1024)
def _plan_text(steps: tuple[NewStep, ...]) -> str:
    """A new run's steps as stored in ``runs.planned_steps``."""
    return json_dumps([[s.name, s.weight, s.can_rollback] for s in steps])


@functools.lru_cache(maxsize=1024)
def _planned_steps(plan: str) -> tuple[StepRow, ...]:
    """The steps of a queued run, all pending. Rows are immutable, and runs of one pipeline
    mostly share their steps, so runs created alike share these too."""
    return tuple(
        StepRow(i, name, weight, bool(can_rollback), _PENDING, 0.0, 0, None, None, None, None,
                _NOT_NEEDED, None, None, None)
        for i, (name, weight, can_rollback) in enumerate(json.loads(plan))
    )  # fmt: skip


def _materialise(conn: sqlite3.Connection, run_id: str) -> None:
    """Write the step rows of a run that has only its plan (a claimed run executes)."""
    found = conn.execute("SELECT planned_steps FROM runs WHERE id = ?", (run_id,)).fetchone()
    if found is None or found[0] is None:
        return
    conn.executemany(
        'INSERT INTO step_runs (run_id, "index", name, weight, can_rollback, status, '
        "progress, attempts, rollback_status) VALUES (?, ?, ?, ?, ?, ?, 0.0, 0, ?)",
        [(run_id, s.index, s.name, s.weight, s.can_rollback, _PENDING, _NOT_NEEDED)
         for s in _planned_steps(found[0])],
    )  # fmt: skip
    conn.execute("UPDATE runs SET planned_steps = NULL WHERE id = ?", (run_id,))


def _insert_event(
    conn: sqlite3.Connection,
    run_id: str,
    seq: int,
    type_: str,
    pipeline: str,
    now: datetime,
    stamped: str,  # now, as stored
    data: dict[str, Any],
) -> EventRow:
    cursor = conn.execute(
        "INSERT INTO events (run_id, seq, type, pipeline, created_at, data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, seq, type_, pipeline, stamped, json_dumps(data)),
    )
    assert cursor.lastrowid is not None
    return EventRow(cursor.lastrowid, run_id, seq, type_, pipeline, now, data)


class SqliteStore:
    """Runs, steps and events in one SQLite file (see ``app.store.base.Store``)."""

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        if path is None:
            raise ValueError(f"{url!r} is not a SQLite file URL")
        self.url, self.path = url, path
        self.writer = GroupCommitWriter(path)
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._migrate)
        self.writer.start()
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="stepline-sqlite-reader")

    def _migrate(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{self.path}")
        try:
            upgrade_sync(engine)
        finally:
            engine.dispose()

    async def close(self) -> None:
        await asyncio.to_thread(self.writer.stop)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """A read that may scan many rows, on a reader thread: the loop goes on meanwhile."""
        if self._readers is None:
            raise RuntimeError("the store is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._on_reader, query)

    def _read_here(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """A read that an index bounds, on the calling thread.

        Such a read takes tens of microseconds, and building its rows holds the GIL wherever
        it runs; handing it to a reader thread costs more than that on a busy server (two
        thread switches, each waiting for the GIL), for nothing in return. In WAL mode a
        read does not wait for the writer.
        """
        if self._readers is None:
            raise RuntimeError("the store is not started")
        return self._on_reader(query)

    def _on_reader(self, query: Callable[[sqlite3.Connection], T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path, read_only=True)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        connection.execute("BEGIN")  # one consistent snapshot for the whole read
        try:
            return query(connection)
        finally:
            connection.execute("COMMIT")

    # -- writes --------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[RunRow, EventRow | None]:
        return await self.writer.submit(lambda conn: self._create(conn, run))

    def _create(self, conn: sqlite3.Connection, run: NewRun) -> tuple[RunRow, EventRow | None]:
        if run.idempotency_key is not None:
            found = conn.execute(
                "SELECT run_id, request_hash FROM idempotency_keys WHERE key = ?",
                (run.idempotency_key,),
            ).fetchone()
            if found is not None:
                if found[1] != run.request_hash:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was used with a different request body",
                        run_id=found[0],
                    )
                return _read_run(conn, found[0]), None
        security.check_queue(conn, run)
        now, run_id = _now(), new_run_id()
        stamped = stamp(now)
        # The steps go in one column, not a row each: a queued run's steps are all pending,
        # and most runs are created faster than they are claimed (see _materialise).
        plan = _plan_text(run.steps)
        conn.execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}, planned_steps) VALUES "
            "(?, ?, ?, ?, ?, 0.0, NULL, NULL, NULL, NULL, ?, NULL, NULL, ?, 1, 0, 1, "
            "NULL, NULL, 0, 0, NULL, ?, ?)",
            (run_id, run.pipeline, _QUEUED, json_dumps(run.params),
             json_dumps(run.labels), stamped, stamped, run.owner_key_id, plan),
        )  # fmt: skip
        steps = _planned_steps(plan)
        data = {"status": _QUEUED, "progress": 0.0}
        event = _insert_event(conn, run_id, 1, "run.queued", run.pipeline, now, stamped, data)
        if run.idempotency_key is not None:
            conn.execute(
                "INSERT INTO idempotency_keys (key, request_hash, run_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (run.idempotency_key, run.request_hash, run_id, stamped),
            )
        created = RunRow(
            id=run_id, pipeline=run.pipeline, status=RunStatus.queued, params=run.params,
            labels=run.labels, progress=0.0, rollback_progress=None, error=None, result=None,
            summary=None, created_at=now, started_at=None, finished_at=None, updated_at=now,
            last_seq=1, cancel_requested=False, rollback_on_cancel=True,
            owner_key_id=run.owner_key_id, steps=steps,
        )  # fmt: skip
        return created, event

    async def apply(self, run_id: str, change: Change, epoch: int | None = None) -> EventRow:
        return await self.writer.submit(lambda conn: _apply(conn, run_id, change, epoch))

    async def apply_all(
        self, run_id: str, changes: Sequence[Change], epoch: int | None = None
    ) -> list[EventRow]:
        return await self.writer.submit(
            lambda conn: [_apply(conn, run_id, change, epoch) for change in changes]
        )

    async def claim_queued(
        self,
        limit: int,
        owner: str,
        lease_seconds: float,
        limits: Mapping[str, int] | None = None,
    ) -> list[tuple[RunRow, EventRow]]:
        return await self.writer.submit(
            lambda conn: self._claim(conn, limit, owner, lease_seconds, limits or {})
        )

    def _claim(
        self,
        conn: sqlite3.Connection,
        limit: int,
        owner: str,
        lease_seconds: float,
        limits: Mapping[str, int],
    ) -> list[tuple[RunRow, EventRow]]:
        # One writer: what this transaction counts, nobody else changes meanwhile.
        ids = run_sync(
            claimable(limit, limits, numbered=False),
            lambda sql, params: conn.execute(sql, params).fetchall(),
        )
        claimed = []
        for run_id in ids:
            now = _now()
            _materialise(conn, run_id)
            _take(conn, run_id, owner, now + timedelta(seconds=lease_seconds))
            change = Change(
                "run.started",
                {"owner": owner},
                expect=frozenset({RunStatus.queued}),
                run={"status": RunStatus.running, "started_at": now},
            )
            event = _apply(conn, run_id, change)
            claimed.append((_read_run(conn, run_id), event))
        return claimed

    async def claim_orphans(
        self, limit: int, owner: str, lease_seconds: float, now: datetime | None = None
    ) -> list[RunRow]:
        """Take over up to ``limit`` unfinished runs whose owner's lease has run out (or
        that were released); each gets a new epoch, so the old owner can write no more."""

        def job(conn: sqlite3.Connection) -> list[RunRow]:
            at = now or _now()
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM runs WHERE status IN (?, ?, ?) AND "
                    "(lease_expires_at IS NULL OR lease_expires_at < ?) "
                    "AND (owner IS NULL OR owner <> ?) ORDER BY id LIMIT ?",
                    (RunStatus.running.value, RunStatus.rolling_back.value,
                     RunStatus.cancelling.value, stamp(at), owner, limit),
                )
            ]  # fmt: skip
            for run_id in ids:
                _take(conn, run_id, owner, at + timedelta(seconds=lease_seconds))
            return [_read_run(conn, run_id) for run_id in ids]

        return await self.writer.submit(job)

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

        def job(conn: sqlite3.Connection) -> set[str]:
            until = stamp(_now() + timedelta(seconds=lease_seconds))
            sql = "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND owner = ? AND epoch = ?"
            if while_last_seq is not None:
                sql += " AND last_seq IS ?"
            lost = set()
            for run_id, epoch in epochs.items():
                values: tuple[object, ...] = (until, run_id, owner, epoch)
                if while_last_seq is not None:
                    values += (while_last_seq.get(run_id),)
                if conn.execute(sql, values).rowcount == 0:
                    lost.add(run_id)
            return lost

        return await self.writer.submit(job)

    async def release(self, run_id: str, epoch: int) -> bool:
        """Give up a run without finishing it, so that recovery can take it at once."""

        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE id = ? AND epoch = ?",
                (run_id, epoch),
            )
            return cursor.rowcount == 1

        return await self.writer.submit(job)

    # -- reads ---------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRow:
        return self._read_here(lambda conn: _read_run(conn, run_id))

    async def cancel_request(self, run_id: str) -> bool | None:
        def query(conn: sqlite3.Connection) -> bool | None:
            found = conn.execute(
                "SELECT cancel_requested, rollback_on_cancel FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if found is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            return bool(found[1]) if found[0] else None

        return self._read_here(query)

    async def list_runs(self, filters: RunFilter, before: str | None, limit: int) -> list[RunRow]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if filters.owner_key_id is not None:
            where.append("owner_key_id = ?")
            params.append(filters.owner_key_id)
        if filters.pipeline is not None:
            where.append("pipeline = ?")
            params.append(filters.pipeline)
        if filters.status is not None:
            where.append("status = ?")
            params.append(filters.status.value)
        if filters.created_after is not None:
            where.append("created_at >= ?")
            params.append(stamp(filters.created_after))
        if filters.created_before is not None:
            where.append("created_at < ?")
            params.append(stamp(filters.created_before))
        for key, value in filters.labels.items():
            # json_each, not a JSON path: a path cannot name every key (one with a quote).
            where.append(
                "EXISTS (SELECT 1 FROM json_each(runs.labels) AS l "
                "WHERE l.key = ? AND l.type = 'text' AND l.value = ?)"
            )
            params.extend((key, value))
        sql = (
            f"SELECT {_RUN_COLUMNS}, planned_steps FROM runs WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT ?"
        )

        def query(conn: sqlite3.Connection) -> list[RunRow]:
            cursor = conn.execute(sql, (*params, limit))
            rows = [_row(cursor, r) for r in cursor.fetchall()]
            plans = {r["id"]: r.pop("planned_steps") for r in rows}
            stored = [run_id for run_id, plan in plans.items() if plan is None]
            by_run: dict[str, list[StepRow]] = {}
            if stored:
                marks = ", ".join("?" * len(stored))
                cursor = conn.execute(
                    f"SELECT {_STEP_COLUMNS} FROM step_runs WHERE run_id IN ({marks}) "
                    'ORDER BY run_id, "index"',
                    stored,
                )
                for values in cursor.fetchall():
                    by_run.setdefault(values[0], []).append(_step(values))
            runs = []
            for row in rows:
                plan = plans[row["id"]]
                steps = (
                    _planned_steps(plan) if plan is not None else tuple(by_run.get(row["id"], ()))
                )
                runs.append(_run(row, steps))
            return runs

        return await self._read(query)

    async def run_events(self, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        return self._read_here(functools.partial(_read_events, sql, (run_id, after_seq, limit)))

    async def all_events(
        self,
        after_id: int,
        limit: int,
        pipelines: Sequence[str] = (),
        types: Sequence[str] = (),
        owner_key_id: str | None = None,
    ) -> list[EventRow]:
        where: list[str] = ["id > ?"]
        params: list[Any] = [after_id]
        if owner_key_id is not None:
            where.append("run_id IN (SELECT id FROM runs WHERE owner_key_id = ?)")
            params.append(owner_key_id)
        if pipelines:
            where.append(f"pipeline IN ({', '.join('?' * len(pipelines))})")
            params.extend(pipelines)
        if types:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        return await self._events(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            (*params, limit),
        )

    async def last_event_id(self) -> int:
        return self._read_here(
            lambda conn: int(conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0)
        )

    async def run_logs(
        self, run_id: str, step: str | None, after_seq: int, limit: int
    ) -> list[EventRow]:
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = ? AND type = 'step.log' "
            "AND seq > ?"
        )
        params: list[Any] = [run_id, after_seq]
        if step is not None:
            sql += " AND json_extract(data, '$.step') = ?"
            params.append(step)
        return await self._events(sql + " ORDER BY seq LIMIT ?", (*params, limit))

    async def _events(self, sql: str, params: Sequence[Any]) -> list[EventRow]:
        return await self._read(functools.partial(_read_events, sql, params))

    async def count_runs(self) -> dict[tuple[str, str], int]:
        def query(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
            rows = conn.execute("SELECT pipeline, status, count(*) FROM runs GROUP BY 1, 2")
            return {(p, s): n for p, s, n in rows}

        return await self._read(query)

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(self, key: NewApiKey) -> ApiKeyRow:
        now = _now()
        return await self.writer.submit(lambda conn: security.create_key(conn, key, now))

    async def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        return self._read_here(lambda conn: security.find_key(conn, key_id))

    async def list_api_keys(self) -> list[ApiKeyRow]:
        return await self._read(security.list_keys)

    async def revoke_api_key(self, id_or_name: str) -> ApiKeyRow | None:
        now = _now()
        return await self.writer.submit(lambda conn: security.revoke_key(conn, id_or_name, now))

    async def has_api_keys(self) -> bool:
        return self._read_here(security.has_keys)

    async def server_secret(self, name: str, candidate: str) -> str:
        now = _now()
        return await self.writer.submit(
            lambda conn: security.server_secret(conn, name, candidate, now)
        )

    async def use_stream_token(self, token_id: str, expires_at: datetime) -> bool:
        now = _now()
        return await self.writer.submit(
            lambda conn: security.use_token(conn, token_id, expires_at, now)
        )

    async def check_ready(self) -> str | None:
        def probe() -> str | None:
            # A connection of its own: the answer must not depend on the store's threads.
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                try:
                    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                except sqlite3.OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
                    return None
                return None if row is None else str(row[0])

        try:
            current = await asyncio.to_thread(probe)
        except Exception as exc:
            return f"database unreachable: {type(exc).__name__}: {exc}"
        head = head_revision()
        if current != head:
            return f"database schema is at {current}, this version needs {head}"
        return None


def _read_run(conn: sqlite3.Connection, run_id: str) -> RunRow:
    cursor = conn.execute(f"SELECT {_RUN_COLUMNS}, planned_steps FROM runs WHERE id = ?", (run_id,))
    values = cursor.fetchone()
    if values is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    row = _row(cursor, values)
    plan = row.pop("planned_steps")
    if plan is not None:
        return _run(row, _planned_steps(plan))
    cursor = conn.execute(
        f'SELECT {_STEP_COLUMNS} FROM step_runs WHERE run_id = ? ORDER BY "index"', (run_id,)
    )
    steps = tuple(map(_step, cursor.fetchall()))
    return _run(row, steps)


def _read_events(sql: str, params: Sequence[Any], conn: sqlite3.Connection) -> list[EventRow]:
    cursor = conn.execute(sql, params)
    return list(map(_event, cursor.fetchall()))


def _take(conn: sqlite3.Connection, run_id: str, owner: str, until: datetime) -> None:
    conn.execute(
        "UPDATE runs SET owner = ?, lease_expires_at = ?, epoch = epoch + 1 WHERE id = ?",
        (owner, stamp(until), run_id),
    )


def _apply(
    conn: sqlite3.Connection, run_id: str, change: Change, epoch: int | None = None
) -> EventRow:
    current = conn.execute(
        "SELECT status, last_seq, progress, pipeline, epoch FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    if current is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    if epoch is not None and current[4] != epoch:
        raise LeaseLost(
            f"run {run_id} is at epoch {current[4]}; a write for epoch {epoch} is stale"
        )
    status = RunStatus(current[0])
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
    now, seq = _now(), current[1] + 1
    stamped = stamp(now)  # once for the run's update and its event: formatting is dear
    values["last_seq"] = seq
    conn.execute(
        f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)}, updated_at = ? WHERE id = ?",
        (*(_to_db(k, v) for k, v in values.items()), stamped, run_id),
    )
    for index, step_values in change.steps.items():
        if step_values:
            conn.execute(
                f"UPDATE step_runs SET {', '.join(f'{k} = ?' for k in step_values)} "
                'WHERE run_id = ? AND "index" = ?',
                (*(_to_db(k, v) for k, v in step_values.items()), run_id, index),
            )
    data = {
        "status": (new_status or status).value,
        "progress": values.get("progress", current[2]),
        **change.data,
    }
    return _insert_event(conn, run_id, seq, change.event, current[3], now, stamped, data)
