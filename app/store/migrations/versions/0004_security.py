"""API keys (a salted hash of each key's secret, its scopes, when it was revoked), and the
key that created each run.

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


def downgrade() -> None:
    op.drop_index("ix_runs_owner_key_id_id", table_name="runs")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("owner_key_id")
    op.drop_table("api_keys")
