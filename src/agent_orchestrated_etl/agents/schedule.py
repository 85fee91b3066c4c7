"""Where a run stands while the orchestrator drives it: what its scheduler, recovery executor and committer share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_orchestrated_etl.model.messages import TaskFailed
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.planning.tasks import Plan, Task


@dataclass(frozen=True)
class RunSpec:
    """The run as every assignment carries it: the raw spec, and the tables multi-table sources expanded to."""

    file: str
    text: str
    sha256: str
    tables: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Schedule:
    """Where every task of a run stands while the orchestrator drives it."""

    plan: Plan
    waiting: list[str]
    done: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    running: dict[str, str] = field(default_factory=dict)  # task -> agent
    started: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    timed_out: set[str] = field(default_factory=set)
    skipped_reasons: list[str] = field(default_factory=list)
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task -> its check results
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)
    failure: str | None = None
    #: The task failure that ended the run (or made it partial), with its remedy.
    failed: TaskFailed | None = None
    #: Every agent given a task of the run: they hear when it is cancelled.
    agents_used: set[str] = field(default_factory=set)

    def ready(self, task: Task, now: float) -> bool:
        return set(task.depends_on) <= self.done and self.not_before.get(task.id, 0) <= now

    @property
    def active(self) -> bool:
        return bool(self.running) or (bool(self.waiting) and self.failure is None)
