"""Planning a run, in one place (engine layer).

- ``expansion``: multi-table sources (``tables:``, ``schema:``) become one source per table;
- ``tasks``: the plan's values (Task, PlannedDecision, Plan);
- ``routing``: how the rows for one destination travel, and which checks apply where;
- ``plan``: the spec and its sources turned into the task DAG, with the decisions that shaped it;
- ``windows``: each incremental source's window, from the state its destinations committed;
- ``preflight``: every transform and check bound against its input's schema (``agent-etl validate``);
- ``resume``: a resumed run's first plan, and which of its tasks are already done;
- ``run``: ``plan_run``, all of the above for one run, as the orchestrator agent calls it.

Imports go down that list, never back up it.
"""
