"""The orchestrator's committer: the quality gate, the empty-load rule, then each destination's commit and verify.

A destination is committed only when every task feeding it finished, in one
step with its incremental state, and verified right after. Every verdict on
the way is a Decision, so the run record says why a target was or was not published.
"""

from __future__ import annotations

import asyncio

from agent_orchestrated_etl.agents.empty_loads import LoadCounts, judge_empty_load
from agent_orchestrated_etl.agents.recording import Voice
from agent_orchestrated_etl.agents.schedule import Schedule
from agent_orchestrated_etl.connectors.base import CommitResult
from agent_orchestrated_etl.connectors.incremental import committed_states
from agent_orchestrated_etl.exceptions import AgentETLError
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.messages import DestinationCommitted, RunEvent
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.model.vocabulary import RunStatus
from agent_orchestrated_etl.planning.plan import destination_label
from agent_orchestrated_etl.planning.tasks import Plan
from agent_orchestrated_etl.quality.verdicts import blocking_failures
from agent_orchestrated_etl.store.records import RunStore
from agent_orchestrated_etl.verify.after_commit import verify_after_commit


class Committer:
    def __init__(self, name: str, voice: Voice, store: RunStore) -> None:
        self.name = name
        self.voice = voice
        self.store = store

    # verify_after_commit speaks through these, as it did through the orchestrator agent.
    def publish(self, event: RunEvent) -> None:
        self.voice.publish(event)

    def decide(self, run_id: str, subject: str, choice: str, reason: str) -> None:
        self.voice.decide(run_id, subject, choice, reason)

    async def finish(self, ctx: RunContext, schedule: Schedule) -> tuple[RunStatus, str | None]:
        if schedule.failure is not None:
            return (RunStatus.CANCELLED if schedule.failure == "cancelled" else RunStatus.FAILED), schedule.failure
        failed_checks = blocking_failures(c for checks in schedule.checks.values() for c in checks)
        if failed_checks:
            reason = "; ".join(f"{c['check']} on {c['input']}: {c['message']}" for c in failed_checks)
            self.decide(
                ctx.run_id, "quality", "fail the run, commit nothing", f"checks with severity error failed: {reason}"
            )
            return (
                RunStatus.FAILED,
                f"quality checks failed: {reason} "
                "(fix the data, or give the check a threshold or severity: warn, and run again)",
            )
        skipped_destinations = {
            ctx.tasks[t].destination for t in schedule.skipped if ctx.tasks[t].destination is not None
        }
        mismatches: list[str] = []
        verdicts = {}
        for index in range(len(ctx.destinations)):
            spec = ctx.spec.all_destinations[index]
            counts = LoadCounts.of(schedule.outcomes.get(t, TaskOutcome()) for t in schedule.plan.feeding(index))
            verdicts[index] = (
                None if index in skipped_destinations else judge_empty_load(spec.write, spec.allow_empty, counts)
            )
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
                why = (
                    f"{verdict.reason}; it is not critical"
                    if verdict is not None
                    else "a task feeding it failed and it is not critical; its target stays as it was"
                )
                self.decide(ctx.run_id, f"destination {label}", "do not commit", why)
                await asyncio.to_thread(dest.abort, ctx.run_id)
                if verdict is not None:
                    refused = True
                    schedule.skipped_reasons.append(f"destination {label}: {verdict.reason}")
                continue
            if verdict is not None:
                self.decide(ctx.run_id, f"destination {label}", verdict.choice, verdict.reason)
            if (mismatch := await self._commit(ctx, schedule, index, label)) is not None:
                mismatches.append(mismatch)
        if mismatches:
            return RunStatus.FAILED, "; ".join(mismatches)
        if schedule.skipped or refused:
            return RunStatus.PARTIAL, "; ".join(schedule.skipped_reasons)
        return RunStatus.SUCCEEDED, None

    def _published(self, run_id: str, label: str, result: CommitResult) -> None:
        self.publish(
            DestinationCommitted(
                sender=self.name,
                run_id=run_id,
                destination=label,
                rows=result.rows,
                quarantined_rows=result.quarantined_rows,
                already_committed=result.already_committed,
            )
        )

    async def _commit(self, ctx: RunContext, schedule: Schedule, index: int, label: str) -> str | None:
        """Publish one destination in one step with its incremental state, then verify it; a mismatch found, or None."""
        dest = ctx.destinations[index]
        feeding = schedule.plan.feeding(index)
        self.decide(
            ctx.run_id,
            f"destination {label}",
            "commit",
            f"all {len(feeding)} task(s) feeding it finished; "
            f"publish {ctx.spec.all_destinations[index].write} in one step",
        )
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
            self.decide(
                ctx.run_id,
                f"destination {label}",
                "committed as the cancel came",
                f"its commit had begun; {result.rows:,} rows are published, and resume will not publish them again",
            )
            self._published(ctx.run_id, label, result)
            raise
        if result.schema_changes:
            self.decide(
                ctx.run_id,
                f"destination {label}",
                f"schema {policy}: {'; '.join(result.schema_changes)}",
                _POLICY_REASONS[policy],
            )
        if result.key_added:
            self.decide(
                ctx.run_id,
                f"destination {label}",
                f"merge key: {result.key_added}",
                "write: merge matches rows by primary_key and the target had no key on it; "
                "agent-etl loaded this table before, so it added the key",
            )
        self._published(ctx.run_id, label, result)
        return await verify_after_commit(self, ctx, schedule.plan, index, label, result)


_POLICY_REASONS = {
    "evolve": "the data brought columns or wider types the target lacked; `schema: evolve` adds and widens them",
    "discard": (
        "the data brought columns the target lacks; `schema: discard` leaves them out and widens types that grew"
    ),
}


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
