"""``agent-etl verify RUN``: the same reconciliation, later, for a committed run from its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.model.messages import DestinationVerified
from agent_orchestrated_etl.planning.plan import destination_label
from agent_orchestrated_etl.planning.tasks import Plan, Task
from agent_orchestrated_etl.spec import parse_spec, resolve_env
from agent_orchestrated_etl.store.records import RunStore
from agent_orchestrated_etl.verify.after_commit import _transform, feeding_and_staged
from agent_orchestrated_etl.verify.options import VerifySpec, verify_options
from agent_orchestrated_etl.verify.reconcile import TaskCount, reconcile


def verify_run(run_id: str, settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    """Reconcile every destination the run committed; records each result with the run. Returns (run id, results)."""
    store = RunStore(settings.store_url)
    try:
        record = store.get_run(run_id)
        if record is None:
            raise ConfigurationError(f"no run {run_id!r} in the store", hint="`agent-etl runs` lists them")
        full_id = record["run_id"]
        if not record["spec_text"]:
            raise ConfigurationError(f"run {full_id} has no stored spec", hint="verify a run started by this version")
        loaded = parse_spec(record["spec_text"], file=record["spec_file"])
        if loaded.pipeline is None:
            raise ConfigurationError(
                f"run {full_id} is a workflow", hint="verify each of its pipelines' runs (`agent-etl runs` lists them)"
            )
        spec = resolve_env(loaded.pipeline).rebased(Path(record["spec_file"]).parent)
        commits = {e["destination"]: e for e in record["events"] if e["kind"] == "destination_committed"}
        if not commits:
            raise ConfigurationError(
                f"run {full_id} committed no destination ({record['status']})",
                hint="only a committed load can be verified",
            )
        tasks = [t for t in record["tasks"] if t["status"] != "split" and t["definition"]]
        plan = Plan(
            tasks=[Task.from_dict({k: v for k, v in t["definition"].items() if k != "split_into"}) for t in tasks]
        )
        counts = {t["task_id"]: t for t in tasks}
        results = []
        for index in range(len(spec.all_destinations)):
            label = destination_label(spec, index)
            if label not in commits:
                continue
            by_id = {t.id: t for t in plan.tasks}
            feeding = [_counted(by_id[t], counts[t]) for t in feeding_and_staged(plan, index)]
            commit = commits[label]
            options = verify_options(spec.all_destinations[index].verify) or VerifySpec()
            result = reconcile(
                spec,
                index,
                label,
                feeding,
                {
                    "rows": commit["rows"],
                    "quarantined_rows": commit["quarantined_rows"],
                    "already_committed": commit["already_committed"],
                },
                options,
                batch_rows=settings.batch_rows,
            )
            store.record(DestinationVerified(sender="cli", run_id=full_id, destination=label, result=result))
            results.append(result)
        return full_id, results
    finally:
        store.close()


def latest(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last verify result of each destination among a stored run's events."""
    found = {e["destination"]: e["result"] for e in events if e["kind"] == "destination_verified"}
    return list(found.values())


def _counted(task: Task, row: dict[str, Any]) -> TaskCount:
    return TaskCount(
        task.id,
        task.kind,
        task.source,
        _transform(task),
        task.partition,
        row["rows_read"] or 0,
        row["rows_written"] or 0,
        row["rows_quarantined"] or 0,
    )
