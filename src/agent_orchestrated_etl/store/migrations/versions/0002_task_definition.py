"""tasks.definition: the task as first planned, so a resume reads what the first attempt would have.

Revision ID: 0002
Revises: 0001

Runs recorded before it have no definitions; resuming one re-plans
(OrchestratorAgent._first_plan).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("definition", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("definition")
