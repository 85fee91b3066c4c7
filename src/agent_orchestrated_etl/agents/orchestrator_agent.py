"""The orchestrator agent: plans a run, places tasks on ETL agents, recovers, commits.

Every choice it makes (the plan, which agent, which recovery, each commit)
is published as a Decision event and kept in the run record. A finished
task's output stays staged and is checkpointed, so a run that crashes, fails
or is cancelled can be resumed without redoing it.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from agent_orchestrated_etl import settlement
from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.committer import Committer
from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.agents.messages import Message, RunEvent, RunFinished, RunStarted, TaskFinished
from agent_orchestrated_etl.agents.recording import Recording, Voice
from agent_orchestrated_etl.agents.recovery import BackoffRecoveryPolicy, RecoveryPolicy
from agent_orchestrated_etl.agents.recovery_executor import RecoveryExecutor
from agent_orchestrated_etl.agents.schedule import RunSpec, Schedule
from agent_orchestrated_etl.agents.scheduler import Scheduler
from agent_orchestrated_etl.connectors.incremental import plan_windows
from agent_orchestrated_etl.exceptions import AgentETLError, Remedy, from_os_error
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.expansion import several_tables
from agent_orchestrated_etl.failures import Failure, failure_of, make_failure
from agent_orchestrated_etl.plan import Plan, Task, fed_by, make_plan
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore

log = logging.getLogger(__name__)


class OrchestratorAgent(Agent):
    role = "orchestrator"

    def __init__(self, name: str, hub: Hub, store: RunStore, *, max_workers: int, policy: RecoveryPolicy | None = None) -> None:
        super().__init__(name, hub, capabilities=frozenset({"plan", "assign", "recover", "commit"}))
        self.store = store
        self.voice = Voice(hub, name)
        recovery = RecoveryExecutor(policy or BackoffRecoveryPolicy(), self.voice, store)
        self.scheduler = Scheduler(name, hub, self.voice, store, recovery, max_workers=max_workers)
        self.committer = Committer(name, self.voice, store)

    async def handle(self, message: Message) -> Message | None:
        return None

    def publish(self, event: RunEvent) -> None:
        self.voice.publish(event)

    def decide(self, run_id: str, subject: str, choice: str, reason: str) -> None:
        self.voice.decide(run_id, subject, choice, reason)

    def cancel(self, run_id: str) -> bool:
        """Stop a run whose tasks are being scheduled; its agents hear it by message."""
        return self.scheduler.cancel(run_id)

    async def execute(self, ctx: RunContext, *, spec_file: str, spec_text: str, spec_sha256: str, resume: bool = False, parent_run_id: str | None = None) -> str:
        """Run (or resume) a whole pipeline; returns the final status. Every event goes to the store."""
        run_id, pipeline = ctx.run_id, ctx.spec.name
        several = several_tables(ctx.spec)  # before planning expands them
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
        status, error = "failed", None
        failure: Failure | None = None
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
            first = self._first_plan(ctx) if resume else None
            plan = first or self._plan(ctx)
            ctx.tasks = {t.id: t for t in plan.tasks}
            self.store.add_tasks(run_id, [t.as_dict() for t in plan.tasks])
            self.publish(RunStarted(sender=self.name, run_id=run_id, pipeline=pipeline, spec_sha256=spec_sha256, tasks=[t.as_dict() for t in plan.tasks]))
            if first is None:
                self.decide(run_id, "plan", f"{len(plan.tasks)} tasks for {len(ctx.destinations)} destination(s)", f"order: {', '.join(plan.order())}")
                for d in plan.decisions:
                    self.decide(run_id, d.subject, d.choice, d.reason)
            schedule = Schedule(plan, waiting=list(plan.order()))
            if resume:
                self._reuse_checkpoints(ctx, schedule)
            spec = RunSpec(spec_file, spec_text, spec_sha256, tables=_planned_tables(plan, several))
            await self.scheduler.run(ctx, schedule, spec)
            status, error = await self.committer.finish(ctx, schedule)
            failure = _schedule_failure(schedule, status, error, run_id=run_id, spec_file=spec_file)
        except AgentETLError as exc:
            error = str(exc)
            failure = failure_of(exc, run_id=run_id, spec_file=spec_file, resumed=resume)
        except asyncio.CancelledError:
            status, error = "cancelled", "cancelled"
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
            if status != "succeeded" and locked:
                if failure is None or failure.remedy is Remedy.RESUME:
                    self.decide(run_id, "staged output", "keep it for resume", f"finished tasks stay checkpointed; `agent-etl resume {run_id}` goes on from them")
                else:
                    self.decide(run_id, "staged output", "keep it until it is discarded", f"resuming would meet the same {failure.error_type}; `agent-etl runs discard {run_id}` drops it")
            self.publish(RunFinished(sender=self.name, run_id=run_id, status=status, error=error, failure=failure))  # type: ignore[arg-type]
            await recording.finish()
            if locked:
                durability.release(pipeline, run_id)
        return status

    def _plan(self, ctx: RunContext) -> Plan:
        try:
            expansions = ctx.expand()
            plan = make_plan(ctx.spec, ctx.sources, _windows(ctx), pushdown=ctx.settings.pushdown)
            plan.decisions[:0] = expansions
            return plan
        except AgentETLError as exc:
            self.decide(ctx.run_id, "plan", "fail before any task", str(exc))
            raise

    def _first_plan(self, ctx: RunContext) -> Plan | None:
        """The plan stored when the run started, so resumed tasks read the same partitions and windows.

        Re-planning would recompute partition bounds and incremental windows
        from the data as it is now: rows added since would shift bounds between
        finished and unfinished partitions (loss or duplicates).
        """
        stored = self.store.planned_tasks(ctx.run_id)
        if not stored or any(d is None for d in stored):
            return None
        plan = Plan(tasks=[Task.from_dict(d) for d in stored])
        # A source with tables: or schema: read the tables it then had, one source each (crm.orders).
        ctx.expand(_planned_tables(plan, several_tables(ctx.spec)))
        self.decide(ctx.run_id, "plan", f"reuse the first attempt's {len(plan.tasks)} tasks", "partition bounds and incremental windows stay as first planned, so the unfinished tasks read exactly the rows the finished ones did not")
        return plan

    def _reuse_checkpoints(self, ctx: RunContext, schedule: Schedule) -> None:
        checkpoints = self.store.durability.checkpoints(ctx.run_id)
        workspace_ok = ctx.workspace_exists()
        committed: dict[int, bool] = {}
        for task_id in list(schedule.waiting):
            outcome = checkpoints.get(task_id)
            task = ctx.tasks[task_id]
            if outcome is None or (task.kind == "stage" and not workspace_ok):
                continue
            if task.destination is not None and not committed.setdefault(task.destination, ctx.destinations[task.destination].committed(ctx.run_id)):
                # A checkpoint is only as good as the staging it points to: someone may have dropped it.
                staged = ctx.destinations[task.destination].staged_rows(ctx.run_id, task_id)
                if staged is not None and staged != outcome.get("rows_written", 0):
                    self.decide(ctx.run_id, f"task {task_id}", "read it again", f"its checkpoint says {outcome.get('rows_written', 0):,} rows were staged, but its staging holds {staged:,}")
                    continue
            schedule.waiting.remove(task_id)
            schedule.done.add(task_id)
            ctx.reports[task_id] = outcome.get("state")
            schedule.checks[task_id] = outcome.get("checks") or []
            schedule.outcomes[task_id] = outcome
            self.decide(ctx.run_id, f"task {task_id}", "reuse its staged output", "it was checkpointed before the run stopped")
            self.publish(TaskFinished(sender=self.name, run_id=ctx.run_id, task_id=task_id, **outcome))

    def recording(self, run_id: str) -> Recording:
        """Start storing a run's events; ``finish()`` after publishing its RunFinished."""
        return Recording(self.hub, self.store, run_id)


def _schedule_failure(schedule: Schedule, status: str, error: str | None, *, run_id: str, spec_file: str) -> Failure | None:
    """The failure of a run whose tasks all ran (or stopped): a task's, the quality gate's, or none."""
    if status == "succeeded":
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


def _windows(ctx: RunContext) -> dict:
    """Incremental windows from the state the destinations committed (connectors/incremental.py)."""
    fed: dict[str, list] = {}
    for index, dest in enumerate(ctx.destinations):
        for source in fed_by(ctx.spec, index):
            fed.setdefault(source, []).append(dest)
    return plan_windows(ctx.spec.name, ctx.spec.sources, fed)


def _planned_tables(plan: Plan, several: list[str]) -> dict[str, list[str]]:
    """The tables each multi-table source was expanded to, read off the plan's sources (crm.orders)."""
    tables: dict[str, set[str]] = {name: set() for name in several}
    for task in plan.tasks:
        source, _, table = (task.source or "").partition(".")
        if source in tables:
            tables[source].add(table)
    return {name: sorted(found) for name, found in tables.items()}
