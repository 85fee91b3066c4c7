"""Every table of the metadata store, in one ``metadata`` that the migrations keep in step.

A change here needs a revision in ``store/migrations/versions/`` (see that
package's docstring); tests/store/test_migrations.py fails until it has one.
"""

from __future__ import annotations

import sqlalchemy as sa

# PostgreSQL's own names for single-column constraints, so a store made before
# migrations (named by the server) and one made by them agree, and SQLite's
# batch mode has names to drop.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "pk": "%(table_name)s_pkey",
        "fk": "%(table_name)s_%(column_0_name)s_fkey",
        "uq": "%(table_name)s_%(column_0_name)s_key",
    }
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pipeline", sa.String(200), nullable=False, index=True),
    sa.Column("spec_file", sa.Text),
    sa.Column("spec_sha256", sa.String(64)),
    # The raw spec (env references unresolved), so a run can be resumed as it was started.
    sa.Column("spec_text", sa.Text),
    sa.Column("parent_run_id", sa.String(64), index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
    sa.Column("rows_written", sa.BigInteger, default=0),
    sa.Column("rows_quarantined", sa.BigInteger, default=0),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("agent", sa.String(100)),
    sa.Column("attempts", sa.Integer, default=0),
    sa.Column("rows_read", sa.BigInteger, default=0),
    sa.Column("rows_written", sa.BigInteger, default=0),
    sa.Column("rows_quarantined", sa.BigInteger, default=0),
    sa.Column("seconds", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("checks", sa.JSON),
    # The task as first planned (partition bounds, incremental window), so a
    # resume reads exactly what the first attempt would have, not a re-plan of live data.
    sa.Column("definition", sa.JSON),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), index=True, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
)

# A task's output completely staged, with its counts: what resume skips and commits.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.JSON, nullable=False),
)

pipeline_locks = sa.Table(
    "pipeline_locks",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("pipeline", sa.String(200)),
    sa.Column("spec_sha256", sa.String(64)),
    sa.Column("detail", sa.Text),
)

# Pipelines registered with `agent-etl serve`: the raw YAML (``${env:...}``
# unresolved, so no secret is stored), where relative paths resolve, schedule state.
pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("yaml", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("base_dir", sa.Text, nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The last cron time the scheduler acted on (ran or skipped): what "missed during downtime" is measured from.
    sa.Column("last_fire_at", sa.DateTime(timezone=True)),
)

# Alerts the monitor raised, so the dashboard and the API can show what was sent and when.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("pipeline", sa.String(200)),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("suppressed", sa.Integer, nullable=False, default=0),
)

# API tokens of `agent-etl serve`, managed with `agent-etl tokens`: the SHA-256 of each
# token, never the token, so every replica of serve on this store shares them.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The dashboard's sessions (a cookie it gets for a token), by the SHA-256 of the cookie's value.
api_sessions = sa.Table(
    "api_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("token_name", sa.String(100), nullable=False, index=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# The agents' memory (agents/memory.py): one row per episode, with the vector its text embeds to.
memory_episodes = sa.Table(
    "memory_episodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # run, failure, recovery, profile, note
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("pipeline", sa.String(200)),
    sa.Column("system", sa.String(200), index=True),
    # The normalised error signature (class, system, code, masked message) of a failure or a recovery.
    sa.Column("signature", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    # Which embedding made the vector, so a store searched with another one re-embeds rather than mixes.
    sa.Column("embedder", sa.String(60), nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)
