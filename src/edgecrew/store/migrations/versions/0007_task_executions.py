"""Executions of task code versions, and the acceptance checks and limits they run with.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN of nullable columns: no table rebuild on SQLite, so no cascade on the tasks' children.
    op.add_column("tasks", sa.Column("checks", sa.JSON))
    op.add_column("tasks", sa.Column("limits", sa.JSON))
    op.add_column("tasks", sa.Column("created_by", sa.String(200)))
    op.add_column("tasks", sa.Column("best_version", sa.Integer))
    op.create_table(
        "executions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(32), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("run_id", sa.String(64)),
        sa.Column("agent", sa.String(128)),
        sa.Column("executor", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("stdout_log", sa.String(255)),
        sa.Column("stderr_log", sa.String(255)),
        sa.Column("metrics", sa.JSON),
        sa.Column("checks_passed", sa.Integer),
        sa.Column("checks_total", sa.Integer),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("task_results.id", ondelete="SET NULL")),
    )
    op.create_index("ix_executions_task_id", "executions", ["task_id", "id"])
    op.create_index("ix_executions_status", "executions", ["status"])


def downgrade() -> None:
    op.drop_table("executions")
    with op.batch_alter_table("tasks") as batch:
        for column in ("best_version", "created_by", "limits", "checks"):
            batch.drop_column(column)
