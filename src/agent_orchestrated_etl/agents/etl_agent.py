"""The ETL agent: accepts task assignments, runs them with its tools, reports as it goes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.agents.tools import ToolCall, ToolRegistry
from agent_orchestrated_etl.exceptions import AgentETLError, InternalError
from agent_orchestrated_etl.execution import Cancelled, RunContext
from agent_orchestrated_etl.model.messages import (
    AssignTask,
    Message,
    RunEvent,
    TaskAccepted,
    TaskFailed,
    TaskFinished,
    TaskProgress,
    TaskStarted,
)
from agent_orchestrated_etl.model.vocabulary import FailureKind, Remedy

PROGRESS_EVERY_SECONDS = 0.25


class ETLAgent(Agent):
    role = "etl"

    def __init__(self, name: str, hub: Hub, tools: ToolRegistry, runs: dict[str, RunContext], *, capacity: int = 2) -> None:
        super().__init__(name, hub, capabilities=tools.names(), capacity=capacity)
        self.tools = tools
        self.runs = runs
        self._working: dict[str, asyncio.Task[None]] = {}

    @property
    def load(self) -> int:
        return len(self._working)

    async def handle(self, message: Message) -> Message | None:
        if not isinstance(message, AssignTask):
            return None
        task_id = message.task["id"]
        if self.load >= self.capacity:
            raise RuntimeError(f"{self.name} is full ({self.load}/{self.capacity}); cannot take {task_id}")
        self._working[task_id] = asyncio.create_task(self._run(message), name=f"{self.name}:{task_id}")
        self.heartbeat()
        return TaskAccepted(sender=self.name, task_id=task_id)

    def _emit(self, event: RunEvent) -> None:
        self.hub.publish(event.topic, event)

    async def _run(self, assignment: AssignTask) -> None:
        run_id, task, attempt = assignment.run_id, assignment.task, assignment.attempt
        loop = asyncio.get_running_loop()
        counters = {"rows": 0, "bytes": 0, "sent": 0.0}

        def progress(rows: int, nbytes: int, note: str | None = None) -> None:
            # Called from the worker thread (or a source's HTTP loop); the hub lives on the loop.
            counters["rows"] += rows
            counters["bytes"] += nbytes
            now = time.monotonic()
            if note is not None:  # a retry is news at once, not at the next tick
                counters["sent"] = now
                event = TaskProgress(sender=self.name, run_id=run_id, task_id=task["id"], rows=counters["rows"], bytes=counters["bytes"], note=note)
                loop.call_soon_threadsafe(self._emit, event)
            elif now - counters["sent"] >= PROGRESS_EVERY_SECONDS:
                counters["sent"] = now
                event = TaskProgress(sender=self.name, run_id=run_id, task_id=task["id"], rows=counters["rows"], bytes=counters["bytes"])
                loop.call_soon_threadsafe(self._emit, event)

        self._emit(TaskStarted(sender=self.name, run_id=run_id, task_id=task["id"], agent=self.name, attempt=attempt))
        try:
            output = await self.tools.get(task["kind"])({"task": task}, ToolCall(self.runs[run_id], progress))
            self._emit(TaskFinished(sender=self.name, run_id=run_id, task_id=task["id"], **output.model_dump()))
        except (AgentETLError, Cancelled, Exception) as exc:
            self._emit(self._failure(run_id, task["id"], attempt, exc))
        finally:
            self._working.pop(task["id"], None)
            self.heartbeat()

    def _failure(self, run_id: str, task_id: str, attempt: int, exc: BaseException) -> TaskFailed:
        error: Any = exc
        if isinstance(exc, Cancelled):
            return TaskFailed(sender=self.name, run_id=run_id, task_id=task_id, attempt=attempt, error_type="Cancelled", remedy=FailureKind.CANCELLED, message="cancelled", next_remedy=Remedy.RESUME)
        if not isinstance(exc, AgentETLError):
            error = InternalError(f"{type(exc).__name__}: {exc}", where=f"task {task_id}")
        return TaskFailed(sender=self.name, run_id=run_id, task_id=task_id, attempt=attempt, error_type=type(error).__name__, remedy=error.remedy, message=str(error), next_remedy=error.next_remedy)
