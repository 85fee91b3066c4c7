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
from agent_orchestrated_etl.agents.recording import Recording, Voice
from agent_orchestrated_etl.agents.recovery import BackoffRecoveryPolicy, RecoveryPolicy
from agent_orchestrated_etl.agents.recovery_executor import RecoveryExecutor
from agent_orchestrated_etl.agents.schedule import RunSpec, Schedule
from agent_orchestrated_etl.agents.scheduler import Scheduler
from agent_orchestrated_etl.exceptions import AgentETLError, from_os_error
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.failure import RunFailure, failure_of, make_failure
from agent_orchestrated_etl.model.messages import Message, RunEvent, RunFinished, RunStarted, TaskFinished
from agent_orchestrated_etl.model.vocabulary import Remedy, RunStatus
from agent_orchestrated_etl.planning.resume import Reuse, planned_tables
from agent_orchestrated_etl.planning.run import RunPlan, plan_run
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore

log = logging.getLogger(__name__)


class OrchestratorAgent(Agent):
    role = "orchestrator"

    def __init__(
        self, name: str, hub: Hub, store: RunStore, *, max_workers: int, policy: RecoveryPolicy | None = None
    ) -> None:
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

    async def execute(
        self,
        ctx: RunContext,
        *,
        spec_file: str,
        spec_text: str,
        spec_sha256: str,
        resume: bool = False,
        parent_run_id: str | None = None,
    ) -> RunStatus:
        """Run (or resume) a whole pipeline; returns the final status. Every event goes to the store."""
        run_id, pipeline = ctx.run_id, ctx.spec.name
        durability = self.store.durability
        taken_from, locked = None, False
        if resume:
            # The lock before the record: a resume that is refused leaves the run exactly as it was.
            taken_from, locked = durability.acquire(pipeline, run_id), True
            if not self.store.reopen_run(run_id):
                durability.release(pipeline, run_id)
                raise PipelineBusyError(
                    f"run {run_id} is no longer resumable: it moved on while this resume started",
                    hint=f"see `agent-etl runs show {run_id}`",
                )
        else:
            self.store.start_run(run_id, pipeline, spec_file, spec_sha256, spec_text, parent_run_id)
        recording = self.recording(run_id)
        durability.audit(
            "resume" if resume else "run", run_id=run_id, pipeline=pipeline, spec_sha256=spec_sha256, detail=spec_file
        )
        status: RunStatus = RunStatus.FAILED
        error: str | None = None
        failure: RunFailure | None = None
        try:
            if not resume:
                taken_from, locked = durability.acquire(pipeline, run_id), True
            if taken_from is not None:
                self.decide(
                    run_id,
                    f"pipeline {pipeline}",
                    "take over its lock",
                    f"run {taken_from} held it, but its process is gone",
                )
            decide = functools.partial(self.decide, run_id)
            if taken_from is not None and taken_from != run_id:
                settlement.settle(
                    self.store, ctx.settings, taken_from, decide
                )  # first: a dead run that committed is not superseded
            if not resume:
                settlement.supersede(self.store, ctx.settings, pipeline, run_id, decide)
            raw = ctx.spec  # before planning expands its multi-table sources
            planned = self._plan(ctx, resume=resume)
            plan = planned.plan
            ctx.tasks = {t.id: t for t in plan.tasks}
            self.store.add_tasks(run_id, [t.as_dict() for t in plan.tasks])
            self.publish(
                RunStarted(
                    sender=self.name,
                    run_id=run_id,
                    pipeline=pipeline,
                    spec_sha256=spec_sha256,
                    tasks=[t.as_dict() for t in plan.tasks],
                )
            )
            for d in planned.decisions:
                self.decide(run_id, d.subject, d.choice, d.reason)
            schedule = Schedule(plan, waiting=list(plan.order()))
            self._reuse_checkpoints(ctx, schedule, planned.resume)
            spec = RunSpec(spec_file, spec_text, spec_sha256, tables=planned_tables(raw, plan))
            await self.scheduler.run(ctx, schedule, spec)
            status, error = await self.committer.finish(ctx, schedule)
            failure = _schedule_failure(schedule, status, error, run_id=run_id, spec_file=spec_file)
        except AgentETLError as exc:
            log.debug("run %s failed", run_id, exc_info=True)  # --debug shows where
            error = str(exc)
            failure = failure_of(exc, run_id=run_id, spec_file=spec_file, resumed=resume)
        except asyncio.CancelledError:
            status, error = RunStatus.CANCELLED, "cancelled"
            failure = make_failure(Remedy.RESUME, "Cancelled", "cancelled", run_id=run_id, spec_file=spec_file)
            raise
        except Exception as exc:  # a bug, or a driver error nobody mapped: fail the run, keep its record
            if (
                isinstance(exc, OSError) and (mapped := from_os_error(exc)) is not None
            ):  # a commit's permissions, a full disk
                error, failure = str(mapped), failure_of(mapped, run_id=run_id, spec_file=spec_file)
            else:
                log.exception("run %s failed unexpectedly", run_id)
                error = f"internal error: {type(exc).__name__}: {exc} (a bug in agent-etl; please report it with run {run_id})"
                failure = failure_of(exc, run_id=run_id, spec_file=spec_file)
        finally:
            if status is not RunStatus.SUCCEEDED and locked:
                if failure is None or failure.remedy is Remedy.RESUME:
                    self.decide(
                        run_id,
                        "staged output",
                        "keep it for resume",
                        f"finished tasks stay checkpointed; `agent-etl resume {run_id}` goes on from them",
                    )
                else:
                    self.decide(
                        run_id,
                        "staged output",
                        "keep it until it is discarded",
                        f"resuming would meet the same {failure.error_type}; `agent-etl runs discard {run_id}` drops it",
                    )
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

    def recording(self, run_id: str) -> Recording:
        """Start storing a run's events; ``finish()`` after publishing its RunFinished."""
        return Recording(self.hub, self.store, run_id)


def _schedule_failure(
    schedule: Schedule, status: RunStatus, error: str | None, *, run_id: str, spec_file: str
) -> RunFailure | None:
    """The failure of a run whose tasks all ran (or stopped): a task's, the quality gate's, or none."""
    if status is RunStatus.SUCCEEDED:
        return None
    if schedule.failure == "cancelled":
        return make_failure(Remedy.RESUME, "Cancelled", "cancelled", run_id=run_id, spec_file=spec_file)
    failed = schedule.failed
    if failed is not None:
        return make_failure(
            failed.next_remedy,
            failed.error_type,
            failed.message,
            run_id=run_id,
            spec_file=spec_file,
            where=f"task {failed.task_id}",
        )
    if schedule.failure is not None:  # no agent can run a task: the runtime lacks it
        return make_failure(Remedy.BUG, "NoAgent", schedule.failure, run_id=run_id, spec_file=spec_file)
    # Resuming would commit the same staged rows, which the checks refused the same way.
    return make_failure(
        Remedy.FIX_DATA,
        "QualityGateFailed",
        error or "quality checks failed",
        run_id=run_id,
        spec_file=spec_file,
        where="quality",
    )
