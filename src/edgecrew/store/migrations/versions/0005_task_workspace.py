"""The task workspace: tasks, their code versions, results, messages and feedback.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _task_fk() -> "sa.Column[str]":
    return sa.Column("task_id", sa.String(32), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("team", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"])
    op.create_table(
        "task_code",
        sa.Column("task_id", sa.String(32), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("language", sa.String(32)),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("author", sa.String(128)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "task_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _task_fk(),
        sa.Column("version", sa.Integer),
        sa.Column("accuracy", sa.Float),
        sa.Column("loss", sa.Float),
        sa.Column("runtime_s", sa.Float),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("log_file", sa.String(255)),
        sa.Column("author", sa.String(128)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_task_results_task_id", "task_results", ["task_id", "id"])
    op.create_table(
        "task_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _task_fk(),
        sa.Column("sender", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_task_messages_task_id", "task_messages", ["task_id", "id"])
    op.create_table(
        "task_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _task_fk(),
        sa.Column("version", sa.Integer),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_task_feedback_task_id", "task_feedback", ["task_id", "id"])


def downgrade() -> None:
    for table in ("task_feedback", "task_messages", "task_results", "task_code", "tasks"):
        op.drop_table(table)
