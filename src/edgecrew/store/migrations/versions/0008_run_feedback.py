"""Feedback on runs: a person's rating of an answer, a comment, and optionally the answer they wanted.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),  # +1 up, -1 down
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("correction", sa.Text),  # the answer the person wanted, when they gave one
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),  # cli | api | ui | v1
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_run_feedback_run_id", "run_feedback", ["run_id", "id"])


def downgrade() -> None:
    op.drop_table("run_feedback")
