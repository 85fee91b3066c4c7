"""The ETL agent: accepts task assignments, runs them with its tools, reports as it goes.

It knows a run only from the messages it gets: an assignment carries the task
and the run's spec by value, so the agent can open the run itself, in any
process. Stops and cancels come by message too. Agents living in the
orchestrator's process use the run it opened (``OpenRuns``) rather than open
the same files and connections again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.agents.tools import ToolCall, ToolRegistry
from agent_orchestrated_etl.config import Settings, load_settings
from agent_orchestrated_etl.exceptions import AgentETLError, InternalError
from agent_orchestrated_etl.execution import Cancelled, RunContext
from agent_orchestrated_etl.model.messages import (
    AssignTask,
    CancelRun,
    Message,
    RunEvent,
    StopTask,
    TaskAccepted,
    TaskFailed,
    TaskFinished,
    TaskProgress,
    TaskStarted,
)
from agent_orchestrated_etl.model.vocabulary import FailureKind, Remedy
from agent_orchestrated_etl.planning.tasks import Task
from agent_orchestrated_etl.spec import parse_spec, resolve_env

PROGRESS_EVERY_SECONDS = 0.25
log = logging.getLogger(__name__)


class OpenRuns:
    """The runs opened in this process, by run id: an explicit cache that agents here may share.

    The orchestrator's runtime adds each run it opens; an agent of the same
    process then stages through the same destinations and workspace. An agent
    never needs a run to be here.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunContext] = {}

    def add(self, ctx: RunContext) -> None:
        self._runs[ctx.run_id] = ctx

    def remove(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def get(self, run_id: str) -> RunContext | None:
        return self._runs.get(run_id)


def open_run(assignment: AssignTask, settings: Settings) -> RunContext:
    """The run of an assignment, opened from its spec as the orchestrator's runtime opens it."""
    loaded = parse_spec(assignment.spec_text, file=assignment.spec_file, limits=settings.spec_limits)
    assert loaded.pipeline is not None, "an assignment's spec is one pipeline (a workflow's runs are its pipelines')"
    spec = resolve_env(loaded.pipeline).rebased(Path(assignment.spec_file).resolve().parent)
    ctx = RunContext(assignment.run_id, spec, settings, settings.home_dir / "runs" / assignment.run_id)
    if assignment.tables:
        ctx.expand(assignment.tables)
    return ctx


class ETLAgent(Agent):
    role = "etl"

    def __init__(
        self,
        name: str,
        hub: Hub,
        tools: ToolRegistry,
        *,
        capacity: int = 2,
        settings: Settings | None = None,
        shared: OpenRuns | None = None,
    ) -> None:
        super().__init__(name, hub, capabilities=tools.names(), capacity=capacity)
        self.tools = tools
        self.settings = settings
        self.shared = shared
        #: Runs this agent opened itself, with the ids of its tasks of each; closed when it has none left.
        self._own: dict[str, RunContext] = {}
        self._tasks_of: dict[str, set[str]] = {}
        self._opening = asyncio.Lock()  # two tasks of a run arriving at once open it once
        #: Runs cancelled before this agent opened them (the cancel overtook the opening).
        self._cancelled: set[str] = set()
        self._working: dict[str, asyncio.Task[None]] = {}

    @property
    def load(self) -> int:
        return len(self._working)

    async def handle(self, message: Message) -> Message | None:
        if isinstance(message, (StopTask, CancelRun)):
            ctx = self._shared(message.run_id) or self._own.get(message.run_id)
            if isinstance(message, StopTask):
                if ctx is not None:
                    ctx.cancel_task(message.task_id)
            elif ctx is not None:
                ctx.cancelled.set()
            elif message.run_id in self._tasks_of:
                self._cancelled.add(message.run_id)
            return None
        if not isinstance(message, AssignTask):
            return None
        task_id = message.task["id"]
        if self.load >= self.capacity:
            raise RuntimeError(f"{self.name} is full ({self.load}/{self.capacity}); cannot take {task_id}")
        self._tasks_of.setdefault(message.run_id, set()).add(task_id)
        self._working[task_id] = asyncio.create_task(self._run(message), name=f"{self.name}:{task_id}")
        self.heartbeat()
        return TaskAccepted(sender=self.name, task_id=task_id)

    async def stop(self) -> None:
        await super().stop()
        for ctx in self._own.values():
            await asyncio.to_thread(ctx.close)
        self._own.clear()

    def _shared(self, run_id: str) -> RunContext | None:
        return self.shared.get(run_id) if self.shared is not None else None

    async def _context(self, assignment: AssignTask) -> RunContext:
        ctx = self._shared(assignment.run_id)
        if ctx is None:
            async with self._opening:
                ctx = self._own.get(assignment.run_id)
                if ctx is None:
                    settings = self.settings or load_settings()
                    ctx = self._own[assignment.run_id] = await asyncio.to_thread(open_run, assignment, settings)
            if assignment.run_id in self._cancelled:
                ctx.cancelled.set()
            # A run of our own knows only the tasks it was sent; the orchestrator's knows the plan.
            for definition in [*assignment.dependencies, assignment.task]:
                task = Task.from_dict(definition)
                ctx.tasks[task.id] = task
        ctx.uncancel_task(assignment.task["id"])  # a new attempt of a task stopped for its timeout
        return ctx

    def _emit(self, event: RunEvent) -> None:
        self.hub.publish(event.topic, event)

    async def _run(self, assignment: AssignTask) -> None:
        run_id, task, attempt = assignment.run_id, assignment.task, assignment.attempt
        loop = asyncio.get_running_loop()
        counters = {"rows": 0, "bytes": 0, "sent": 0.0}
        trailing: list[asyncio.TimerHandle] = []  # the one pending send of a throttled count, on the loop
        finished = False

        def send(note: str | None = None) -> None:
            for handle in trailing:  # this send carries the held-back count too
                handle.cancel()
            trailing.clear()
            counters["sent"] = time.monotonic()
            self._emit(
                TaskProgress(
                    sender=self.name,
                    run_id=run_id,
                    task_id=task["id"],
                    rows=counters["rows"],
                    bytes=counters["bytes"],
                    note=note,
                )
            )

        def send_later() -> None:
            # A count held back by the throttle is sent when the interval ends, or it would show until the next
            # batch: through a stalled page, the dashboard and /metrics would lag the rows already read.
            if not trailing and not finished:
                trailing.append(loop.call_later(PROGRESS_EVERY_SECONDS, send))

        def progress(rows: int, nbytes: int, note: str | None = None) -> None:
            # Called from the worker thread (or a source's HTTP loop); the hub lives on the loop.
            counters["rows"] += rows
            counters["bytes"] += nbytes
            now = time.monotonic()
            # A retry is news at once, not at the next tick. "sent" is set here too, so that calls made before
            # the loop runs the send do not each schedule one.
            if note is not None or now - counters["sent"] >= PROGRESS_EVERY_SECONDS:
                counters["sent"] = now
                loop.call_soon_threadsafe(send, note)
            else:
                loop.call_soon_threadsafe(send_later)

        self._emit(TaskStarted(sender=self.name, run_id=run_id, task_id=task["id"], agent=self.name, attempt=attempt))
        event: RunEvent
        try:
            ctx = await self._context(assignment)
            output = await self.tools.get(task["kind"])({"task": task}, ToolCall(ctx, progress))
            event = TaskFinished(sender=self.name, run_id=run_id, task_id=task["id"], **output.model_dump())
        except (AgentETLError, Cancelled, Exception) as exc:
            log.debug("task %s failed on attempt %d", task["id"], attempt, exc_info=True)  # --debug shows where
            event = self._failure(run_id, task["id"], attempt, exc)
        finally:
            self._working.pop(task["id"], None)
            finished = True  # the task's end carries its final count; no progress may follow it
            for handle in trailing:
                handle.cancel()
        await self._let_go(run_id, task["id"])
        self._emit(event)
        self.heartbeat()

    async def _let_go(self, run_id: str, task_id: str) -> None:
        """Close the run this agent opened itself once it has no task of it left."""
        tasks = self._tasks_of.get(run_id, set())
        tasks.discard(task_id)
        if tasks:
            return
        self._tasks_of.pop(run_id, None)
        self._cancelled.discard(run_id)
        if (ctx := self._own.pop(run_id, None)) is not None:
            # Before the outcome is reported: the committer, maybe in another process, must find the
            # destination's files and connections free (SQLite and DuckDB lock a file for one writer).
            await asyncio.to_thread(ctx.close)

    def _failure(self, run_id: str, task_id: str, attempt: int, exc: BaseException) -> TaskFailed:
        error: Any = exc
        if isinstance(exc, Cancelled):
            return TaskFailed(
                sender=self.name,
                run_id=run_id,
                task_id=task_id,
                attempt=attempt,
                error_type="Cancelled",
                remedy=FailureKind.CANCELLED,
                message="cancelled",
                next_remedy=Remedy.RESUME,
            )
        if not isinstance(exc, AgentETLError):
            error = InternalError(f"{type(exc).__name__}: {exc}", where=f"task {task_id}")
        return TaskFailed(
            sender=self.name,
            run_id=run_id,
            task_id=task_id,
            attempt=attempt,
            error_type=type(error).__name__,
            remedy=error.remedy,
            message=str(error),
            next_remedy=error.next_remedy,
        )
