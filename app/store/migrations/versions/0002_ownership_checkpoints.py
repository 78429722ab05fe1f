"""Run ownership (owner, lease, fencing epoch), recovery attempts and checkpoints.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.store.schema import UtcDateTime, json_document

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("owner", sa.String(100), nullable=True))
        runs.add_column(sa.Column("lease_expires_at", UtcDateTime(), nullable=True))
        runs.add_column(sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"))
        runs.add_column(
            sa.Column("recovery_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        runs.add_column(sa.Column("checkpoint", json_document(), nullable=True))
    with op.batch_alter_table("step_runs") as step_runs:
        step_runs.add_column(sa.Column("result_data", json_document(), nullable=True))
        step_runs.add_column(sa.Column("rollback_data", json_document(), nullable=True))
    op.create_index("ix_runs_status_lease_expires_at", "runs", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_lease_expires_at", table_name="runs")
    with op.batch_alter_table("step_runs") as step_runs:
        step_runs.drop_column("rollback_data")
        step_runs.drop_column("result_data")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("checkpoint")
        runs.drop_column("recovery_attempts")
        runs.drop_column("epoch")
        runs.drop_column("lease_expires_at")
        runs.drop_column("owner")
