"""Tasks record when they ended (done, failed or cancelled), so the scoreboard's time per finished task
is from creation to that end, not to the task's last edit (a typo fixed on a finished task moved it).

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("finished_at", sa.Float()))
    # Tasks that ended before: their last change is the closest record of their end.
    op.execute("UPDATE tasks SET finished_at = updated_at WHERE status IN ('done', 'failed', 'cancelled')")


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("finished_at")
