"""Run records in the metadata store: runs, their tasks, and every event (decisions, errors).

SQLAlchemy Core on a SQLite file under AGENT_ETL_HOME by default, or the
DATABASE_URL database, upgraded to this version's schema when opened
(store/migrate.py). The store is the source of truth about runs; the hub
only carries the news.
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent_orchestrated_etl.exceptions import ConfigurationError, MissingDependencyError
from agent_orchestrated_etl.model.messages import RunEvent
from agent_orchestrated_etl.model.vocabulary import RunStatus, TaskStatus
from agent_orchestrated_etl.redaction import redact_data, redact_model, register_resolved
from agent_orchestrated_etl.secrets import resolve as resolve_references
from agent_orchestrated_etl.store import migrate
from agent_orchestrated_etl.store.durability import Durability
from agent_orchestrated_etl.store.schema import events, pipeline_locks, runs, tasks

# Progress events are news, not history; the task row keeps the totals. One with a note
# (a retry: the attempt and when the next goes) is kept: it explains where the time went.
_NOT_STORED = {"task_progress"}

#: What a resume may reopen: a run that ended without succeeding, or one whose process died ("running").
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PARTIAL, RunStatus.RUNNING)


def _create_private(path: Path) -> None:
    """The store's folder (AGENT_ETL_HOME by default: workspaces and the token live there too) 0700 and its file 0600, when we create them.

    Its events and errors are for the user who runs agent-etl; SQLite gives the journal and WAL files the database file's mode.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class RunStore:
    def __init__(self, url: str) -> None:
        url = _with_driver(url)
        where = _safe(url)
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _create_private(Path(url.removeprefix("sqlite:///")).expanduser())
        try:
            self.revisions = migrate.upgrade(url, where)
            self.engine = sa.create_engine(url)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigurationError(
                f"cannot open the metadata store: {exc.__class__.__name__}", where=where, hint="check DATABASE_URL"
            ) from exc
        self.durability = Durability(self.engine)

    def start_run(
        self,
        run_id: str,
        pipeline: str,
        spec_file: str,
        spec_sha256: str,
        spec_text: str,
        parent_run_id: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    pipeline=pipeline,
                    spec_file=spec_file,
                    spec_sha256=spec_sha256,
                    spec_text=spec_text,
                    parent_run_id=parent_run_id,
                    status=RunStatus.RUNNING,
                    started_at=_now(),
                )
            )

    def set_status(self, run_id: str, status: str, *, was: tuple[str, ...]) -> bool:
        """Move a run from one of the statuses ``was`` to ``status``; False when it had moved on meanwhile."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id == run_id, runs.c.status.in_(was), _not_held_elsewhere(run_id))
                    .values(status=status)
                ).rowcount
                == 1
            )

    def reopen_run(self, run_id: str) -> bool:
        """A resumed run is running again; its history of events stays. False when it is not resumable (any more)."""
        with self.engine.begin() as conn:
            update = runs.update().where(
                runs.c.run_id == run_id, runs.c.status.in_(RESUMABLE), _not_held_elsewhere(run_id)
            )
            return conn.execute(update.values(status=RunStatus.RUNNING, finished_at=None, error=None)).rowcount == 1

    def settle(self, run_id: str, status: str, error: str | None) -> bool:
        """Finish a run whose process died, as its destinations' ledgers say; False when it was not running (any more)."""
        with self.engine.begin() as conn:
            update = runs.update().where(
                runs.c.run_id == run_id, runs.c.status == RunStatus.RUNNING, _not_held_elsewhere(run_id)
            )
            return conn.execute(update.values(status=status, finished_at=_now(), error=error)).rowcount == 1

    def supersede(self, run_id: str, *, by: str, was: tuple[str, ...]) -> bool:
        """A new run of the pipeline loads what ``run_id`` did not: it is never resumed."""
        with self.engine.begin() as conn:
            update = runs.update().where(runs.c.run_id == run_id, runs.c.status.in_(was), _not_held_elsewhere(run_id))
            return (
                conn.execute(update.values(status=RunStatus.SUPERSEDED, error=f"superseded by run {by}")).rowcount == 1
            )

    def runs_of(self, pipeline: str | None, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        """The pipeline's (or every pipeline's) runs in these statuses, oldest first."""
        query = runs.select().where(runs.c.status.in_(statuses)).order_by(runs.c.started_at)
        if pipeline is not None:
            query = query.where(runs.c.pipeline == pipeline)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(r) for r in rows]

    def add_tasks(self, run_id: str, planned: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            known = {r[0] for r in conn.execute(sa.select(tasks.c.task_id).where(tasks.c.run_id == run_id))}
            new = [
                {
                    "run_id": run_id,
                    "task_id": t["id"],
                    "kind": t["kind"],
                    "status": TaskStatus.PENDING,
                    "attempts": 0,
                    "definition": redact_data(t),
                }
                for t in planned
                if t["id"] not in known
            ]
            if new:
                conn.execute(tasks.insert(), new)

    def planned_tasks(self, run_id: str) -> list[dict[str, Any] | None]:
        """The task definitions stored at planning, as recoveries changed them since (None: stored none)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tasks.c.definition).where(tasks.c.run_id == run_id).order_by(tasks.c.task_id)
            ).all()
        return [row[0] for row in rows if row[0] is None or "split_into" not in row[0]]

    def split_task(self, run_id: str, task_id: str, parts: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        """A task was replaced by ``parts``; ``changed`` are tasks that now depend on the parts instead."""
        with self.engine.begin() as conn:
            # The mark lives in the definition: the task's own events may still be landing on its status.
            old = conn.execute(
                sa.select(tasks.c.definition).where(tasks.c.run_id == run_id, tasks.c.task_id == task_id)
            ).scalar_one()
            conn.execute(
                tasks.update()
                .where(tasks.c.run_id == run_id, tasks.c.task_id == task_id)
                .values(status=TaskStatus.SPLIT, definition={**(old or {}), "split_into": [t["id"] for t in parts]})
            )
            conn.execute(
                tasks.insert(),
                [
                    {
                        "run_id": run_id,
                        "task_id": t["id"],
                        "kind": t["kind"],
                        "status": TaskStatus.PENDING,
                        "attempts": 0,
                        "definition": redact_data(t),
                    }
                    for t in parts
                ],
            )
            for t in changed:
                conn.execute(
                    tasks.update()
                    .where(tasks.c.run_id == run_id, tasks.c.task_id == t["id"])
                    .values(definition=redact_data(t))
                )

    def record(self, event: RunEvent) -> None:
        if event.kind in _NOT_STORED and getattr(event, "note", None) is None:
            return
        event = redact_model(event)  # most come through the hub, which redacted them already
        with self.engine.begin() as conn:
            conn.execute(
                events.insert().values(
                    run_id=event.run_id, kind=event.kind, at=event.at, payload=event.model_dump(mode="json")
                )
            )
            self._apply(conn, event)

    def _apply(self, conn: sa.Connection, event: Any) -> None:
        # A split task's last events may land after the split was stored: it stays "split".
        where = sa.and_(
            tasks.c.run_id == event.run_id,
            tasks.c.task_id == getattr(event, "task_id", None),
            tasks.c.status != TaskStatus.SPLIT,
        )
        if event.kind == "task_started":
            conn.execute(
                tasks.update().where(where).values(status=TaskStatus.RUNNING, agent=event.agent, attempts=event.attempt)
            )
        elif event.kind == "task_finished":
            conn.execute(
                tasks.update()
                .where(where)
                .values(
                    status=TaskStatus.SUCCEEDED,
                    rows_read=event.rows_read,
                    rows_written=event.rows_written,
                    rows_quarantined=event.rows_quarantined,
                    seconds=event.seconds,
                    checks=event.checks,
                    error=None,
                )
            )
        elif event.kind == "task_failed":
            conn.execute(tasks.update().where(where).values(status=TaskStatus.FAILED, error=event.message))
        elif event.kind == "destination_committed":
            # What a run wrote is what its destinations committed, not what its tasks staged.
            conn.execute(
                runs.update()
                .where(runs.c.run_id == event.run_id)
                .values(
                    rows_written=sa.func.coalesce(runs.c.rows_written, 0) + event.rows,
                    rows_quarantined=sa.func.coalesce(runs.c.rows_quarantined, 0) + event.quarantined_rows,
                )
            )
        elif event.kind == "run_finished":
            # A status only moves forward, and only the run's own process moves it: a losing
            # process (a refused resume, a run whose lock was taken over) changes nothing.
            finished = runs.update().where(
                runs.c.run_id == event.run_id, runs.c.status == RunStatus.RUNNING, _not_held_elsewhere(event.run_id)
            )
            conn.execute(finished.values(status=event.status, finished_at=event.at, error=event.error))

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(runs.select().order_by(runs.c.started_at.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            # An exact id first: a workflow's pipelines have ids that extend the workflow's.
            run = (
                conn.execute(runs.select().where(runs.c.run_id == run_id)).mappings().first()
                or conn.execute(
                    runs.select().where(runs.c.run_id.startswith(run_id)).order_by(runs.c.started_at.desc())
                )
                .mappings()
                .first()
            )
            if run is None:
                return None
            full_id = run["run_id"]
            task_rows = (
                conn.execute(tasks.select().where(tasks.c.run_id == full_id).order_by(tasks.c.task_id)).mappings().all()
            )
            event_rows = (
                conn.execute(events.select().where(events.c.run_id == full_id).order_by(events.c.id)).mappings().all()
            )
        history = [dict(e["payload"]) for e in event_rows]
        # The failure (remedy, next step) travels in the run's last RunFinished; a running run has none yet.
        finished = [e for e in history if e["kind"] == "run_finished"]
        failure = (
            finished[-1].get("failure")
            if finished and run["status"] not in (RunStatus.RUNNING, RunStatus.SUCCEEDED)
            else None
        )
        return {**dict(run), "failure": failure, "tasks": [dict(t) for t in task_rows], "events": history}

    def close(self) -> None:
        self.engine.dispose()


def store_revisions(url: str) -> migrate.Revisions:
    """The store's schema revision and the newest this version knows, without upgrading it."""
    url = _with_driver(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).expanduser().exists():
        return migrate.Revisions(None, migrate.HEAD)  # connecting would create the file
    try:
        return migrate.revisions(url)
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigurationError(
            f"cannot open the metadata store: {exc.__class__.__name__}", where=_safe(url), hint="check DATABASE_URL"
        ) from exc


def _not_held_elsewhere(run_id: str) -> sa.ColumnElement[bool]:
    """No other process holds the lock for this run (this one may, or nobody: a run refused its lock, a workflow)."""
    other = sa.or_(pipeline_locks.c.host != socket.gethostname(), pipeline_locks.c.pid != os.getpid())
    return ~sa.exists().where(pipeline_locks.c.run_id == run_id, other)


def _now() -> datetime:
    return datetime.now(UTC)


def _with_driver(url: str) -> str:
    """The URL with its secret references resolved, and postgresql:// naming psycopg 3, the driver the [postgres]
    extra installs (SQLAlchemy would pick psycopg2)."""
    url = resolve_references(url, where="DATABASE_URL")
    register_resolved("DATABASE_URL", url)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return url  # opening it says what is wrong
    if parsed.drivername not in ("postgresql", "postgres"):
        return url
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingDependencyError("a PostgreSQL metadata store (DATABASE_URL)", "postgres") from None
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _safe(url: str) -> str:
    """A URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
