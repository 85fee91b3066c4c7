"""Live state of runs, folded from hub events: what the CLI and the dashboard render."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent_orchestrated_etl.agents.messages import RunEvent


@dataclass
class TaskState:
    id: str
    kind: str
    status: str = "pending"
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

    @property
    def rows_per_second(self) -> float:
        elapsed = self.seconds if self.seconds is not None else (time.monotonic() - self.started if self.started else 0)
        return self.rows / elapsed if elapsed > 0 else 0.0


@dataclass
class RunState:
    run_id: str
    pipeline: str = ""
    status: str = "running"
    tasks: dict[str, TaskState] = field(default_factory=dict)
    decisions: list[dict[str, str]] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def apply(self, event: RunEvent) -> None:
        data: Any = event
        kind = event.kind
        if kind == "run_started":
            self.pipeline = data.pipeline
            for task in data.tasks:
                self.tasks[task["id"]] = TaskState(task["id"], task["kind"])
        elif kind == "run_finished":
            self.status, self.error = data.status, data.error
        elif kind == "decision":
            self.decisions.append({"by": event.sender, "subject": data.subject, "choice": data.choice, "reason": data.reason})
        elif kind == "destination_committed":
            self.commits.append({"destination": data.destination, "rows": data.rows, "quarantined_rows": data.quarantined_rows})
        elif kind.startswith("task_") and data.task_id in self.tasks:
            self._apply_task(self.tasks[data.task_id], data)

    @staticmethod
    def _apply_task(task: TaskState, data: Any) -> None:
        if data.kind == "task_started":
            task.status, task.agent, task.attempt, task.started = "running", data.agent, data.attempt, time.monotonic()
            task.rows = task.bytes = 0
        elif data.kind == "task_progress":
            task.rows, task.bytes = data.rows, data.bytes
        elif data.kind == "task_finished":
            task.status, task.rows, task.bytes, task.seconds = "succeeded", data.rows_read, data.bytes, data.seconds
            task.rows_written, task.rows_quarantined, task.checks, task.error = data.rows_written, data.rows_quarantined, data.checks, None
        elif data.kind == "task_failed":
            task.status, task.error = ("cancelled" if data.remedy == "cancelled" else "failed"), data.message
