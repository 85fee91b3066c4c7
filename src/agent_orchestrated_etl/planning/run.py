"""A run's planning in one call: expansion, windows and the plan; or a resumed run's first plan and its done tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.planning.plan import make_plan
from agent_orchestrated_etl.planning.resume import Reuse, first_plan, planned_tables, reusable
from agent_orchestrated_etl.planning.tasks import Plan, PlannedDecision
from agent_orchestrated_etl.planning.windows import run_windows
from agent_orchestrated_etl.store.records import RunStore


@dataclass(frozen=True)
class RunPlan:
    plan: Plan
    #: Published before the run starts: a resumed run goes on with the plan it stored then.
    kept: PlannedDecision | None = None
    #: Published once the run has started: the plan and every choice that shaped it (a new plan only).
    decisions: list[PlannedDecision] = field(default_factory=list)
    #: A resumed run's checkpointed tasks, in plan order: reused, or read again.
    resume: list[Reuse] = field(default_factory=list)


def plan_run(ctx: RunContext, store: RunStore, *, resume: bool) -> RunPlan:
    """Plan the run of ``ctx`` (expanding its multi-table sources in it), or re-plan a resumed one."""
    first = first_plan(store.planned_tasks(ctx.run_id)) if resume else None
    if first is not None:
        # A source with tables: or schema: reads the tables it then had, one source each (crm.orders).
        ctx.expand(planned_tables(ctx.spec, first))
        kept = PlannedDecision(
            "plan",
            f"reuse the first attempt's {len(first.tasks)} tasks",
            "partition bounds and incremental windows stay as first planned, "
            "so the unfinished tasks read exactly the rows the finished ones did not",
        )
        plan, decisions = first, []
    else:
        expansions = ctx.expand()
        plan = make_plan(ctx.spec, ctx.sources, run_windows(ctx.spec, ctx.destinations), pushdown=ctx.settings.pushdown)
        plan.decisions[:0] = expansions
        tasks = f"{len(plan.tasks)} tasks for {len(ctx.destinations)} destination(s)"
        summary = PlannedDecision("plan", tasks, f"order: {', '.join(plan.order())}")
        kept, decisions = None, [summary, *plan.decisions]
    reuse: list[Reuse] = []
    if resume:
        by_id = {t.id: t for t in plan.tasks}
        checkpoints = store.durability.checkpoints(ctx.run_id)
        workspace_ok = ctx.workspace_exists()
        reuse = reusable(ctx.run_id, plan.order(), by_id, checkpoints, ctx.destinations, workspace_ok=workspace_ok)
    return RunPlan(plan, kept, decisions, reuse)
