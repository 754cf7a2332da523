"""API keys for the server; request ids and idempotency keys on runs; request ids on events.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sa.UniqueConstraint("hash", name="uq_api_keys_hash"),
    )
    # Plain ADD COLUMN and a unique index: no table rebuild (a rebuild of `runs` on SQLite would
    # cascade-delete its steps and events while foreign keys are on).
    op.add_column("runs", sa.Column("request_id", sa.String(128)))
    op.add_column("runs", sa.Column("idempotency_key", sa.String(256)))
    op.create_index("uq_runs_idempotency_key", "runs", ["idempotency_key"], unique=True)
    op.add_column("events", sa.Column("request_id", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("request_id")
    op.drop_index("uq_runs_idempotency_key", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("idempotency_key")
        batch.drop_column("request_id")
    op.drop_table("api_keys")
