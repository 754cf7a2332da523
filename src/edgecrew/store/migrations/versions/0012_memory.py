"""Long-term memory: what agents remember, with its scope and embedding.

The vector index over ``memories.embedding`` (a sqlite-vec ``vec0`` table, or a pgvector table) is
not created here: it needs the extension loaded on the connection and is sized by the embedding
model, so ``edgecrew.store.memory`` creates it on first use and fills it from these rows.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("agent", sa.String(128)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_memories_scope", "memories", ["scope", "scope_id", "model"])


def downgrade() -> None:
    op.drop_index("ix_memories_scope", table_name="memories")
    op.drop_table("memories")
