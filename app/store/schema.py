"""The tables: runs, their steps, their event log, idempotency keys, and API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "api_keys",
    "events",
    "idempotency_keys",
    "json_document",
    "metadata",
    "runs",
    "server_secrets",
    "step_runs",
    "used_stream_tokens",
]


def json_document() -> JSON:
    """A JSON document column: JSONB on PostgreSQL (indexable, compared by value), JSON
    elsewhere."""
    return JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, also on SQLite (which drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value if isinstance(value, datetime) else None


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Run ids are ULIDs: their text order is their creation order, which cursors rely on.
runs = Table(
    "runs",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("params", json_document(), nullable=False),
    Column("labels", json_document(), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("rollback_progress", Float),
    Column("error", json_document()),
    Column("result", json_document()),
    Column("summary", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("rollback_on_cancel", Boolean, nullable=False, default=True),
    # Ownership: who executes the run, until when, under which fencing epoch.
    Column("owner", String(100)),
    Column("lease_expires_at", UtcDateTime),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("recovery_attempts", Integer, nullable=False, server_default="0"),
    # The run's context after its latest step (its JSON fields), for recovery.
    Column("checkpoint", json_document()),
    # A queued run's steps as [name, weight, can_rollback] (a store may write them here,
    # one column, rather than a row each); its step rows replace them when it is claimed.
    Column("planned_steps", json_document()),
    # The API key that created the run (None when authentication was off): a key without
    # the admin scope sees its own runs only.
    Column("owner_key_id", String(32)),
    Index(None, "status", "id"),
    Index(None, "status", "lease_expires_at"),
    Index(None, "pipeline", "id"),
    Index(None, "owner_key_id", "id"),
    # Queued runs are counted per key and per pipeline, against their quotas.
    Index(None, "status", "owner_key_id"),
    Index(None, "status", "pipeline"),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("index", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("weight", Float, nullable=False),
    Column("can_rollback", Boolean, nullable=False),
    Column("status", String(20), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("duration_seconds", Float),
    Column("error", json_document()),
    Column("rollback_status", String(20), nullable=False),
    Column("rollback_started_at", UtcDateTime),
    Column("rollback_finished_at", UtcDateTime),
    Column("rollback_error", json_document()),
    Column("result_data", json_document()),
    Column("rollback_data", json_document()),
)

# The durable event log (outbox): ``seq`` is gapless per run, ``id`` orders all runs' events.
events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(40), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("data", json_document(), nullable=False),
    Index(None, "run_id", "seq", unique=True),
    Index(None, "run_id", "type", "seq"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Only a salted hash of each key's secret is stored; ``id`` is the key's public part.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("scopes", String(100), nullable=False),
    Column("secret_hash", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

# Secrets the server makes for itself (the key that signs stream tokens), shared by replicas.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Stream tokens are valid once: the id of each one used, until it would have expired anyway.
used_stream_tokens = Table(
    "used_stream_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)
