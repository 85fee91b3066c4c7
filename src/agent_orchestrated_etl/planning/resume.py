"""Resume planning: the plan a resumed run goes on with, and which of its tasks are already done.

A resumed run keeps the plan stored when it started. Re-planning would recompute
partition bounds and incremental windows from the data as it is now: rows added
since would shift bounds between finished and unfinished partitions (loss or
duplicates). A checkpointed task is done if what it staged is still there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent_orchestrated_etl.connectors.base import Destination
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.planning.expansion import several_tables
from agent_orchestrated_etl.planning.tasks import Plan, PlannedDecision, Task
from agent_orchestrated_etl.spec import PipelineSpec


@dataclass(frozen=True)
class Reuse:
    """What a resumed run does with one checkpointed task."""

    task_id: str
    decision: PlannedDecision
    #: The checkpointed outcome when the task's staged output is reused; None when it is read again.
    outcome: TaskOutcome | None


def first_plan(stored: Sequence[dict[str, Any] | None]) -> Plan | None:
    """The plan stored when the run started; None when it stored none (or a task without its definition)."""
    if not stored or any(d is None for d in stored):
        return None
    return Plan(tasks=[Task.from_dict(d) for d in stored if d is not None])


def planned_tables(spec: PipelineSpec, plan: Plan) -> dict[str, list[str]]:
    """The tables each multi-table source read in ``plan``: its source ``crm.orders`` read table ``orders``."""
    sources = [t.source.partition(".") for t in plan.tasks if t.source]
    return {name: sorted({table for source, _, table in sources if source == name}) for name in several_tables(spec)}


def reusable(
    run_id: str,
    order: list[str],
    tasks: dict[str, Task],
    checkpoints: dict[str, TaskOutcome],
    destinations: Sequence[Destination],
    *,
    workspace_ok: bool,
) -> list[Reuse]:
    """The checkpointed tasks of ``order``, each reused or read again, in that order."""
    committed: dict[int, bool] = {}
    found = []
    for task_id in order:
        outcome = checkpoints.get(task_id)
        task = tasks[task_id]
        if outcome is None or (task.kind == "stage" and not workspace_ok):
            continue
        index = task.destination
        if index is not None:
            if index not in committed:
                committed[index] = destinations[index].committed(run_id)
            if not committed[index]:
                # A checkpoint is only as good as the staging it points to: someone may have dropped it.
                staged = destinations[index].staged_rows(run_id, task_id)
                if staged is not None and staged != outcome.rows_written:
                    said = outcome.rows_written
                    why = f"its checkpoint says {said:,} rows were staged, but its staging holds {staged:,}"
                    found.append(Reuse(task_id, PlannedDecision(f"task {task_id}", "read it again", why), None))
                    continue
        why = "it was checkpointed before the run stopped"
        found.append(Reuse(task_id, PlannedDecision(f"task {task_id}", "reuse its staged output", why), outcome))
    return found
