"""What makes a run survive a crash: checkpoints, the per-pipeline lock, and the audit log.

- A checkpoint says a task's output is completely staged (in the destination's
  staging area or the run workspace), with the task's counts. Resume skips
  checkpointed tasks and commits their staged output.
- The lock keeps two runs of one pipeline from staging or committing at once.
  A holder whose process has died (a crash, a kill) is taken over.
- The audit log is append-only: who did what to which run, with which spec.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import UTC, datetime
from typing import Any

import psutil
import sqlalchemy as sa

from agent_orchestrated_etl.exceptions import FatalError


def define_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    checkpoints = sa.Table(
        "checkpoints",
        metadata,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(300), primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
    )
    locks = sa.Table(
        "pipeline_locks",
        metadata,
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    )
    audit = sa.Table(
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
    return checkpoints, locks, audit


class PipelineBusyError(FatalError):
    """Another live run holds the pipeline."""


class Durability:
    def __init__(self, engine: sa.Engine, checkpoints: sa.Table, locks: sa.Table, audit: sa.Table) -> None:
        self.engine = engine
        self._checkpoints = checkpoints
        self._locks = locks
        self._audit = audit

    def checkpoint(self, run_id: str, task_id: str, attempt: int, outcome: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._checkpoints.delete().where(sa.and_(self._checkpoints.c.run_id == run_id, self._checkpoints.c.task_id == task_id)))
            conn.execute(self._checkpoints.insert().values(run_id=run_id, task_id=task_id, attempt=attempt, staged_at=_now(), outcome=outcome))

    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self._checkpoints.c.task_id, self._checkpoints.c.outcome).where(self._checkpoints.c.run_id == run_id)).all()
        return {task_id: outcome for task_id, outcome in rows}

    def acquire(self, pipeline: str, run_id: str) -> str | None:
        """Take the pipeline's lock for this run; returns the run id of a dead holder taken over.

        Raises PipelineBusyError when a live process holds it for another run.
        """
        me = {"pipeline": pipeline, "run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "acquired_at": _now()}
        with self.engine.begin() as conn:
            holder = conn.execute(sa.select(self._locks).where(self._locks.c.pipeline == pipeline).with_for_update()).mappings().first()
            if holder is None:
                try:
                    conn.execute(self._locks.insert().values(**me))
                except sa.exc.IntegrityError:  # another process took it between our read and insert
                    raise PipelineBusyError(f"pipeline {pipeline} was just started by another process", hint="wait for it, or see `agent-etl runs`") from None
                return None
            if holder["run_id"] != run_id and _alive(holder["host"], holder["pid"]):
                raise PipelineBusyError(
                    f"pipeline {pipeline} is already running as run {holder['run_id']} (pid {holder['pid']} on {holder['host']})",
                    hint="wait for it to finish; two runs of one pipeline never load at once",
                )
            conn.execute(self._locks.update().where(self._locks.c.pipeline == pipeline).values(**me))
            return str(holder["run_id"])

    def release(self, pipeline: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._locks.delete().where(sa.and_(self._locks.c.pipeline == pipeline, self._locks.c.run_id == run_id)))

    def audit(self, action: str, *, run_id: str | None = None, pipeline: str | None = None, spec_sha256: str | None = None, detail: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._audit.insert().values(at=_now(), actor=_actor(), action=action, run_id=run_id, pipeline=pipeline, spec_sha256=spec_sha256, detail=detail))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._audit.select().order_by(self._audit.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]


def _alive(host: str, pid: int) -> bool:
    # Only a process on this host can be checked; one elsewhere is presumed alive.
    if host != socket.gethostname():
        return True
    return psutil.pid_exists(pid) and pid != 0


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _now() -> datetime:
    return datetime.now(UTC)
