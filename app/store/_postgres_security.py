"""The PostgreSQL store's API keys, server secrets and used stream tokens: statements run
on a pooled connection."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from app.errors import KeyNameTaken, QueueFull
from app.store.records import ApiKeyRow, NewApiKey, NewRun

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

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

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

_KEY_COLUMNS = "id, name, scopes, secret_hash, created_at, revoked_at"
QUEUE_RETRY_SECONDS = 10.0  # queued runs leave the queue as workers free up


def _key(record: asyncpg.Record) -> ApiKeyRow:
    return ApiKeyRow(
        record["id"],
        record["name"],
        tuple(record["scopes"].split()),
        record["secret_hash"],
        record["created_at"],
        record["revoked_at"],
    )


async def create_key(conn: Connection, key: NewApiKey, now: datetime) -> ApiKeyRow:
    try:
        await conn.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL)",
            key.id, key.name, " ".join(key.scopes), key.secret_hash, now,
        )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise KeyNameTaken(f"an API key named {key.name!r} exists already") from exc
    return ApiKeyRow(key.id, key.name, key.scopes, key.secret_hash, now)


async def find_key(conn: Connection, key_id: str) -> ApiKeyRow | None:
    found = await conn.fetchrow(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)
    return None if found is None else _key(found)


async def list_keys(conn: Connection) -> list[ApiKeyRow]:
    records = await conn.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
    return [_key(record) for record in records]


async def revoke_key(conn: Connection, id_or_name: str, now: datetime) -> ApiKeyRow | None:
    # An id wins over a name that happens to look like one.
    found = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = $1 OR name = $1 "
        "ORDER BY (id = $1) DESC LIMIT 1 FOR UPDATE",
        id_or_name,
    )
    if found is None or found["revoked_at"] is not None:
        return None if found is None else _key(found)
    revoked = await conn.fetchrow(
        f"UPDATE api_keys SET revoked_at = $2 WHERE id = $1 RETURNING {_KEY_COLUMNS}",
        found["id"], now,
    )  # fmt: skip
    assert revoked is not None  # the row is locked: it cannot have gone
    return _key(revoked)


async def has_keys(conn: Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys)"))


async def server_secret(conn: Connection, name: str, candidate: str, now: datetime) -> str:
    await conn.execute(
        "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (name) DO NOTHING",
        name, candidate, now,
    )  # fmt: skip
    return str(await conn.fetchval("SELECT value FROM server_secrets WHERE name = $1", name))


async def use_token(conn: Connection, token_id: str, expires_at: datetime, now: datetime) -> bool:
    # Tokens that have expired are refused for that alone: their ids need not be kept.
    await conn.execute("DELETE FROM used_stream_tokens WHERE expires_at < $1", now)
    stored = await conn.fetchval(
        "INSERT INTO used_stream_tokens (id, expires_at) VALUES ($1, $2) "
        "ON CONFLICT (id) DO NOTHING RETURNING true",
        token_id, expires_at,
    )  # fmt: skip
    return stored is not None


async def _queued(conn: Connection, column: str, value: str, limit: int) -> int:
    # Counts up to the limit only: what it costs does not grow with the queue.
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'queued' AND {column} = $1 "
        "LIMIT $2) AS queued"
    )
    return int(await conn.fetchval(sql, value, limit))


async def check_queue(conn: Connection, run: NewRun) -> None:
    """``QueueFull`` if ``run`` would queue more runs than its key or pipeline may have.

    Concurrent creates on several connections each count the others' uncommitted runs as
    not there: the limit can be passed by as many runs as are created at that moment."""
    key, limit = run.owner_key_id, run.max_queued_per_key
    if (
        key is not None
        and limit is not None
        and await _queued(conn, "owner_key_id", key, limit) >= limit
    ):
        raise QueueFull(
            f"this key has {limit} runs queued, its most", retry_after=QUEUE_RETRY_SECONDS
        )
    limit = run.max_queued_per_pipeline
    if limit is not None and await _queued(conn, "pipeline", run.pipeline, limit) >= limit:
        raise QueueFull(
            f"pipeline {run.pipeline!r} has {limit} runs queued, its most",
            retry_after=QUEUE_RETRY_SECONDS,
        )
