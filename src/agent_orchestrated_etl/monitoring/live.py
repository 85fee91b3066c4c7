"""Live state of runs, folded from hub events: what the CLI and the dashboard render."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent_orchestrated_etl.model.failure import RunFailure
from agent_orchestrated_etl.model.messages import RunEvent
from agent_orchestrated_etl.model.vocabulary import FailureKind, RunStatus, TaskStatus

# What a user can do about a failure, by the error's remedy branch (exceptions.py).
FIX_HINTS = {
    "retry": "a transient error that outlasted the retries; check the system it names, then resume the run",
    "fix_config": "change the spec or the environment as the message says, then run again",
    "quarantine": "the data is malformed beyond row-level quarantine; fix the input or relax the check",
    "fail": "retrying cannot help; fix what the message names, then run again",
    "cancelled": "the run was cancelled; resume or start it again",
}


#: The span rows/s is measured over while a task runs: recent enough to move at the end of a
#: task, long enough to span a few progress events (one per batch or per 0.25 s).
RATE_WINDOW_SECONDS = 5.0


def reads_source(kind: str, source: str | None) -> bool:
    """Whether a task's rows read count as rows read from sources, the one rule every count uses.

    A transform_load task over staged tables reads the workspace, which stage tasks
    filled (their rows count already); one with a source of its own reads that source.
    """
    return kind != "transform_load" or source is not None


@dataclass
class TaskState:
    id: str
    kind: str
    status: TaskStatus = TaskStatus.PENDING
    agent: str | None = None
    attempt: int = 0
    rows: int = 0
    bytes: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    started: float | None = None
    seconds: float | None = None
    error: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    error_type: str | None = None
    remedy: FailureKind | None = None
    #: What a running task waits for (an HTTP retry), from its last progress event.
    note: str | None = None
    source: str | None = None
    #: (monotonic time, rows) of recent progress, for the rate over a sliding window.
    samples: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    @property
    def reads_source(self) -> bool:
        return reads_source(self.kind, self.source)

    def observe(self, rows: int, now: float | None = None) -> None:
        """A cumulative row count seen at ``now``; samples older than the window are dropped."""
        now = time.monotonic() if now is None else now
        self.rows = rows
        self.samples.append((now, rows))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW_SECONDS:
            self.samples.popleft()

    def rate(self, now: float | None = None) -> float:
        """Rows/s over the last few seconds while running; the task's average once it ended.

        The window reaches to ``now``, so a task that stops reading (a stalled source, the
        commit at the end) drops towards 0 instead of showing its last figure for ever.
        """
        if self.seconds is not None:
            return self.rows / self.seconds if self.seconds > 0 else 0.0
        if self.started is None:
            return 0.0
        now = time.monotonic() if now is None else now
        since, rows_then = self.samples[0] if self.samples else (self.started, 0)
        if now - since < RATE_WINDOW_SECONDS:  # a young task: from its start, not from its first batch
            since, rows_then = self.started, 0
        elapsed = now - since
        return (self.rows - rows_then) / elapsed if elapsed > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rate()

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("started", "samples", "source")}
        data["reads_source"] = self.reads_source
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["fix_hint"] = FIX_HINTS.get(self.remedy or "") if self.error else None
        return data


@dataclass
class RunState:
    run_id: str
    pipeline: str = ""
    status: RunStatus = RunStatus.RUNNING
    tasks: dict[str, TaskState] = field(default_factory=dict)
    decisions: list[dict[str, str]] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: Why the run did not succeed and the next step.
    failure: RunFailure | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def seconds(self, now: datetime) -> float:
        if self.started_at is None:
            return 0.0
        return ((self.finished_at or now) - self.started_at).total_seconds()

    @property
    def source_rows(self) -> int:
        """Rows read from sources (``reads_source``), what the dashboard, the API and /metrics show too."""
        return sum(t.rows for t in self.tasks.values() if t.reads_source)

    def apply(self, event: RunEvent) -> None:
        data: Any = event
        kind = event.kind
        if kind == "run_started":
            # A resumed run starts again under its own id: it is running, with a fresh plan.
            self.pipeline, self.started_at, self.status, self.error, self.finished_at = (
                data.pipeline,
                event.at,
                RunStatus.RUNNING,
                None,
                None,
            )
            self.failure = None
            self.commits = []
            for task in data.tasks:
                self.tasks[task["id"]] = TaskState(
                    task["id"], task["kind"], depends_on=list(task.get("depends_on", [])), source=task.get("source")
                )
        elif kind == "run_finished":
            self.status, self.error, self.finished_at = data.status, data.error, event.at
            self.failure = data.failure
            self.started_at = self.started_at or event.at
        elif kind == "decision":
            self.decisions.append(
                {
                    "by": event.sender,
                    "at": event.at.isoformat(),
                    "subject": data.subject,
                    "choice": data.choice,
                    "reason": data.reason,
                }
            )
        elif kind == "destination_committed":
            self.commits.append(
                {"destination": data.destination, "rows": data.rows, "quarantined_rows": data.quarantined_rows}
            )
        elif kind == "destination_verified":
            for commit in reversed(self.commits):
                if commit["destination"] == data.destination:
                    commit["verify"] = data.result
                    break
        elif kind.startswith("task_") and data.task_id in self.tasks:
            self._apply_task(self.tasks[data.task_id], data)

    @staticmethod
    def _apply_task(task: TaskState, data: Any) -> None:
        if data.kind == "task_started":
            task.status, task.agent, task.attempt, task.started = (
                TaskStatus.RUNNING,
                data.agent,
                data.attempt,
                time.monotonic(),
            )
            task.rows = task.bytes = 0
            task.note, task.seconds = None, None
            task.samples.clear()
        elif data.kind == "task_progress":
            task.observe(data.rows)
            task.bytes, task.note = data.bytes, data.note
        elif data.kind == "task_finished":
            task.status, task.rows, task.bytes, task.seconds = (
                TaskStatus.SUCCEEDED,
                data.rows_read,
                data.bytes,
                data.seconds,
            )
            task.rows_written, task.rows_quarantined, task.checks, task.error = (
                data.rows_written,
                data.rows_quarantined,
                data.checks,
                None,
            )
            task.error_type = task.remedy = task.note = None
        elif data.kind == "task_failed":
            task.status, task.error = (
                (TaskStatus.CANCELLED if data.remedy is FailureKind.CANCELLED else TaskStatus.FAILED),
                data.message,
            )
            task.error_type, task.remedy, task.note = data.error_type, data.remedy, None

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready snapshot: what a dashboard needs to draw the run from scratch."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "error": self.error,
            "failure": self.failure.model_dump(mode="json") if self.failure else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": round(self.seconds(now), 3),
            "rows_read": self.source_rows,
            "rows_written": sum(c["rows"] for c in self.commits),
            "rows_quarantined": sum(c["quarantined_rows"] for c in self.commits),
            "tasks": [t.to_dict() for t in self.tasks.values()],
            "decisions": self.decisions,
            "commits": self.commits,
        }
