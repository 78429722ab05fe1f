"""Where runs, steps and events live: the ``Store`` interface and its implementation."""

from __future__ import annotations

from app.store.base import Store
from app.store.sqlite import SqliteStore, sqlite_path

__all__ = ["SqliteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """The store for ``url``: a SQLite file (the embedded default)."""
    if sqlite_path(url) is None:
        raise ValueError(
            f"STEPLINE_DATABASE_URL={url!r}: this version stores runs in a SQLite file "
            "(sqlite+aiosqlite:///path/to/stepline.db)"
        )
    return SqliteStore(url)
