"""Jobs under policies: jobs, what happened to each (job_events), and every version of every policy.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("argv", sa.JSON),
        sa.Column("sandbox", sa.Integer, nullable=False, server_default="0"),
        sa.Column("team", sa.String(160)),
        sa.Column("task", sa.Text),
        sa.Column("needs", sa.JSON, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("deadline", sa.Float),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("waiting_on", sa.JSON),
        sa.Column("submitted_by", sa.String(200)),
        sa.Column("workflow_id", sa.String(64)),
        sa.Column("executor", sa.String(200)),
        sa.Column("pid", sa.Integer),
        sa.Column("pid_started", sa.Float),
        sa.Column("run_id", sa.String(64)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("usage", sa.JSON),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("allowed_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("ix_jobs_state", "jobs", ["state", "priority"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id", "id"])
    op.create_table(
        "policy_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("doc", sa.JSON),
        sa.Column("digest", sa.String(64)),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("policy", "version", name="uq_policy_versions_policy_version"),
    )


def downgrade() -> None:
    op.drop_table("policy_versions")
    op.drop_table("job_events")
    op.drop_table("jobs")
