"""The embedded store runs only with the SQLite settings that keep acknowledged runs."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from app.store.writer import StoreSettingsError, connect, verify_settings


def test_a_store_connection_uses_wal_full_sync_and_a_busy_timeout(tmp_path: Path) -> None:
    with contextlib.closing(connect(str(tmp_path / "s.db"))) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_database_that_cannot_use_wal_is_refused() -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # an in-memory database stays "memory"
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")

        with pytest.raises(StoreSettingsError, match="journal_mode is memory, not wal"):
            verify_settings(conn)


def test_weaker_durability_settings_are_refused(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db", timeout=0)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")

        with pytest.raises(StoreSettingsError) as refused:
            verify_settings(conn)

    assert "synchronous is 1, not 2 (FULL)" in str(refused.value)
    assert "busy_timeout is 0 ms" in str(refused.value)
