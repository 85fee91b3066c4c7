"""The orchestrator's scheduler: which tasks are ready, which agent takes each, timeouts, and the loop.

It talks to ETL agents only by hub messages: an assignment carries its task
and the run's spec by value, results come back as TaskFinished / TaskFailed
events, and a stop (a task's timeout, a cancelled run) is a message to the
agent running the task. A failed task goes to the recovery executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from agent_orchestrated_etl.agents.hub import Hub, Subscription
from agent_orchestrated_etl.agents.recording import Voice
from agent_orchestrated_etl.agents.recovery_executor import RecoveryExecutor
from agent_orchestrated_etl.agents.schedule import RunSpec, Schedule
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.messages import (
    AssignTask,
    CancelRun,
    Heartbeat,
    Message,
    StopTask,
    TaskFailed,
    TaskFinished,
)
from agent_orchestrated_etl.planning.tasks import Task
from agent_orchestrated_etl.store.records import RunStore

ASSIGN_TIMEOUT_SECONDS = 10.0
#: How long a cancelled run waits for its running tasks to stop between batches.
STOP_TIMEOUT_SECONDS = 30.0


@dataclass
class AgentInfo:
    name: str
    capabilities: frozenset[str]
    capacity: int
    in_flight: int = 0
    last_seen: float = field(default_factory=time.monotonic)


def select_agent(agents: list[AgentInfo], capability: str) -> AgentInfo | None:
    """The least loaded agent that has the capability and a free slot; ties go by name."""
    best: AgentInfo | None = None
    for agent in agents:
        if capability not in agent.capabilities or agent.in_flight >= agent.capacity:
            continue
        if best is None or (agent.in_flight / agent.capacity, agent.name) < (best.in_flight / best.capacity, best.name):
            best = agent
    return best


class Scheduler:
    """Drives the schedules of every run of one orchestrator over the ETL agents it hears from."""

    def __init__(
        self, name: str, hub: Hub, voice: Voice, store: RunStore, recovery: RecoveryExecutor, *, max_workers: int
    ) -> None:
        self.name = name
        self.hub = hub
        self.voice = voice
        self.store = store
        self.recovery = recovery
        self.max_workers = max_workers
        self.agents: dict[str, AgentInfo] = {}
        self._heartbeats = hub.subscribe("agents.heartbeat", maxsize=1000)
        self._runs: dict[str, tuple[RunContext, Schedule]] = {}

    def _see_agents(self) -> None:
        while (beat := self._heartbeats.get_nowait()) is not None:
            if isinstance(beat, Heartbeat) and beat.role == "etl":
                info = self.agents.setdefault(
                    beat.agent, AgentInfo(beat.agent, frozenset(beat.capabilities), beat.capacity)
                )
                info.last_seen = time.monotonic()

    async def run(self, ctx: RunContext, schedule: Schedule, spec: RunSpec) -> None:
        """Run every task of the schedule that can run; returns when none is running or waiting to."""
        results = self.hub.subscribe(f"run.{ctx.run_id}", maxsize=1_000_000)
        self._runs[ctx.run_id] = (ctx, schedule)
        try:
            while schedule.active:
                if schedule.failure is None:
                    await self._assign_ready(ctx, schedule, spec)
                    await self._enforce_timeouts(ctx, schedule)
                    if schedule.waiting and not schedule.running and not self._any_agent_for(ctx, schedule.waiting):
                        task = ctx.tasks[schedule.waiting[0]]
                        schedule.failure = f"no ETL agent can run {task.id} (needs {task.capability})"
                        self.voice.decide(ctx.run_id, f"task {task.id}", "fail", schedule.failure)
                        break
                try:
                    event = await asyncio.wait_for(results.get(), timeout=self._wake_in(ctx, schedule))
                except TimeoutError:
                    continue
                if isinstance(event, TaskFinished) and event.task_id in schedule.running:
                    self._release(schedule.running.pop(event.task_id))
                    schedule.done.add(event.task_id)
                    ctx.reports[event.task_id] = event.state
                    schedule.checks[event.task_id] = event.checks
                    outcome = event.outcome
                    schedule.outcomes[event.task_id] = outcome
                    await asyncio.to_thread(
                        self.store.durability.checkpoint,
                        ctx.run_id,
                        event.task_id,
                        schedule.attempts[event.task_id],
                        outcome,
                    )
                elif isinstance(event, TaskFailed) and event.task_id in schedule.running:
                    self._release(schedule.running.pop(event.task_id))
                    await self.recovery.recover(ctx, schedule, event)
        except asyncio.CancelledError:
            await self._stop_run(ctx, schedule)
            self.voice.decide(
                ctx.run_id,
                "run",
                "cancel",
                "asked to stop; running tasks stop between batches and their partial staging is dropped",
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                    await self._drain_running(results, schedule)
            raise
        finally:
            self.hub.unsubscribe(results)
            self._runs.pop(ctx.run_id, None)

    def cancel(self, run_id: str) -> bool:
        """Stop a run this scheduler drives: its running tasks stop between batches, no new one starts."""
        if run_id not in self._runs:
            return False
        ctx, schedule = self._runs[run_id]
        asyncio.get_running_loop().create_task(self._stop_run(ctx, schedule), name=f"cancel:{run_id}")
        return True

    async def _stop_run(self, ctx: RunContext, schedule: Schedule) -> None:
        ctx.cancelled.set()
        await self._tell(schedule.agents_used, CancelRun(sender=self.name, run_id=ctx.run_id))

    async def _tell(self, agents: set[str], message: Message) -> None:
        for agent in sorted(agents):
            # An agent that went away has nothing of the run left to stop or close.
            with contextlib.suppress(LookupError, TimeoutError):
                async with asyncio.timeout(ASSIGN_TIMEOUT_SECONDS):
                    await self.hub.send(agent, message)

    async def _drain_running(self, results: Subscription, schedule: Schedule) -> None:
        while schedule.running:
            event = await results.get()
            if isinstance(event, (TaskFinished, TaskFailed)) and event.task_id in schedule.running:
                self._release(schedule.running.pop(event.task_id))

    def _wake_in(self, ctx: RunContext, schedule: Schedule) -> float | None:
        """Wake for the earliest delayed retry or task deadline; with nothing running, poll for agents."""
        now = time.monotonic()
        moments = list(schedule.not_before.values())
        limit = ctx.spec.retry.task_timeout_seconds
        if limit:
            moments += [schedule.started[t] + limit for t in schedule.running if t not in schedule.timed_out]
        if moments:
            # Never 0: wait_for(..., 0) gives up without reading the queue, so a due
            # moment that cannot act yet (no free agent) would spin without seeing results.
            return max(0.01, min(moments) - now)
        return None if schedule.running else 0.05

    async def _enforce_timeouts(self, ctx: RunContext, schedule: Schedule) -> None:
        limit = ctx.spec.retry.task_timeout_seconds
        if not limit:
            return
        now = time.monotonic()
        for task_id, agent in list(schedule.running.items()):
            if task_id not in schedule.timed_out and now - schedule.started[task_id] > limit:
                schedule.timed_out.add(task_id)
                self.voice.decide(ctx.run_id, f"task {task_id}", "stop it", f"it ran past its timeout of {limit:g}s")
                await self._tell({agent}, StopTask(sender=self.name, run_id=ctx.run_id, task_id=task_id))

    def _any_agent_for(self, ctx: RunContext, waiting: list[str]) -> bool:
        return any(ctx.tasks[w].capability in a.capabilities for a in self.agents.values() for w in waiting)

    def _release(self, agent: str) -> None:
        if agent in self.agents:
            self.agents[agent].in_flight -= 1

    async def _assign_ready(self, ctx: RunContext, schedule: Schedule, spec: RunSpec) -> None:
        self._see_agents()
        if ctx.cancelled.is_set():  # asked to stop: no new task starts, running ones stop by message
            schedule.failure = schedule.failure or "cancelled"
            return
        now = time.monotonic()
        for task_id in list(schedule.waiting):
            # The limit holds across every run this orchestrator drives (a workflow's parallel pipelines).
            if sum(a.in_flight for a in self.agents.values()) >= self.max_workers:
                return
            task = ctx.tasks[task_id]
            if not schedule.ready(task, now) or _one_writer_busy(ctx, schedule, task):
                continue
            agent = select_agent(list(self.agents.values()), task.capability)
            if agent is None:
                continue
            attempt = schedule.attempts.get(task_id, 0) + 1
            reason = f"it has {task.capability}; load {agent.in_flight}/{agent.capacity}, the lowest"
            self.voice.decide(ctx.run_id, f"task {task_id}", f"assign to {agent.name}", reason)
            # The slot is taken before the request is awaited: another run's assignment may run meanwhile.
            agent.in_flight += 1
            schedule.agents_used.add(agent.name)
            try:
                await self.hub.request(
                    agent.name, _assignment(self.name, ctx, task, attempt, spec), timeout=ASSIGN_TIMEOUT_SECONDS
                )
            except (TimeoutError, RuntimeError) as exc:
                agent.in_flight -= 1
                self.voice.decide(
                    ctx.run_id, f"task {task_id}", "reassign", f"{agent.name} did not accept it: {exc or 'no answer'}"
                )
                continue
            schedule.attempts[task_id] = attempt
            schedule.not_before.pop(task_id, None)
            schedule.started[task_id] = time.monotonic()
            schedule.running[task_id] = agent.name
            schedule.waiting.remove(task_id)


def _one_writer_busy(ctx: RunContext, schedule: Schedule, task: Task) -> bool:
    """Whether the task's destination stages one task at a time and another task is staging into it now.

    SQLite locks its whole file for a write: parallel writers fail with "database is locked".
    """
    if task.destination is None or ctx.destinations[task.destination].capabilities.parallel_staging:
        return False
    return any(ctx.tasks[running].destination == task.destination for running in schedule.running)


def _assignment(sender: str, ctx: RunContext, task: Task, attempt: int, spec: RunSpec) -> AssignTask:
    return AssignTask(
        sender=sender,
        run_id=ctx.run_id,
        task=task.as_dict(),
        attempt=attempt,
        spec_file=spec.file,
        spec_text=spec.text,
        spec_sha256=spec.sha256,
        tables=spec.tables,
        dependencies=[ctx.tasks[d].as_dict() for d in task.depends_on],
    )
