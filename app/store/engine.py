"""Engines for the store, with the SQLite settings that make an acknowledged run durable.

SQLite: WAL (readers never block the writer), ``synchronous=FULL`` (a committed run
survives an OS crash or power loss, not only a process crash), a ``busy_timeout``, and
``BEGIN IMMEDIATE`` on the single writer connection, so that a read-then-write transaction
holds the write lock from its first statement and never fails half way with "database is
locked". Readers use a separate pool with plain deferred transactions.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["BUSY_TIMEOUT_MS", "Engines", "create_engines", "json_dumps"]

BUSY_TIMEOUT_MS = 5000
READ_POOL_SIZE = 4
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


def json_dumps(value: Any) -> str:
    """JSON for stored documents; values JSON cannot hold are stored as their ``str``.

    pydantic-core's encoder: four times as fast as the standard library's, and it is on
    every write.
    """
    return to_json(value, fallback=str).decode()


class Engines:
    """A writer and a reader engine (the same engine outside SQLite)."""

    def __init__(self, writer: AsyncEngine, reader: AsyncEngine) -> None:
        self.writer = writer
        self.reader = reader

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def create_engines(url: str) -> Engines:
    """Engines for ``url``; for SQLite, one writer connection and a pool of readers."""
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_async_engine(url, json_serializer=json_dumps, pool_pre_ping=True)
        return Engines(engine, engine)
    writer = create_async_engine(url, json_serializer=json_dumps, pool_size=1, max_overflow=0)
    reader = create_async_engine(
        url, json_serializer=json_dumps, pool_size=READ_POOL_SIZE, max_overflow=0
    )
    _sqlite_transactions(writer, "BEGIN IMMEDIATE")
    _sqlite_transactions(reader, "BEGIN")
    return Engines(writer, reader)


def _sqlite_transactions(engine: AsyncEngine, begin: str) -> None:
    # The sqlite3 driver's own transaction handling skips BEGIN for SELECT and DDL; take it
    # over so every transaction really is one (SQLAlchemy's documented recipe).
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)
