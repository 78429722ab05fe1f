"""The SQLite store's API keys, server secrets and used stream tokens: statements run on
the writer's or a reader's connection."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from app.errors import KeyNameTaken, QueueFull
from app.store._sqlite_time import moment, stamp
from app.store.records import ApiKeyRow, NewApiKey, NewRun

__all__ = [
    "QUEUE_RETRY_SECONDS",
    "check_queue",
    "create_key",
    "find_key",
    "has_keys",
    "list_keys",
    "revoke_key",
    "server_secret",
    "use_token",
]

_KEY_COLUMNS = "id, name, scopes, secret_hash, created_at, revoked_at"
QUEUE_RETRY_SECONDS = 10.0  # queued runs leave the queue as workers free up


def _key(values: tuple[str, str, str, str, str, str | None]) -> ApiKeyRow:
    key_id, name, scopes, secret_hash, created_at, revoked_at = values
    created = moment(created_at)
    assert created is not None
    return ApiKeyRow(key_id, name, tuple(scopes.split()), secret_hash, created, moment(revoked_at))


def create_key(conn: sqlite3.Connection, key: NewApiKey, now: datetime) -> ApiKeyRow:
    try:
        conn.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
            (key.id, key.name, " ".join(key.scopes), key.secret_hash, stamp(now)),
        )
    except sqlite3.IntegrityError as exc:
        raise KeyNameTaken(f"an API key named {key.name!r} exists already") from exc
    return ApiKeyRow(key.id, key.name, key.scopes, key.secret_hash, now)


def find_key(conn: sqlite3.Connection, key_id: str) -> ApiKeyRow | None:
    found = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return None if found is None else _key(found)


def list_keys(conn: sqlite3.Connection) -> list[ApiKeyRow]:
    rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
    return [_key(row) for row in rows.fetchall()]


def revoke_key(conn: sqlite3.Connection, id_or_name: str, now: datetime) -> ApiKeyRow | None:
    # An id wins over a name that happens to look like one.
    found = find_key(conn, id_or_name)
    if found is None:
        row = conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = ?", (id_or_name,)
        ).fetchone()
        found = None if row is None else _key(row)
    if found is None or found.revoked_at is not None:
        return found
    conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (stamp(now), found.id))
    return find_key(conn, found.id)


def has_keys(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone()
    return found is not None


def server_secret(conn: sqlite3.Connection, name: str, candidate: str, now: datetime) -> str:
    conn.execute(
        "INSERT INTO server_secrets (name, value, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (name, candidate, stamp(now)),
    )
    found = conn.execute("SELECT value FROM server_secrets WHERE name = ?", (name,)).fetchone()
    return str(found[0])


def use_token(conn: sqlite3.Connection, token_id: str, expires_at: datetime, now: datetime) -> bool:
    # Tokens that have expired are refused for that alone: their ids need not be kept.
    conn.execute("DELETE FROM used_stream_tokens WHERE expires_at < ?", (stamp(now),))
    cursor = conn.execute(
        "INSERT INTO used_stream_tokens (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
        (token_id, stamp(expires_at)),
    )
    return cursor.rowcount == 1


def _queued(conn: sqlite3.Connection, column: str, value: str, limit: int) -> int:
    # Counts up to the limit only: what it costs does not grow with the queue.
    found = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'queued' AND {column} = ? "
        "LIMIT ?)",
        (value, limit),
    ).fetchone()
    return int(found[0])


def check_queue(conn: sqlite3.Connection, run: NewRun) -> None:
    """``QueueFull`` if ``run`` would queue more runs than its key or pipeline may have."""
    key, limit = run.owner_key_id, run.max_queued_per_key
    if key is not None and limit is not None and _queued(conn, "owner_key_id", key, limit) >= limit:
        raise QueueFull(
            f"this key has {limit} runs queued, its most", retry_after=QUEUE_RETRY_SECONDS
        )
    limit = run.max_queued_per_pipeline
    if limit is not None and _queued(conn, "pipeline", run.pipeline, limit) >= limit:
        raise QueueFull(
            f"pipeline {run.pipeline!r} has {limit} runs queued, its most",
            retry_after=QUEUE_RETRY_SECONDS,
        )
