"""The orchestrator agent: plans a run, places tasks on ETL agents, recovers, commits.

Every choice it makes (the plan, which agent, which recovery, each commit)
is published as a Decision event and kept in the run record. A finished
task's output stays staged and is checkpointed, so a run that crashes, fails
or is cancelled can be resumed without redoing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from agent_orchestrated_etl import settlement
from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.empty_loads import LoadCounts, judge_empty_load
from agent_orchestrated_etl.agents.hub import Hub, Subscription
from agent_orchestrated_etl.agents.recovery import BackoffRecoveryPolicy, Recovery, RecoveryPolicy
from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.connectors.incremental import committed_states
from agent_orchestrated_etl.exceptions import AgentETLError, from_os_error
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.failure import RunFailure, failure_of, make_failure
from agent_orchestrated_etl.model.messages import (
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
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.model.vocabulary import FailureKind, RecoveryAction, Remedy, RunStatus
from agent_orchestrated_etl.planning.plan import destination_label
from agent_orchestrated_etl.planning.resume import Reuse
from agent_orchestrated_etl.planning.run import RunPlan, plan_run
from agent_orchestrated_etl.planning.tasks import Plan, Task
from agent_orchestrated_etl.quality.verdicts import blocking_failures
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore
from agent_orchestrated_etl.verify.after_commit import verify_after_commit

log = logging.getLogger(__name__)

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
        if capability in agent.capabilities and agent.in_flight < agent.capacity:
            if best is None or (agent.in_flight / agent.capacity, agent.name) < (best.in_flight / best.capacity, best.name):
                best = agent
    return best


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

    def ready(self, task: Task, now: float) -> bool:
        return set(task.depends_on) <= self.done and self.not_before.get(task.id, 0) <= now

    @property
    def active(self) -> bool:
        return bool(self.running) or (bool(self.waiting) and self.failure is None)


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

    def publish(self, event: RunEvent) -> None:
        self.hub.publish(event.topic, event)

    def decide(self, run_id: str, subject: str, choice: str, reason: str) -> None:
        self.publish(Decision(sender=self.name, run_id=run_id, subject=subject, choice=choice, reason=reason))

    async def execute(self, ctx: RunContext, *, spec_file: str, spec_text: str, spec_sha256: str, resume: bool = False, parent_run_id: str | None = None) -> RunStatus:
        """Run (or resume) a whole pipeline; returns the final status. Every event goes to the store."""
        run_id, pipeline = ctx.run_id, ctx.spec.name
        durability = self.store.durability
        taken_from, locked = None, False
        if resume:
            # The lock before the record: a resume that is refused leaves the run exactly as it was.
            taken_from, locked = durability.acquire(pipeline, run_id), True
            if not self.store.reopen_run(run_id):
                durability.release(pipeline, run_id)
                raise PipelineBusyError(f"run {run_id} is no longer resumable: it moved on while this resume started", hint=f"see `agent-etl runs show {run_id}`")
        else:
            self.store.start_run(run_id, pipeline, spec_file, spec_sha256, spec_text, parent_run_id)
        recording = self.recording(run_id)
        durability.audit("resume" if resume else "run", run_id=run_id, pipeline=pipeline, spec_sha256=spec_sha256, detail=spec_file)
        status: RunStatus = RunStatus.FAILED
        error: str | None = None
        failure: RunFailure | None = None
        try:
            if not resume:
                taken_from, locked = durability.acquire(pipeline, run_id), True
            if taken_from is not None:
                self.decide(run_id, f"pipeline {pipeline}", "take over its lock", f"run {taken_from} held it, but its process is gone")
            decide = functools.partial(self.decide, run_id)
            if taken_from is not None and taken_from != run_id:
                settlement.settle(self.store, ctx.settings, taken_from, decide)  # first: a dead run that committed is not superseded
            if not resume:
                settlement.supersede(self.store, ctx.settings, pipeline, run_id, decide)
            planned = self._plan(ctx, resume=resume)
            plan = planned.plan
            ctx.tasks = {t.id: t for t in plan.tasks}
            self.store.add_tasks(run_id, [t.as_dict() for t in plan.tasks])
            self.publish(RunStarted(sender=self.name, run_id=run_id, pipeline=pipeline, spec_sha256=spec_sha256, tasks=[t.as_dict() for t in plan.tasks]))
            for d in planned.decisions:
                self.decide(run_id, d.subject, d.choice, d.reason)
            schedule = Schedule(plan, waiting=list(plan.order()))
            self._reuse_checkpoints(ctx, schedule, planned.resume)
            await self._run_tasks(ctx, schedule)
            status, error = await self._finish(ctx, schedule)
            failure = _schedule_failure(schedule, status, error, run_id=run_id, spec_file=spec_file)
        except AgentETLError as exc:
            error = str(exc)
            failure = failure_of(exc, run_id=run_id, spec_file=spec_file, resumed=resume)
        except asyncio.CancelledError:
            status, error = RunStatus.CANCELLED, "cancelled"
            failure = make_failure(Remedy.RESUME, "Cancelled", "cancelled", run_id=run_id, spec_file=spec_file)
            raise
        except Exception as exc:  # a bug, or a driver error nobody mapped: fail the run, keep its record
            if isinstance(exc, OSError) and (mapped := from_os_error(exc)) is not None:  # a commit's permissions, a full disk
                error, failure = str(mapped), failure_of(mapped, run_id=run_id, spec_file=spec_file)
            else:
                log.exception("run %s failed unexpectedly", run_id)
                error = f"internal error: {type(exc).__name__}: {exc} (a bug in agent-etl; please report it with run {run_id})"
                failure = failure_of(exc, run_id=run_id, spec_file=spec_file)
        finally:
            if status is not RunStatus.SUCCEEDED and locked:
                if failure is None or failure.remedy is Remedy.RESUME:
                    self.decide(run_id, "staged output", "keep it for resume", f"finished tasks stay checkpointed; `agent-etl resume {run_id}` goes on from them")
                else:
                    self.decide(run_id, "staged output", "keep it until it is discarded", f"resuming would meet the same {failure.error_type}; `agent-etl runs discard {run_id}` drops it")
            self.publish(RunFinished(sender=self.name, run_id=run_id, status=status, error=error, failure=failure))
            await recording.finish()
            if locked:
                durability.release(pipeline, run_id)
        return status

    def _plan(self, ctx: RunContext, *, resume: bool) -> RunPlan:
        try:
            planned = plan_run(ctx, self.store, resume=resume)
        except AgentETLError as exc:
            self.decide(ctx.run_id, "plan", "fail before any task", str(exc))
            raise
        if planned.kept is not None:
            self.decide(ctx.run_id, planned.kept.subject, planned.kept.choice, planned.kept.reason)
        return planned

    def _reuse_checkpoints(self, ctx: RunContext, schedule: Schedule, reuse: list[Reuse]) -> None:
        for step in reuse:
            self.decide(ctx.run_id, step.decision.subject, step.decision.choice, step.decision.reason)
            if step.outcome is None:
                continue
            outcome, task_id = step.outcome, step.task_id
            schedule.waiting.remove(task_id)
            schedule.done.add(task_id)
            ctx.reports[task_id] = outcome.state
            schedule.checks[task_id] = outcome.checks
            schedule.outcomes[task_id] = outcome
            self.publish(TaskFinished(sender=self.name, run_id=ctx.run_id, task_id=task_id, **outcome.model_dump()))

    async def _run_tasks(self, ctx: RunContext, schedule: Schedule) -> None:
        results = self.hub.subscribe(f"run.{ctx.run_id}", maxsize=1_000_000)
        try:
            while schedule.active:
                if schedule.failure is None:
                    await self._assign_ready(ctx, schedule)
                    self._enforce_timeouts(ctx, schedule)
                    if schedule.waiting and not schedule.running and not self._any_agent_for(ctx, schedule.waiting):
                        task = ctx.tasks[schedule.waiting[0]]
                        schedule.failure = f"no ETL agent can run {task.id} (needs {task.capability})"
                        self.decide(ctx.run_id, f"task {task.id}", "fail", schedule.failure)
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
                    await asyncio.to_thread(self.store.durability.checkpoint, ctx.run_id, event.task_id, schedule.attempts[event.task_id], outcome)
                elif isinstance(event, TaskFailed) and event.task_id in schedule.running:
                    self._release(schedule.running.pop(event.task_id))
                    await self._recover(ctx, schedule, event)
        except asyncio.CancelledError:
            ctx.cancelled.set()
            self.decide(ctx.run_id, "run", "cancel", "asked to stop; running tasks stop between batches and their partial staging is dropped")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                    await self._drain_running(results, schedule)
            raise
        finally:
            self.hub.unsubscribe(results)

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

    def _enforce_timeouts(self, ctx: RunContext, schedule: Schedule) -> None:
        limit = ctx.spec.retry.task_timeout_seconds
        if not limit:
            return
        now = time.monotonic()
        for task_id in schedule.running:
            if task_id not in schedule.timed_out and now - schedule.started[task_id] > limit:
                schedule.timed_out.add(task_id)
                self.decide(ctx.run_id, f"task {task_id}", "stop it", f"it ran past its timeout of {limit:g}s")
                ctx.cancel_task(task_id)

    async def _recover(self, ctx: RunContext, schedule: Schedule, failure: TaskFailed) -> None:
        task_id = failure.task_id
        if task_id in schedule.timed_out:
            # A task we stopped for its deadline failed as "cancelled"; a timeout is transient.
            schedule.timed_out.discard(task_id)
            ctx.uncancel_task(task_id)
            failure = failure.model_copy(update={"error_type": "TaskTimeout", "remedy": FailureKind.RETRY, "message": f"task {task_id} timed out", "next_remedy": Remedy.RESUME})
        if schedule.failure is not None or (failure.remedy is FailureKind.CANCELLED and ctx.cancelled.is_set()):
            schedule.failure = schedule.failure or "cancelled"
            return
        task = ctx.tasks[task_id]
        recovery = self.policy.decide(failure, ctx.spec.retry, critical=ctx.is_critical(task), split_depth=_split_depth(task))
        halves = await asyncio.to_thread(ctx.reader(task).subdivide, task.partition) if recovery.action is RecoveryAction.SPLIT else None
        if recovery.action is RecoveryAction.SPLIT and not halves:
            # The rows left in it share one value of the partition column: it cannot be halved.
            recovery = self.policy.decide(failure, ctx.spec.retry, critical=ctx.is_critical(task), split_depth=None)
        if recovery.action is RecoveryAction.QUARANTINE and task.destination is None:
            recovery = Recovery(RecoveryAction.FAIL, f"{failure.error_type}: a partition read for a transform cannot be set aside (its rows would silently miss the transform)")
        self.decide(ctx.run_id, f"task {task_id}", recovery.action, recovery.reason)
        if recovery.action is RecoveryAction.RETRY:
            schedule.waiting.insert(0, task_id)
            schedule.not_before[task_id] = time.monotonic() + recovery.delay
            if recovery.batch_factor:
                rows = max(1, int((task.batch_rows or ctx.settings.batch_rows) * recovery.batch_factor))
                ctx.tasks[task_id] = replace(task, batch_rows=rows)
        elif recovery.action is RecoveryAction.SPLIT and halves:
            await self._split(ctx, schedule, task, halves)
        elif recovery.action is RecoveryAction.QUARANTINE:
            ctx.tasks[task_id] = replace(task, set_aside=failure.message)
            schedule.waiting.insert(0, task_id)
        elif recovery.action is RecoveryAction.SKIP:
            schedule.failed = schedule.failed or failure
            self._skip_dependents(ctx, schedule, task, failure.message)
        else:
            # No new task starts; running ones finish and are checkpointed, so resume needs less.
            schedule.failure, schedule.failed = failure.message, failure

    async def _split(self, ctx: RunContext, schedule: Schedule, task: Task, halves: list[Partition]) -> None:
        """Replace a task by one task per half of its partition, in the plan, the schedule and the store."""
        parts = [replace(task, id=task.id.replace("]>", f".{i + 1}]>", 1), partition=half) for i, half in enumerate(halves)]
        new_ids = tuple(p.id for p in parts)
        at = schedule.plan.tasks.index(task)
        schedule.plan.tasks[at : at + 1] = parts
        grown = []
        for other in list(ctx.tasks.values()):
            if task.id in other.depends_on:  # a transform waiting for a staged partition waits for both halves
                grown.append(replace(other, depends_on=tuple(d for d in other.depends_on if d != task.id) + new_ids))
                schedule.plan.tasks[schedule.plan.tasks.index(other)] = grown[-1]
        del ctx.tasks[task.id]
        ctx.tasks.update({t.id: t for t in [*parts, *grown]})
        schedule.waiting[0:0] = list(new_ids)
        if task.destination is not None:
            await asyncio.to_thread(ctx.destinations[task.destination].begin, ctx.run_id, task.id)  # drop what it staged
        await asyncio.to_thread(self.store.split_task, ctx.run_id, task.id, [t.as_dict() for t in parts], [t.as_dict() for t in grown])
        self.decide(ctx.run_id, f"task {task.id}", f"read it as {' and '.join(new_ids)}", "; ".join(h.description for h in halves))

    def _skip_dependents(self, ctx: RunContext, schedule: Schedule, task: Task, reason: str) -> None:
        """A non-critical task failed: its destination is not loaded, and tasks needing it do not run."""
        schedule.skipped.add(task.id)
        for other in ctx.tasks.values():
            same_destination = task.destination is not None and other.destination == task.destination
            if other.id in schedule.waiting and (task.id in other.depends_on or same_destination):
                schedule.waiting.remove(other.id)
                schedule.skipped.add(other.id)
        schedule.skipped_reasons.append(f"{task.id}: {reason}")

    def _any_agent_for(self, ctx: RunContext, waiting: list[str]) -> bool:
        return any(ctx.tasks[w].capability in a.capabilities for a in self.agents.values() for w in waiting)

    def _release(self, agent: str) -> None:
        if agent in self.agents:
            self.agents[agent].in_flight -= 1

    async def _assign_ready(self, ctx: RunContext, schedule: Schedule) -> None:
        self._see_agents()
        now = time.monotonic()
        for task_id in list(schedule.waiting):
            # The limit holds across every run this orchestrator drives (a workflow's parallel pipelines).
            if sum(a.in_flight for a in self.agents.values()) >= self.max_workers:
                return
            task = ctx.tasks[task_id]
            if not schedule.ready(task, now):
                continue
            agent = select_agent(list(self.agents.values()), task.capability)
            if agent is None:
                continue
            attempt = schedule.attempts.get(task_id, 0) + 1
            self.decide(ctx.run_id, f"task {task_id}", f"assign to {agent.name}", f"it has {task.capability}; load {agent.in_flight}/{agent.capacity}, the lowest")
            # The slot is taken before the request is awaited: another run's assignment may run meanwhile.
            agent.in_flight += 1
            try:
                await self.hub.request(agent.name, AssignTask(sender=self.name, run_id=ctx.run_id, task=task.as_dict(), attempt=attempt), timeout=ASSIGN_TIMEOUT_SECONDS)
            except (TimeoutError, RuntimeError) as exc:
                agent.in_flight -= 1
                self.decide(ctx.run_id, f"task {task_id}", "reassign", f"{agent.name} did not accept it: {exc or 'no answer'}")
                continue
            schedule.attempts[task_id] = attempt
            schedule.not_before.pop(task_id, None)
            schedule.started[task_id] = time.monotonic()
            schedule.running[task_id] = agent.name
            schedule.waiting.remove(task_id)

    async def _finish(self, ctx: RunContext, schedule: Schedule) -> tuple[RunStatus, str | None]:
        if schedule.failure is not None:
            return (RunStatus.CANCELLED if schedule.failure == "cancelled" else RunStatus.FAILED), schedule.failure
        failed_checks = blocking_failures(c for checks in schedule.checks.values() for c in checks)
        if failed_checks:
            reason = "; ".join(f"{c['check']} on {c['input']}: {c['message']}" for c in failed_checks)
            self.decide(ctx.run_id, "quality", "fail the run, commit nothing", f"checks with severity error failed: {reason}")
            return RunStatus.FAILED, f"quality checks failed: {reason} (fix the data, or give the check a threshold or severity: warn, and run again)"
        skipped_destinations = {ctx.tasks[t].destination for t in schedule.skipped if ctx.tasks[t].destination is not None}
        mismatches: list[str] = []
        verdicts = {}
        for index in range(len(ctx.destinations)):
            spec = ctx.spec.all_destinations[index]
            counts = LoadCounts.of(schedule.outcomes.get(t, TaskOutcome()) for t in schedule.plan.feeding(index))
            verdicts[index] = None if index in skipped_destinations else judge_empty_load(spec.write, spec.allow_empty, counts)
        # Judged before any commit: a refused destination must not leave the others published.
        for index, verdict in verdicts.items():
            if verdict is not None and not verdict.commit and ctx.spec.all_destinations[index].critical:
                label = destination_label(ctx.spec, index)
                self.decide(ctx.run_id, f"destination {label}", verdict.choice, verdict.reason)
                return RunStatus.FAILED, f"destination {label}: {verdict.reason}"
        refused = False
        for index, dest in enumerate(ctx.destinations):
            label = destination_label(ctx.spec, index)
            verdict = verdicts[index]
            if index in skipped_destinations or (verdict is not None and not verdict.commit):
                why = f"{verdict.reason}; it is not critical" if verdict is not None else "a task feeding it failed and it is not critical; its target stays as it was"
                self.decide(ctx.run_id, f"destination {label}", "do not commit", why)
                await asyncio.to_thread(dest.abort, ctx.run_id)
                if verdict is not None:
                    refused = True
                    schedule.skipped_reasons.append(f"destination {label}: {verdict.reason}")
                continue
            if verdict is not None:
                self.decide(ctx.run_id, f"destination {label}", verdict.choice, verdict.reason)
            feeding = schedule.plan.feeding(index)
            self.decide(ctx.run_id, f"destination {label}", "commit", f"all {len(feeding)} task(s) feeding it finished; publish {ctx.spec.all_destinations[index].write} in one step")
            state = committed_states(ctx.spec.name, _reports(ctx, schedule.plan, feeding))
            policy = ctx.spec.all_destinations[index].schema_
            commit = asyncio.ensure_future(asyncio.to_thread(dest.commit, ctx.run_id, feeding, state))
            try:
                result = await asyncio.shield(commit)
            except AgentETLError as exc:
                self.decide(ctx.run_id, f"destination {label}", "fail the commit; the target stays as it was", str(exc))
                raise
            except asyncio.CancelledError:
                # The commit is one transaction in a thread: it ends either way. Say how, so a
                # cancelled run does not hide a destination it did publish.
                result = await asyncio.shield(commit)
                self.decide(ctx.run_id, f"destination {label}", "committed as the cancel came", f"its commit had begun; {result.rows:,} rows are published, and resume will not publish them again")
                self.publish(DestinationCommitted(sender=self.name, run_id=ctx.run_id, destination=label, rows=result.rows, quarantined_rows=result.quarantined_rows, already_committed=result.already_committed))
                raise
            if result.schema_changes:
                self.decide(ctx.run_id, f"destination {label}", f"schema {policy}: {'; '.join(result.schema_changes)}", _POLICY_REASONS[policy])
            if result.key_added:
                self.decide(ctx.run_id, f"destination {label}", f"merge key: {result.key_added}", "write: merge matches rows by primary_key and the target had no key on it; agent-etl loaded this table before, so it added the key")
            self.publish(DestinationCommitted(sender=self.name, run_id=ctx.run_id, destination=label, rows=result.rows, quarantined_rows=result.quarantined_rows, already_committed=result.already_committed))
            if (mismatch := await verify_after_commit(self, ctx, schedule.plan, index, label, result)) is not None:
                mismatches.append(mismatch)
        if mismatches:
            return RunStatus.FAILED, "; ".join(mismatches)
        if schedule.skipped or refused:
            return RunStatus.PARTIAL, "; ".join(schedule.skipped_reasons)
        return RunStatus.SUCCEEDED, None

    def recording(self, run_id: str) -> Recording:
        """Start storing a run's events; ``finish()`` after publishing its RunFinished."""
        return Recording(self.hub, self.store, run_id)


class Recording:
    """Stores one run's events in order, up to and including its RunFinished."""

    def __init__(self, hub: Hub, store: RunStore, run_id: str) -> None:
        self.hub = hub
        self.store = store
        self.events = hub.subscribe(f"run.{run_id}", maxsize=1_000_000)
        self.task = asyncio.create_task(self._record())

    async def _record(self) -> None:
        while True:
            event = await self.events.get()
            if isinstance(event, RunEvent):
                await asyncio.to_thread(self.store.record, event)
            if isinstance(event, RunFinished):
                return

    async def finish(self) -> None:
        try:
            # Shielded: a cancelled run must still leave its whole record.
            await asyncio.shield(self.task)
        finally:
            self.hub.unsubscribe(self.events)


_POLICY_REASONS = {
    "evolve": "the data brought columns or wider types the target lacked; `schema: evolve` adds and widens them",
    "discard": "the data brought columns the target lacks; `schema: discard` leaves them out and widens types that grew",
}


def _schedule_failure(schedule: Schedule, status: RunStatus, error: str | None, *, run_id: str, spec_file: str) -> RunFailure | None:
    """The failure of a run whose tasks all ran (or stopped): a task's, the quality gate's, or none."""
    if status is RunStatus.SUCCEEDED:
        return None
    if schedule.failure == "cancelled":
        return make_failure(Remedy.RESUME, "Cancelled", "cancelled", run_id=run_id, spec_file=spec_file)
    failed = schedule.failed
    if failed is not None:
        return make_failure(failed.next_remedy, failed.error_type, failed.message, run_id=run_id, spec_file=spec_file, where=f"task {failed.task_id}")
    if schedule.failure is not None:  # no agent can run a task: the runtime lacks it
        return make_failure(Remedy.BUG, "NoAgent", schedule.failure, run_id=run_id, spec_file=spec_file)
    # Resuming would commit the same staged rows, which the checks refused the same way.
    return make_failure(Remedy.FIX_DATA, "QualityGateFailed", error or "quality checks failed", run_id=run_id, spec_file=spec_file, where="quality")


def _split_depth(task: Task) -> int | None:
    """How often the task's partition was halved already; None if it reads no single partition."""
    return None if task.partition is None else int(task.partition.options.get("split_depth", 0))


def _reports(ctx: RunContext, plan: Plan, feeding: list[str]) -> list[tuple[str, dict, dict | None]]:
    """(source, window, report) of every task whose rows reach a destination: its own and the stages before."""
    by_id = {t.id: t for t in plan.tasks}
    tasks = [by_id[t] for t in feeding]
    tasks += [by_id[d] for t in list(tasks) for d in t.depends_on]
    found = []
    for t in tasks:
        # A task reading every partition of its source (a blocking chain) carries them in ``partitions``.
        part = t.partition or (t.partitions[0] if t.partitions else None)
        if t.source and part and "window" in part.options:
            found.append((t.source, part.options["window"], ctx.reports.get(t.id)))
    return found
