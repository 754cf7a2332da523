"""An alert state records the project whose rule it is (the project dir, as a run's ``project``), so a
server can resolve the alerts of rules its edgecrew.yaml no longer has without touching the alerts of
another project sharing the data dir; an alert event may say why it happened (``reason``: a rule removed
while it fired is resolved with one).

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.add_column(sa.Column("project", sa.Text()))
    with op.batch_alter_table("alert_events") as batch:
        batch.add_column(sa.Column("reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("alert_states") as batch:
        batch.drop_column("project")
