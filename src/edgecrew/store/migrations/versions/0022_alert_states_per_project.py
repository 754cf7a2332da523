"""An alert state is keyed by its project as well as its rule and scope, and an alert event records its
project: two projects sharing the data dir with a rule of the same name kept one state between them
(one project's evaluation fired or resolved the other's alert).

States recorded before their project was kept (0021) get the project ``''``: the first project that
evaluates a rule of that name claims it (``AlertStore.state``), as it did before. Events get the
project of their rule's state (until now there was one state per rule and scope); those of an unknown
project keep NULL and are shown to every project.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_COLUMNS = "rule, scope, state, value, since, updated_at, error, version"


def _states_table(name: str, key: list[str], pk_name: str, project_nullable: bool) -> None:
    op.create_table(
        name,
        sa.Column("project", sa.Text, nullable=project_nullable),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint(*key, name=pk_name),
    )


def upgrade() -> None:
    with op.batch_alter_table("alert_events") as batch:
        batch.add_column(sa.Column("project", sa.Text()))
    op.execute(
        "UPDATE alert_events SET project = (SELECT s.project FROM alert_states s"
        " WHERE s.rule = alert_events.rule AND s.scope = alert_events.scope)"
    )
    op.create_index("ix_alert_events_project_rule", "alert_events", ["project", "rule", "at"])
    # A new primary key: a new table, the rows copied over (the same statements on SQLite and Postgres).
    _states_table("alert_states_0022", ["project", "rule", "scope"], "pk_alert_states", project_nullable=False)
    op.execute(
        f"INSERT INTO alert_states_0022 (project, {_COLUMNS})"
        f" SELECT COALESCE(project, ''), {_COLUMNS} FROM alert_states"
    )
    op.drop_table("alert_states")
    op.rename_table("alert_states_0022", "alert_states")


def downgrade() -> None:
    # One state per rule and scope again: of several projects' states of a rule, the latest one stays.
    _states_table("alert_states_0021", ["rule", "scope"], "alert_states_pkey", project_nullable=True)
    op.execute(
        f"INSERT INTO alert_states_0021 (project, {_COLUMNS})"
        f" SELECT NULLIF(project, ''), {_COLUMNS} FROM alert_states a WHERE NOT EXISTS ("
        " SELECT 1 FROM alert_states b WHERE b.rule = a.rule AND b.scope = a.scope"
        " AND (b.updated_at > a.updated_at OR (b.updated_at = a.updated_at AND b.project > a.project)))"
    )
    op.drop_table("alert_states")
    op.rename_table("alert_states_0021", "alert_states")
    op.drop_index("ix_alert_events_project_rule", "alert_events")
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("project")
