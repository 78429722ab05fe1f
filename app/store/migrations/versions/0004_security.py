"""API keys (a salted hash of each key's secret, its scopes, when it was revoked), the key
that created each run (and indexes to count queued runs per key and per pipeline), server
secrets, and the stream tokens already used.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.store.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
    )
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("owner_key_id", sa.String(32), nullable=True))
    op.create_index("ix_runs_owner_key_id_id", "runs", ["owner_key_id", "id"])
    op.create_index("ix_runs_status_owner_key_id", "runs", ["status", "owner_key_id"])
    op.create_index("ix_runs_status_pipeline", "runs", ["status", "pipeline"])
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_secrets"),
    )
    op.create_table(
        "used_stream_tokens",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_used_stream_tokens"),
    )
    op.create_index("ix_used_stream_tokens_expires_at", "used_stream_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_stream_tokens_expires_at", table_name="used_stream_tokens")
    op.drop_table("used_stream_tokens")
    op.drop_table("server_secrets")
    op.drop_index("ix_runs_status_pipeline", table_name="runs")
    op.drop_index("ix_runs_status_owner_key_id", table_name="runs")
    op.drop_index("ix_runs_owner_key_id_id", table_name="runs")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("owner_key_id")
    op.drop_table("api_keys")
