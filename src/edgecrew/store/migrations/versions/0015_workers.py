"""Cluster workers: each `edgecrew worker`'s executor id, advertised models, heartbeat and state.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("aliases", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("memory_bytes", sa.BigInteger),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("running", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("dead_at", sa.Float),
        sa.Column("declared_by", sa.String(200)),
        sa.Column("recovered", sa.Integer, nullable=False),
    )
    op.create_index("ix_workers_state", "workers", ["state"])


def downgrade() -> None:
    op.drop_index("ix_workers_state", table_name="workers")
    op.drop_table("workers")
