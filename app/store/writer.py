"""Group commit: one thread owns the SQLite write connection and commits jobs in batches.

Every write job submitted while a commit is in progress joins the next transaction, so a
burst of concurrent writes costs one ``fsync`` instead of one each. A job that raises (a
failed guard, say) is undone alone, and the others in its batch still commit: the batch
runs again with a savepoint around each job. A job's future resolves only after its batch
has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["GroupCommitWriter", "StoreSettingsError", "connect", "verify_settings"]

T = TypeVar("T")
MAX_BATCH = 512
BUSY_TIMEOUT_MS = 5000
FULL = 2  # PRAGMA synchronous: an acknowledged commit survives an OS crash or power loss
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)

Job = Callable[[sqlite3.Connection], Any]
_STOP = object()


class StoreSettingsError(RuntimeError):
    """The database does not run with the settings that make runs durable."""


def verify_settings(connection: sqlite3.Connection) -> None:
    """Refuse a connection that is not in WAL mode with ``synchronous=FULL`` and a busy
    timeout: without them an acknowledged run could be lost or a write could fail on a
    lock. (SQLite silently keeps its old journal mode where WAL is not possible, for
    example on some network file systems or for an in-memory database.)"""
    mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
    timeout = connection.execute("PRAGMA busy_timeout").fetchone()[0]
    problems = []
    if str(mode).lower() != "wal":
        problems.append(f"journal_mode is {mode}, not wal")
    if synchronous != FULL:
        problems.append(f"synchronous is {synchronous}, not 2 (FULL)")
    if timeout < BUSY_TIMEOUT_MS:
        problems.append(f"busy_timeout is {timeout} ms, under {BUSY_TIMEOUT_MS}")
    if problems:
        raise StoreSettingsError(
            "the SQLite database cannot run with the settings that keep runs durable: "
            + "; ".join(problems)
        )


def connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection with the store's pragmas, in autocommit mode (we say BEGIN ourselves)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            connection.execute(pragma)
        verify_settings(connection)
    except BaseException:
        connection.close()
        raise
    if read_only:
        connection.execute("PRAGMA query_only=ON")
    return connection


def _resolve_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class GroupCommitWriter:
    """The single writer of one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        connection = connect(self.path)  # fail here, not in the thread, if it cannot open
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name="stepline-sqlite-writer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` in the next transaction; return its result once committed."""
        return await self.enqueue(job)

    def enqueue(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``job`` now; the future resolves with its result once committed."""
        if self._thread is None:
            raise RuntimeError("the store is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((job, future, loop))
        return future

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                batch = [item]
                stopping = False
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(connection, batch)
                if stopping:
                    return
        finally:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: list[Any]) -> None:
        outcomes: list[tuple[bool, Any]]
        try:
            try:
                outcomes = self._transaction(connection, batch, isolated=False)
            except _JobFailed as failed:
                if len(batch) == 1:
                    outcomes = [(False, failed.__cause__)]
                else:
                    # Jobs write only what they compute from the database, so running them
                    # again is safe; now each in a savepoint, to undo the failing one alone.
                    outcomes = self._transaction(connection, batch, isolated=True)
        except Exception as exc:
            outcomes = [(False, exc)] * len(batch)
        self.batches += 1
        self.jobs += len(batch)
        # One wake-up per loop and batch, not one per job: each wake-up costs the loop a
        # trip through its self-pipe and this thread a handover of the GIL.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
        by_loop = {}
        for (_job, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(_resolve_all, results)

    def _transaction(
        self, connection: sqlite3.Connection, batch: list[Any], *, isolated: bool
    ) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction and commit it. Not ``isolated``, the first job
        that raises undoes the whole transaction (``_JobFailed``): a savepoint per job
        costs as much as the job itself, and jobs rarely fail."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for job, _future, _loop in batch:
                if not isolated:
                    try:
                        outcomes.append((True, job(connection)))
                    except Exception as exc:
                        raise _JobFailed from exc
                    continue
                connection.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job(connection)))
                except Exception as exc:
                    connection.execute("ROLLBACK TO job")
                    outcomes.append((False, exc))
                connection.execute("RELEASE job")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes


class _JobFailed(Exception):
    """A job raised in a batch run without savepoints."""
