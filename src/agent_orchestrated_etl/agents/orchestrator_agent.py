"""The orchestrator agent: plans a run, places tasks on ETL agents, recovers, commits.

Every choice it makes (the plan, which agent, which recovery, each commit)
is published as a Decision event and kept in the run record.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.agents.messages import (
    AssignTask,
    Decision,
    DestinationCommitted,
    Heartbeat,
    Message,
    RunEvent,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
)
from agent_orchestrated_etl.exceptions import AgentETLError
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.plan import Plan, destination_label, make_plan
from agent_orchestrated_etl.spec import RetryPolicy
from agent_orchestrated_etl.store.records import RunStore

ASSIGN_TIMEOUT_SECONDS = 10.0


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
        if capability in agent.capabilities and agent.in_flight < agent.capacity:
            if best is None or (agent.in_flight / agent.capacity, agent.name) < (best.in_flight / best.capacity, best.name):
                best = agent
    return best


@dataclass(frozen=True)
class Recovery:
    action: Literal["retry", "fail"]
    reason: str
    delay: float = 0.0


class RecoveryPolicy(Protocol):
    def decide(self, failure: TaskFailed, retry: RetryPolicy) -> Recovery: ...


class BackoffRecoveryPolicy:
    """Retry transient errors with exponential backoff and full jitter; fail fast on the rest."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def decide(self, failure: TaskFailed, retry: RetryPolicy) -> Recovery:
        if failure.remedy == "retry":
            if failure.attempt < retry.attempts:
                ceiling = min(retry.max_backoff_seconds, retry.backoff_seconds * 2 ** (failure.attempt - 1))
                delay = self.rng.uniform(0, ceiling)
                return Recovery("retry", f"{failure.error_type} is transient; attempt {failure.attempt + 1} of {retry.attempts} in {delay:.1f}s", delay)
            return Recovery("fail", f"{failure.error_type} persisted through {retry.attempts} attempts")
        reasons = {
            "fix_config": "the spec or the environment must change; retrying cannot help",
            "quarantine": "the data cannot be read row by row, so it cannot be quarantined",
            "cancelled": "the run was cancelled",
        }
        return Recovery("fail", f"{failure.error_type}: {reasons.get(failure.remedy, 'retrying cannot help')}")


class OrchestratorAgent(Agent):
    role = "orchestrator"

    def __init__(self, name: str, hub: Hub, store: RunStore, *, max_workers: int, policy: RecoveryPolicy | None = None) -> None:
        super().__init__(name, hub, capabilities=frozenset({"plan", "assign", "recover", "commit"}))
        self.store = store
        self.max_workers = max_workers
        self.policy = policy or BackoffRecoveryPolicy()
        self.agents: dict[str, AgentInfo] = {}
        self._heartbeats = hub.subscribe("agents.heartbeat", maxsize=1000)

    async def handle(self, message: Message) -> Message | None:
        return None

    def _see_agents(self) -> None:
        while (beat := self._heartbeats.get_nowait()) is not None:
            if isinstance(beat, Heartbeat) and beat.role == "etl":
                info = self.agents.setdefault(beat.agent, AgentInfo(beat.agent, frozenset(beat.capabilities), beat.capacity))
                info.last_seen = time.monotonic()

    def _publish(self, event: RunEvent) -> None:
        self.hub.publish(event.topic, event)

    def decide(self, run_id: str, subject: str, choice: str, reason: str) -> None:
        self._publish(Decision(sender=self.name, run_id=run_id, subject=subject, choice=choice, reason=reason))

    async def execute(self, ctx: RunContext, *, spec_file: str, spec_sha256: str) -> str:
        """Run a whole pipeline; returns the final status. Every event goes to the store."""
        run_id = ctx.run_id
        events = self.hub.subscribe(f"run.{run_id}", maxsize=1_000_000)
        recorder = asyncio.create_task(self._record(events))
        self.store.start_run(run_id, ctx.spec.name, spec_file, spec_sha256)
        status, error = "failed", None
        try:
            try:
                plan = make_plan(ctx.spec, ctx.sources)
            except AgentETLError as exc:
                self.decide(run_id, "plan", "fail before any task", str(exc))
                raise
            ctx.tasks = {t.id: t for t in plan.tasks}
            self.store.add_tasks(run_id, [t.as_dict() for t in plan.tasks])
            self._publish(RunStarted(sender=self.name, run_id=run_id, pipeline=ctx.spec.name, spec_sha256=spec_sha256, tasks=[t.as_dict() for t in plan.tasks]))
            self.decide(run_id, "plan", f"{len(plan.tasks)} tasks for {len(ctx.destinations)} destination(s)", f"order: {', '.join(plan.order())}")
            for d in plan.decisions:
                self.decide(run_id, d.subject, d.choice, d.reason)
            error = await self._run_tasks(ctx, plan)
            if error is None:
                await self._commit(ctx, plan)
                status = "succeeded"
            else:
                status = "cancelled" if ctx.cancelled.is_set() and error == "cancelled" else "failed"
        except AgentETLError as exc:
            error = str(exc)
        except asyncio.CancelledError:
            ctx.cancelled.set()
            status, error = "cancelled", "cancelled"
            raise
        finally:
            if status != "succeeded":
                await asyncio.to_thread(_abort_all, ctx)
            self._publish(RunFinished(sender=self.name, run_id=run_id, status=status, error=error))  # type: ignore[arg-type]
            await self._finish_recording(events, recorder)
        return status

    async def _run_tasks(self, ctx: RunContext, plan: Plan) -> str | None:
        run_id = ctx.run_id
        by_id = {t.id: t for t in plan.tasks}
        waiting = list(plan.order())
        done: set[str] = set()
        running: dict[str, str] = {}
        attempts: dict[str, int] = {}
        not_before: dict[str, float] = {}
        failure: str | None = None
        results = self.hub.subscribe(f"run.{run_id}", maxsize=1_000_000)
        try:
            while (waiting and failure is None) or running:
                if failure is None:
                    await self._assign_ready(ctx, by_id, waiting, done, running, attempts, not_before)
                    if waiting and not running and not self._any_agent_for(by_id, waiting):
                        failure = f"no ETL agent can run {waiting[0]} (needs {by_id[waiting[0]].capability})"
                        self.decide(run_id, waiting[0], "fail the run", failure)
                        break
                # Wake for the earliest delayed retry; with nothing running, poll for agents' heartbeats.
                delays = [at - time.monotonic() for at in not_before.values()]
                timeout = max(0.0, min(delays)) if delays else (None if running else 0.05)
                try:
                    event = await asyncio.wait_for(results.get(), timeout=timeout)
                except TimeoutError:
                    continue
                if isinstance(event, TaskFinished) and event.task_id in running:
                    self._release(running.pop(event.task_id))
                    done.add(event.task_id)
                elif isinstance(event, TaskFailed) and event.task_id in running:
                    self._release(running.pop(event.task_id))
                    if failure is not None or event.remedy == "cancelled":
                        failure = failure or "cancelled"
                        continue
                    recovery = self.policy.decide(event, ctx.spec.retry)
                    self.decide(run_id, f"task {event.task_id}", recovery.action, recovery.reason)
                    if recovery.action == "retry":
                        waiting.insert(0, event.task_id)
                        not_before[event.task_id] = time.monotonic() + recovery.delay
                    else:
                        failure = event.message
                        ctx.cancelled.set()  # stop the other tasks between batches; their staging is aborted
        finally:
            self.hub.unsubscribe(results)
        return failure

    def _any_agent_for(self, by_id: dict, waiting: list[str]) -> bool:
        return any(by_id[w].capability in a.capabilities for a in self.agents.values() for w in waiting)

    def _release(self, agent: str) -> None:
        if agent in self.agents:
            self.agents[agent].in_flight -= 1

    async def _assign_ready(self, ctx: RunContext, by_id: dict, waiting: list[str], done: set[str], running: dict[str, str], attempts: dict[str, int], not_before: dict[str, float]) -> None:
        self._see_agents()
        now = time.monotonic()
        for task_id in list(waiting):
            if len(running) >= self.max_workers:
                return
            task = by_id[task_id]
            if not set(task.depends_on) <= done or not_before.get(task_id, 0) > now:
                continue
            agent = select_agent(list(self.agents.values()), task.capability)
            if agent is None:
                continue
            attempts[task_id] = attempts.get(task_id, 0) + 1
            not_before.pop(task_id, None)
            self.decide(ctx.run_id, f"task {task_id}", f"assign to {agent.name}", f"it has {task.capability}; load {agent.in_flight}/{agent.capacity}, the lowest")
            try:
                await self.hub.request(agent.name, AssignTask(sender=self.name, run_id=ctx.run_id, task=task.as_dict(), attempt=attempts[task_id]), timeout=ASSIGN_TIMEOUT_SECONDS)
            except (TimeoutError, RuntimeError) as exc:
                self.decide(ctx.run_id, f"task {task_id}", "reassign", f"{agent.name} did not accept it: {exc or 'no answer'}")
                attempts[task_id] -= 1
                continue
            agent.in_flight += 1
            running[task_id] = agent.name
            waiting.remove(task_id)

    async def _commit(self, ctx: RunContext, plan: Plan) -> None:
        for index, dest in enumerate(ctx.destinations):
            label = destination_label(ctx.spec, index)
            feeding = plan.feeding(index)
            self.decide(ctx.run_id, f"destination {label}", "commit", f"all {len(feeding)} task(s) feeding it finished; publish {ctx.spec.all_destinations[index].write} in one step")
            result = await asyncio.to_thread(dest.commit, ctx.run_id, feeding)
            self._publish(DestinationCommitted(sender=self.name, run_id=ctx.run_id, destination=label, rows=result.rows, quarantined_rows=result.quarantined_rows, already_committed=result.already_committed))

    async def _record(self, events) -> None:  # type: ignore[no-untyped-def]
        while True:
            event = await events.get()
            if isinstance(event, RunEvent):
                await asyncio.to_thread(self.store.record, event)

    async def _finish_recording(self, events, recorder: asyncio.Task[None]) -> None:  # type: ignore[no-untyped-def]
        recorder.cancel()
        try:
            await recorder
        except asyncio.CancelledError:
            pass
        while (event := events.get_nowait()) is not None:
            if isinstance(event, RunEvent):
                self.store.record(event)
        self.hub.unsubscribe(events)


def _abort_all(ctx: RunContext) -> None:
    for dest in ctx.destinations:
        dest.abort(ctx.run_id)
