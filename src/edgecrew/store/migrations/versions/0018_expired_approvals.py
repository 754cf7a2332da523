"""Approvals left pending by runs that ended first expire: no decision can reach such a run any more.

From now on a run's pending approvals expire as the run ends (``RunStore.set_status``); this closes the
ones already left behind (a run cancelled while it waited stayed in every approvals inbox for ever).

Revision ID: 0018
Revises: 0017
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    approvals = sa.table(
        "approvals",
        sa.column("run_id", sa.String),
        sa.column("status", sa.String),
        sa.column("decision_note", sa.String),
        sa.column("decided_at", sa.Float),
    )
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("status", sa.String))
    ended = sa.select(runs.c.id).where(runs.c.status.in_(("succeeded", "failed", "cancelled")))
    op.execute(
        approvals.update()
        .where(approvals.c.status == "pending", approvals.c.run_id.in_(ended))
        .values(status="expired", decision_note="the run ended first", decided_at=time.time())
    )


def downgrade() -> None:
    pass  # an expired approval stays expired: its run has ended either way
