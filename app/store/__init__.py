"""Where runs, steps and events live: the ``Store`` interface and its implementations."""

from __future__ import annotations

from app.store.base import Store
from app.store.sql import SqlStore
from app.store.sqlite import SqliteStore, sqlite_path

__all__ = ["SqlStore", "SqliteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """The store for ``url``: the group-committing SQLite store for a SQLite file, the
    SQLAlchemy store for any other database."""
    return SqliteStore(url) if sqlite_path(url) is not None else SqlStore(url)
