"""Cluster workers record their edgecrew version and a digest of their project's edgecrew.yaml, so the
cluster can say when live workers disagree (a run's result would depend on which worker takes it).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("version", sa.String(64)))
        batch.add_column(sa.Column("config", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("config")
        batch.drop_column("version")
