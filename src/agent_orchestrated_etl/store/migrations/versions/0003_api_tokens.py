"""api_tokens and api_sessions: serve's tokens with roles, stored hashed, and the dashboard's sessions.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="api_tokens_pkey"),
        sa.UniqueConstraint("token_sha256", name="api_tokens_token_sha256_key"),
    )
    op.create_table(
        "api_sessions",
        sa.Column("id_sha256", sa.String(64), nullable=False),
        sa.Column("token_name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name="api_sessions_pkey"),
    )
    op.create_index("ix_api_sessions_token_name", "api_sessions", ["token_name"])


def downgrade() -> None:
    op.drop_index("ix_api_sessions_token_name", table_name="api_sessions")
    op.drop_table("api_sessions")
    op.drop_table("api_tokens")
