"""Where runs, steps and events live: the ``Store`` interface and its implementations."""

from __future__ import annotations

from app.store.base import Store
from app.store.sqlite import SqliteStore, sqlite_path

__all__ = ["SqliteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """The store for ``url``: a SQLite file (the embedded default) or a PostgreSQL database
    (``postgresql+asyncpg://``, with the ``postgres`` extra installed)."""
    if sqlite_path(url) is not None:
        return SqliteStore(url)
    if url.startswith("postgresql+asyncpg://"):
        try:
            from app.store.postgres import PostgresStore
        except ImportError as exc:
            raise ValueError(
                f"STEPLINE_DATABASE_URL={url!r} needs the PostgreSQL driver: "
                "pip install 'stepline[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ValueError(
        f"STEPLINE_DATABASE_URL={url!r}: runs are stored in a SQLite file "
        "(sqlite+aiosqlite:///path/to/stepline.db) or a PostgreSQL database "
        "(postgresql+asyncpg://user@host:5432/database)"
    )
