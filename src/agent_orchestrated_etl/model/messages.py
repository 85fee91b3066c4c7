"""Typed messages carried by the hub: tasks, events and decisions, never data.

Every message has a ``topic`` it is published on. Events of a run go to
``run.<run_id>``, so a subscriber to ``run.*`` sees every run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrated_etl.model.failure import RunFailure
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.model.vocabulary import BreakerState, FailureKind, Remedy, RunStatus


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    id: str = Field(default_factory=lambda: uuid4().hex[:12])
    sender: str = ""
    at: datetime = Field(default_factory=_now)


class RunEvent(Message):
    """Something that happened in a run; the monitor and the store keep all of them."""

    run_id: str

    @property
    def topic(self) -> str:
        return f"run.{self.run_id}"


class RunStarted(RunEvent):
    kind: Literal["run_started"] = "run_started"
    pipeline: str
    spec_sha256: str
    tasks: list[dict[str, Any]]


class RunFinished(RunEvent):
    kind: Literal["run_finished"] = "run_finished"
    status: RunStatus
    error: str | None = None
    #: Why it did not succeed and what to do next; None when it succeeded.
    failure: RunFailure | None = None


class TaskStarted(RunEvent):
    kind: Literal["task_started"] = "task_started"
    task_id: str
    agent: str
    attempt: int


class TaskProgress(RunEvent):
    kind: Literal["task_progress"] = "task_progress"
    task_id: str
    rows: int
    bytes: int
    #: What the task waits for, when it waits (an HTTP retry: the attempt and when the next one goes).
    note: str | None = None


class TaskFinished(RunEvent, TaskOutcome):
    """A task's outcome, as its fields: the JSON of the event stays flat, as the store and the API show it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["task_finished"] = "task_finished"
    task_id: str

    @property
    def outcome(self) -> TaskOutcome:
        return TaskOutcome.model_validate(self.model_dump(include=set(TaskOutcome.model_fields)))


class TaskFailed(RunEvent):
    kind: Literal["task_failed"] = "task_failed"
    task_id: str
    attempt: int
    error_type: str
    remedy: FailureKind
    message: str
    #: What the user does if this failure ends the run (exceptions.Remedy).
    next_remedy: Remedy = Remedy.BUG


class Decision(RunEvent):
    """What an agent decided and why: the plan, the choice of agent, a recovery."""

    kind: Literal["decision"] = "decision"
    subject: str
    choice: str
    reason: str


class DestinationCommitted(RunEvent):
    kind: Literal["destination_committed"] = "destination_committed"
    destination: str
    rows: int
    quarantined_rows: int
    already_committed: bool


class DestinationVerified(RunEvent):
    """A committed destination reconciled with its source (verify/reconcile.py); ``result`` is a quality result."""

    kind: Literal["destination_verified"] = "destination_verified"
    destination: str
    result: dict[str, Any]


class BreakerChanged(Message):
    """A circuit breaker of an external system changed state; shared by every run that uses it."""

    kind: Literal["breaker_changed"] = "breaker_changed"
    system: str
    state: BreakerState
    previous: BreakerState
    consecutive_failures: int
    reason: str

    @property
    def topic(self) -> str:
        return f"breakers.{self.system}"


class AssignTask(Message):
    """Request from the orchestrator to an ETL agent; the reply is a TaskAccepted.

    Everything the agent needs travels by value, so that an agent in another
    process can open the run itself: the raw spec (its ``${env:}`` references
    unresolved, so no secret crosses the hub; the agent resolves them), the
    tables multi-table sources were expanded to, and the tasks this one reads from.
    """

    kind: Literal["assign_task"] = "assign_task"
    run_id: str
    task: dict[str, Any]
    attempt: int
    spec_file: str
    spec_text: str
    spec_sha256: str
    tables: dict[str, list[str]] = Field(default_factory=dict)
    dependencies: list[dict[str, Any]] = Field(default_factory=list)


class StopTask(Message):
    """To the agent running a task: stop it between batches (it ran past its timeout); it then fails as cancelled."""

    kind: Literal["stop_task"] = "stop_task"
    run_id: str
    task_id: str


class CancelRun(Message):
    """To every agent with a task of the run: stop them all between batches."""

    kind: Literal["cancel_run"] = "cancel_run"
    run_id: str


class TaskAccepted(Message):
    kind: Literal["task_accepted"] = "task_accepted"
    task_id: str


class Heartbeat(Message):
    kind: Literal["heartbeat"] = "heartbeat"
    agent: str
    role: str
    capabilities: list[str]
    load: int
    capacity: int

    @property
    def topic(self) -> str:
        return "agents.heartbeat"
