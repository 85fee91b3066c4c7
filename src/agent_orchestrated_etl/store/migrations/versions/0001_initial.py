"""The store as it was when migrations began (agent-etl before tasks.definition).

Revision ID: 0001
Revises:

A store made before migrations already has some of these tables: the run
records always, ``pipelines`` and ``alerts`` only if ``agent-etl serve`` ran
on it. Upgrading such a store runs this revision to create what it lacks;
store/migrate.py then checks that the tables it kept have every column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())

    def create(name: str, *columns: sa.Column, indexes: Sequence[str] = (), **constraints: sa.Constraint) -> None:
        if name in existing:
            return
        op.create_table(name, *columns, *constraints.values())
        for column in indexes:
            op.create_index(f"ix_{name}_{column}", name, [column])

    create(
        "runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("spec_file", sa.Text()),
        sa.Column("spec_sha256", sa.String(64)),
        sa.Column("spec_text", sa.Text()),
        sa.Column("parent_run_id", sa.String(64)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text()),
        sa.Column("rows_written", sa.BigInteger()),
        sa.Column("rows_quarantined", sa.BigInteger()),
        pk=sa.PrimaryKeyConstraint("run_id", name="runs_pkey"),
        indexes=["pipeline", "parent_run_id"],
    )
    create(
        "tasks",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("agent", sa.String(100)),
        sa.Column("attempts", sa.Integer()),
        sa.Column("rows_read", sa.BigInteger()),
        sa.Column("rows_written", sa.BigInteger()),
        sa.Column("rows_quarantined", sa.BigInteger()),
        sa.Column("seconds", sa.Float()),
        sa.Column("error", sa.Text()),
        sa.Column("checks", sa.JSON()),
        pk=sa.PrimaryKeyConstraint("run_id", "task_id", name="tasks_pkey"),
        fk=sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="tasks_run_id_fkey"),
    )
    create(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        pk=sa.PrimaryKeyConstraint("id", name="events_pkey"),
        fk=sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="events_run_id_fkey"),
        indexes=["run_id"],
    )
    create(
        "checkpoints",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(300), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        pk=sa.PrimaryKeyConstraint("run_id", "task_id", name="checkpoints_pkey"),
    )
    create(
        "pipeline_locks",
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        pk=sa.PrimaryKeyConstraint("pipeline", name="pipeline_locks_pkey"),
    )
    create(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("pipeline", sa.String(200)),
        sa.Column("spec_sha256", sa.String(64)),
        sa.Column("detail", sa.Text()),
        pk=sa.PrimaryKeyConstraint("id", name="audit_log_pkey"),
    )
    create(
        "pipelines",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("base_dir", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fire_at", sa.DateTime(timezone=True)),
        pk=sa.PrimaryKeyConstraint("name", name="pipelines_pkey"),
    )
    create(
        "alerts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("pipeline", sa.String(200)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        pk=sa.PrimaryKeyConstraint("id", name="alerts_pkey"),
        indexes=["at", "run_id"],
    )


def downgrade() -> None:
    for name in ("alerts", "pipelines", "audit_log", "pipeline_locks", "checkpoints", "events", "tasks", "runs"):
        op.drop_table(name)
