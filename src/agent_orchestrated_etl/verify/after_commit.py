"""The orchestrator's hook: verify a destination right after its commit, and say what it found."""

from __future__ import annotations

import asyncio
from typing import Any

from agent_orchestrated_etl.connectors.base import CommitResult
from agent_orchestrated_etl.model.messages import DestinationVerified
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.quality.verdicts import verdict
from agent_orchestrated_etl.verify.options import verify_options
from agent_orchestrated_etl.verify.reconcile import TaskCount, reconcile


async def verify_after_commit(
    agent: Any, ctx: Any, plan: Any, index: int, label: str, committed: CommitResult
) -> str | None:
    """Reconcile destination ``index`` if its spec asks; returns why the run fails (a mismatch with severity error)."""
    options = verify_options(ctx.spec.all_destinations[index].verify)
    if options is None:
        return None
    # The checkpoints hold every finished task's counts, those of a resumed run's earlier attempt too.
    outcomes = await asyncio.to_thread(agent.store.durability.checkpoints, ctx.run_id)
    tasks = [_counted(ctx.tasks[t], outcomes.get(t) or TaskOutcome()) for t in feeding_and_staged(plan, index)]
    done = {
        "rows": committed.rows,
        "quarantined_rows": committed.quarantined_rows,
        "already_committed": committed.already_committed,
    }
    result = await asyncio.to_thread(
        reconcile, ctx.spec, index, label, tasks, done, options, batch_rows=ctx.settings.batch_rows
    )
    passed, message = verdict(result)
    agent.publish(DestinationVerified(sender=agent.name, run_id=ctx.run_id, destination=label, result=result))
    if passed:
        agent.decide(ctx.run_id, f"destination {label}", "verified", message)
        return None
    if options.severity == "warn":
        agent.decide(ctx.run_id, f"destination {label}", "warn: verify found a mismatch", message)
        return None
    agent.decide(
        ctx.run_id,
        "quality",
        "fail the run: verify found a mismatch",
        f"destination {label} is committed but does not match its source: {message}",
    )
    return f"verify of {label}: {message} (the target is committed; find what changed it, then load it again)"


def feeding_and_staged(plan: Any, index: int) -> list[str]:
    """The tasks loading destination ``index`` and the stage tasks before them."""
    by_id = {t.id: t for t in plan.tasks}
    ids = plan.feeding(index)
    return [*ids, *dict.fromkeys(d for t in ids for d in by_id[t].depends_on)]


def _counted(task: Any, outcome: TaskOutcome) -> TaskCount:
    return TaskCount(
        task.id,
        task.kind,
        task.source,
        _transform(task),
        task.partition,
        outcome.rows_read,
        outcome.rows_written,
        outcome.rows_quarantined,
    )


def _transform(task: Any) -> str | None:
    """The transform a task runs, if any: a task checking a source's rows names the source itself."""
    return None if task.transform == task.source else task.transform
