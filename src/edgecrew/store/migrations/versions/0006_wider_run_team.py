"""runs.team holds "team/agent" for chat runs of one agent: up to 64 + 1 + 64 characters.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite does not enforce VARCHAR lengths (and altering a column there means a table rebuild).
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("runs", "team", type_=sa.String(160), existing_type=sa.String(128), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("runs", "team", type_=sa.String(128), existing_type=sa.String(160), existing_nullable=False)
