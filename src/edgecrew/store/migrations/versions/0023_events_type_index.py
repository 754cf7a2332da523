"""An index on the events' type and time: the supervisor's watchers (``IncidentStore.run_events``: the
model and tool calls of the last minutes), the alert rules over model calls (``AlertStore.model_calls``)
and the newest events of one type (``RunStore.events_of_type``, ``run_filter_choices``) read events by
type, and each read scanned the whole table, every run's every event, on every watcher tick.

(type, created_at): the watchers and alerts ask for a type within a time window, one range of this index
each; a reader of one type's newest events finds them in it too.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_type_created_at", "events", ["type", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_type_created_at", "events")
