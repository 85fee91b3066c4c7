"""Run records in the metadata store: runs, their tasks, and every event (decisions, errors).

SQLAlchemy Core on a SQLite file under AGENT_ETL_HOME by default, or the
DATABASE_URL database. The store is the source of truth about runs; the
hub only carries the news.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent_orchestrated_etl.agents.messages import RunEvent
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.store.durability import Durability, define_tables

metadata = sa.MetaData()

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

checkpoints, pipeline_locks, audit_log = define_tables(metadata)

# Progress events are news, not history; the task row keeps the totals.
_NOT_STORED = {"task_progress"}


class RunStore:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url)
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigurationError(f"cannot open the metadata store: {exc.__class__.__name__}", where=_safe(url), hint="check DATABASE_URL") from exc
        _check_columns(self.engine, url)
        self.durability = Durability(self.engine, checkpoints, pipeline_locks, audit_log)

    def start_run(self, run_id: str, pipeline: str, spec_file: str, spec_sha256: str, spec_text: str, parent_run_id: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.insert().values(run_id=run_id, pipeline=pipeline, spec_file=spec_file, spec_sha256=spec_sha256, spec_text=spec_text, parent_run_id=parent_run_id, status="running", started_at=_now()))

    def set_status(self, run_id: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(status=status))

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again; its history of events stays."""
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(status="running", finished_at=None, error=None))

    def add_tasks(self, run_id: str, planned: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            known = {r[0] for r in conn.execute(sa.select(tasks.c.task_id).where(tasks.c.run_id == run_id))}
            new = [{"run_id": run_id, "task_id": t["id"], "kind": t["kind"], "status": "pending", "attempts": 0, "definition": t} for t in planned if t["id"] not in known]
            if new:
                conn.execute(tasks.insert(), new)

    def planned_tasks(self, run_id: str) -> list[dict[str, Any]]:
        """The task definitions stored when the run was planned, as recoveries changed them since."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tasks.c.definition).where(tasks.c.run_id == run_id).order_by(tasks.c.task_id)).all()
        return [row[0] for row in rows if row[0] is None or "split_into" not in row[0]]

    def split_task(self, run_id: str, task_id: str, parts: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        """A task was replaced by ``parts``; ``changed`` are tasks that now depend on the parts instead."""
        with self.engine.begin() as conn:
            # The mark lives in the definition: the task's own events may still be landing on its status.
            old = conn.execute(sa.select(tasks.c.definition).where(tasks.c.run_id == run_id, tasks.c.task_id == task_id)).scalar_one()
            conn.execute(tasks.update().where(tasks.c.run_id == run_id, tasks.c.task_id == task_id).values(status="split", definition={**(old or {}), "split_into": [t["id"] for t in parts]}))
            conn.execute(tasks.insert(), [{"run_id": run_id, "task_id": t["id"], "kind": t["kind"], "status": "pending", "attempts": 0, "definition": t} for t in parts])
            for t in changed:
                conn.execute(tasks.update().where(tasks.c.run_id == run_id, tasks.c.task_id == t["id"]).values(definition=t))

    def record(self, event: RunEvent) -> None:
        if event.kind in _NOT_STORED:
            return
        with self.engine.begin() as conn:
            conn.execute(events.insert().values(run_id=event.run_id, kind=event.kind, at=event.at, payload=event.model_dump(mode="json")))
            self._apply(conn, event)

    def _apply(self, conn: sa.Connection, event: Any) -> None:
        # A split task's last events may land after the split was stored: it stays "split".
        where = sa.and_(tasks.c.run_id == event.run_id, tasks.c.task_id == getattr(event, "task_id", None), tasks.c.status != "split")
        if event.kind == "task_started":
            conn.execute(tasks.update().where(where).values(status="running", agent=event.agent, attempts=event.attempt))
        elif event.kind == "task_finished":
            conn.execute(tasks.update().where(where).values(status="succeeded", rows_read=event.rows_read, rows_written=event.rows_written, rows_quarantined=event.rows_quarantined, seconds=event.seconds, checks=event.checks, error=None))
        elif event.kind == "task_failed":
            conn.execute(tasks.update().where(where).values(status="failed", error=event.message))
        elif event.kind == "destination_committed":
            # What a run wrote is what its destinations committed, not what its tasks staged.
            conn.execute(
                runs.update()
                .where(runs.c.run_id == event.run_id)
                .values(rows_written=sa.func.coalesce(runs.c.rows_written, 0) + event.rows, rows_quarantined=sa.func.coalesce(runs.c.rows_quarantined, 0) + event.quarantined_rows)
            )
        elif event.kind == "run_finished":
            conn.execute(runs.update().where(runs.c.run_id == event.run_id).values(status=event.status, finished_at=event.at, error=event.error))

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(runs.select().order_by(runs.c.started_at.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            # An exact id first: a workflow's pipelines have ids that extend the workflow's.
            run = conn.execute(runs.select().where(runs.c.run_id == run_id)).mappings().first() or conn.execute(
                runs.select().where(runs.c.run_id.startswith(run_id)).order_by(runs.c.started_at.desc())
            ).mappings().first()
            if run is None:
                return None
            full_id = run["run_id"]
            task_rows = conn.execute(tasks.select().where(tasks.c.run_id == full_id).order_by(tasks.c.task_id)).mappings().all()
            event_rows = conn.execute(events.select().where(events.c.run_id == full_id).order_by(events.c.id)).mappings().all()
        return {**dict(run), "tasks": [dict(t) for t in task_rows], "events": [dict(e["payload"]) for e in event_rows]}

    def close(self) -> None:
        self.engine.dispose()


def _check_columns(engine: sa.Engine, url: str) -> None:
    """Refuse a store made by an older version rather than fail later on a missing column.

    There are no migrations yet (nothing has been released); until there are,
    an old store is moved aside, which loses only run history.
    """
    inspector = sa.inspect(engine)
    missing = {
        table.name: sorted({c.name for c in table.columns} - {c["name"] for c in inspector.get_columns(table.name)})
        for table in metadata.sorted_tables
        if inspector.has_table(table.name)
    }
    missing = {name: columns for name, columns in missing.items() if columns}
    if missing:
        where = _safe(url)
        raise ConfigurationError(
            f"the metadata store was made by an older version of agent-etl (missing {missing})",
            where=where,
            hint=f"move it aside, e.g. mv {where.removeprefix('sqlite:///')} {where.removeprefix('sqlite:///')}.old, or point DATABASE_URL elsewhere",
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _safe(url: str) -> str:
    """A URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"

