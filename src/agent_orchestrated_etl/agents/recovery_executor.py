"""The recovery executor: applies the RecoveryPolicy's decision on a failed task, and records it as a Decision.

The policy (agents/recovery.py) chooses; this module carries the choice out
on the run's schedule: a retry waits its backoff, a split replaces the task
by its halves (in the plan, the schedule and the store), a quarantine sets
the partition aside, a skip drops what depended on the task, a failure stops
new tasks from starting.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from agent_orchestrated_etl.agents.recording import Voice
from agent_orchestrated_etl.agents.recovery import Recovery, RecoveryPolicy
from agent_orchestrated_etl.agents.schedule import Schedule
from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.messages import TaskFailed
from agent_orchestrated_etl.model.vocabulary import FailureKind, RecoveryAction, Remedy
from agent_orchestrated_etl.planning.tasks import Task
from agent_orchestrated_etl.store.records import RunStore


class RecoveryExecutor:
    def __init__(self, policy: RecoveryPolicy, voice: Voice, store: RunStore) -> None:
        self.policy = policy
        self.voice = voice
        self.store = store

    async def recover(self, ctx: RunContext, schedule: Schedule, failure: TaskFailed) -> None:
        task_id = failure.task_id
        if task_id in schedule.timed_out:
            # A task we stopped for its deadline failed as "cancelled"; a timeout is transient.
            schedule.timed_out.discard(task_id)
            update = {
                "error_type": "TaskTimeout",
                "remedy": FailureKind.RETRY,
                "message": f"task {task_id} timed out",
                "next_remedy": Remedy.RESUME,
            }
            failure = failure.model_copy(update=update)
        if schedule.failure is not None or (failure.remedy is FailureKind.CANCELLED and ctx.cancelled.is_set()):
            schedule.failure = schedule.failure or "cancelled"
            return
        task = ctx.tasks[task_id]
        critical = ctx.is_critical(task)
        recovery = self.policy.decide(failure, ctx.spec.retry, critical=critical, split_depth=_split_depth(task))
        halves = None
        if recovery.action is RecoveryAction.SPLIT and task.partition is not None:  # a split depth means a partition
            halves = await asyncio.to_thread(ctx.reader(task).subdivide, task.partition)
        if recovery.action is RecoveryAction.SPLIT and not halves:
            # The rows left in it share one value of the partition column: it cannot be halved.
            recovery = self.policy.decide(failure, ctx.spec.retry, critical=critical, split_depth=None)
        if recovery.action is RecoveryAction.QUARANTINE and task.destination is None:
            why = "a partition read for a transform cannot be set aside (its rows would silently miss the transform)"
            recovery = Recovery(RecoveryAction.FAIL, f"{failure.error_type}: {why}")
        self.voice.decide(ctx.run_id, f"task {task_id}", recovery.action, recovery.reason)
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
            _skip_dependents(ctx, schedule, task, failure.message)
        else:
            # No new task starts; running ones finish and are checkpointed, so resume needs less.
            schedule.failure, schedule.failed = failure.message, failure

    async def _split(self, ctx: RunContext, schedule: Schedule, task: Task, halves: list[Partition]) -> None:
        """Replace a task by one task per half of its partition, in the plan, the schedule and the store."""
        parts = [
            replace(task, id=task.id.replace("]>", f".{i + 1}]>", 1), partition=half) for i, half in enumerate(halves)
        ]
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
            await asyncio.to_thread(
                ctx.destinations[task.destination].begin, ctx.run_id, task.id
            )  # drop what it staged
        await asyncio.to_thread(
            self.store.split_task, ctx.run_id, task.id, [t.as_dict() for t in parts], [t.as_dict() for t in grown]
        )
        self.voice.decide(
            ctx.run_id,
            f"task {task.id}",
            f"read it as {' and '.join(new_ids)}",
            "; ".join(h.description for h in halves),
        )


def _skip_dependents(ctx: RunContext, schedule: Schedule, task: Task, reason: str) -> None:
    """A non-critical task failed: its destination is not loaded, and tasks needing it do not run."""
    schedule.skipped.add(task.id)
    for other in ctx.tasks.values():
        same_destination = task.destination is not None and other.destination == task.destination
        if other.id in schedule.waiting and (task.id in other.depends_on or same_destination):
            schedule.waiting.remove(other.id)
            schedule.skipped.add(other.id)
    schedule.skipped_reasons.append(f"{task.id}: {reason}")


def _split_depth(task: Task) -> int | None:
    """How often the task's partition was halved already; None if it reads no single partition."""
    return None if task.partition is None else int(task.partition.options.get("split_depth", 0))
