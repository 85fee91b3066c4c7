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
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.model.vocabulary import Remedy
from agent_orchestrated_etl.store import schema


class PipelineBusyError(FatalError):
    """Another live run holds the pipeline (``holder_run_id``, when known)."""

    next_remedy = Remedy.WAIT

    def __init__(self, message: str, *, holder_run_id: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder_run_id = holder_run_id


class Durability:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def checkpoint(self, run_id: str, task_id: str, attempt: int, outcome: TaskOutcome) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.checkpoints.delete().where(
                    sa.and_(schema.checkpoints.c.run_id == run_id, schema.checkpoints.c.task_id == task_id)
                )
            )
            conn.execute(
                schema.checkpoints.insert().values(
                    run_id=run_id,
                    task_id=task_id,
                    attempt=attempt,
                    staged_at=_now(),
                    outcome=outcome.model_dump(mode="json"),
                )
            )

    def checkpoints(self, run_id: str) -> dict[str, TaskOutcome]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.checkpoints.c.task_id, schema.checkpoints.c.outcome).where(
                    schema.checkpoints.c.run_id == run_id
                )
            ).all()
        return {task_id: TaskOutcome.model_validate(outcome) for task_id, outcome in rows}

    def acquire(self, pipeline: str, run_id: str) -> str | None:
        """Take the pipeline's lock for this run; returns the run id of a dead holder taken over.

        Raises PipelineBusyError when a live process holds it, for another run or
        for this one (a resume while the run's own process is still going).
        """
        locks = schema.pipeline_locks
        me = {
            "pipeline": pipeline,
            "run_id": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": _now(),
        }
        with self.engine.connect() as conn:
            holder = conn.execute(sa.select(locks).where(locks.c.pipeline == pipeline)).mappings().first()
        if holder is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(locks.insert().values(**me))
            except sa.exc.IntegrityError:  # another process took it between our read and insert
                raise PipelineBusyError(
                    f"pipeline {pipeline} was just started by another process",
                    hint="wait for it, or see `agent-etl runs`",
                ) from None
            return None
        if _alive(holder["host"], holder["pid"]):
            if holder["run_id"] == run_id:
                raise PipelineBusyError(
                    f"run {run_id} is still running (pid {holder['pid']} on {holder['host']})",
                    holder_run_id=str(holder["run_id"]),
                    hint="wait for it to finish, or cancel it; a resume goes on only from a run whose process is gone",
                )
            raise PipelineBusyError(
                f"pipeline {pipeline} is already running as run {holder['run_id']} (pid {holder['pid']} on {holder['host']})",
                holder_run_id=str(holder["run_id"]),
                hint="two runs of one pipeline never load at once",
            )
        # One compare-and-set: of the processes that saw the same dead holder, exactly one
        # replaces it. A read-then-write would let two take it over (SQLite has no row locks).
        with self.engine.begin() as conn:
            taken = conn.execute(
                locks.update()
                .where(
                    locks.c.pipeline == pipeline,
                    locks.c.run_id == holder["run_id"],
                    locks.c.host == holder["host"],
                    locks.c.pid == holder["pid"],
                )
                .values(**me)
            ).rowcount
        if taken != 1:
            raise PipelineBusyError(
                f"pipeline {pipeline} was just taken over by another process from dead run {holder['run_id']}",
                hint="wait for it, or see `agent-etl runs`",
            )
        return str(holder["run_id"])

    def holder(self, pipeline: str) -> dict[str, Any] | None:
        """Who holds the pipeline's lock, with ``alive`` saying whether its process still runs."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(schema.pipeline_locks).where(schema.pipeline_locks.c.pipeline == pipeline))
                .mappings()
                .first()
            )
        return None if row is None else {**dict(row), "alive": _alive(row["host"], row["pid"])}

    def release(self, pipeline: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema.pipeline_locks.delete().where(
                    sa.and_(schema.pipeline_locks.c.pipeline == pipeline, schema.pipeline_locks.c.run_id == run_id)
                )
            )

    def audit(
        self,
        action: str,
        *,
        run_id: str | None = None,
        pipeline: str | None = None,
        spec_sha256: str | None = None,
        detail: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Append an entry; ``actor`` is this process's user@host unless given (serve names the API token's holder)."""
        values = {
            "at": _now(),
            "actor": actor or _actor(),
            "action": action,
            "run_id": run_id,
            "pipeline": pipeline,
            "spec_sha256": spec_sha256,
            "detail": detail,
        }
        with self.engine.begin() as conn:
            conn.execute(schema.audit_log.insert().values(**values))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(schema.audit_log.select().order_by(schema.audit_log.c.id.desc()).limit(limit))
                .mappings()
                .all()
            )
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
