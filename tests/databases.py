"""Databases for tests: a SQLite file or a fresh PostgreSQL database, and raw reads of them.

The PostgreSQL server is named by ``STEPLINE_TEST_POSTGRES`` (a ``postgresql://`` URL of a
database the role can connect to; it needs the right to create databases). Each call of
``database_url`` creates a database of its own on it and drops it afterwards, so tests never
see each other's rows. A server that cannot be reached fails the test: it is not skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from app.store.sqlite import sqlite_path

__all__ = ["BACKENDS", "POSTGRES", "database_url", "execute", "table_counts"]

T = TypeVar("T")
BACKENDS = ("sqlite", "postgres")
POSTGRES = os.environ.get("STEPLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT = 10.0


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    # On a loop of its own in a thread of its own: callers may be inside a running loop
    # (async fixtures) or outside any (plain fixtures).
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _connect(url: URL) -> asyncpg.Connection[asyncpg.Record]:
    try:
        return await asyncpg.connect(_dsn(url), timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL at {url.render_as_string()} is not reachable (set "
            f"STEPLINE_TEST_POSTGRES to a server the tests may create databases on): {exc!r}"
        )


async def _admin(sql: str) -> None:
    connection = await _connect(make_url(POSTGRES))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def _fresh_postgres() -> Iterator[str]:
    name = f"stepline_test_{uuid.uuid4().hex[:16]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        # FORCE: a test that failed half-way may have left a connection open.
        _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    """The ``STEPLINE_DATABASE_URL`` of an empty database of ``backend``: a SQLite file in
    ``directory``, or a PostgreSQL database created for the caller and dropped after."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'stepline.db'}"
    elif backend == "postgres":
        with _fresh_postgres() as url:
            yield url
    else:
        raise ValueError(f"no test database for backend {backend!r}")


async def _fetch_postgres(url: str, sql: str) -> list[tuple[Any, ...]]:
    connection = await _connect(make_url(url))
    try:
        return [tuple(record) for record in await connection.fetch(sql)]
    finally:
        await connection.close()


def execute(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the database of ``url`` behind the store's back; its rows, if any."""
    path = sqlite_path(url)
    if path is None:
        return _run(_fetch_postgres(url, sql))
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(sql).fetchall()


def table_counts(url: str, tables: Sequence[str]) -> tuple[int, ...]:
    """The number of rows of each of ``tables``, read from the database itself."""
    return tuple(int(execute(url, f"SELECT count(*) FROM {table}")[0][0]) for table in tables)
