"""memory_episodes: the agents' memory of runs, failures, recoveries and profiles, with their vectors.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "memory_episodes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("pipeline", sa.String(200)),
        sa.Column("system", sa.String(200)),
        sa.Column("signature", sa.Text),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("embedder", sa.String(60), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="memory_episodes_pkey"),
    )
    op.create_index("ix_memory_episodes_at", "memory_episodes", ["at"])
    op.create_index("ix_memory_episodes_run_id", "memory_episodes", ["run_id"])
    op.create_index("ix_memory_episodes_system", "memory_episodes", ["system"])


def downgrade() -> None:
    op.drop_index("ix_memory_episodes_system", table_name="memory_episodes")
    op.drop_index("ix_memory_episodes_run_id", table_name="memory_episodes")
    op.drop_index("ix_memory_episodes_at", table_name="memory_episodes")
    op.drop_table("memory_episodes")
