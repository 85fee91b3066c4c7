"""Settling runs whose process died, and dropping the staging of runs a new run supersedes.

A run killed after a destination committed but before its status was stored
stays ``running`` with nobody to finish it. The destinations' loads ledgers
(``_agent_etl_loads``, a file destination's manifest) know what it committed:

- every destination records its commit: the run succeeded;
- otherwise it crashed: ``failed``, its staging kept for ``agent-etl resume``
  (which commits what is left; a committed destination is never committed twice).

A new ``run`` (not a resume) of a pipeline supersedes the pipeline's earlier
failed and cancelled runs: it loads their rows itself, so resuming one of them
afterwards would load those rows a second time. Their staging is dropped and
they are marked ``superseded``, which resume refuses.

Only the holder of the pipeline's lock settles or supersedes, so no live run is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import AgentETLError
from agent_orchestrated_etl.execution import RunContext
from agent_orchestrated_etl.model.messages import Decision
from agent_orchestrated_etl.spec import parse_spec, resolve_env
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore

#: ``decide(subject, choice, reason)``: a decision of the run that settles or supersedes.
Decide = Callable[[str, str, str], None]

SUPERSEDABLE = ("failed", "cancelled")


def settle(store: RunStore, settings: Settings, run_id: str, decide: Decide | None = None) -> str | None:
    """Give a dead ``running`` run the status its destinations' ledgers say; the new status, or None if it was not running."""
    record = store.get_run(run_id)
    if record is None or record["status"] != "running":
        return None
    try:
        with _context(record, settings) as ctx:
            committed = [dest.committed(run_id) for dest in ctx.destinations] if ctx else []
    except AgentETLError as exc:
        # Unknown is not "nothing committed": it stays running until a ledger can be read.
        if decide is not None:
            decide(
                f"run {run_id}",
                "leave its status",
                f"its process is gone, but its destinations' ledgers could not be read: {exc}",
            )
        return None
    if committed and all(committed):
        status, error, reason = (
            "succeeded",
            None,
            f"its process is gone; every destination's loads ledger records its commit ({len(committed)})",
        )
    else:
        why = f"{sum(committed)} of {len(committed)} destination(s) record its commit"
        status, error = (
            "failed",
            f"crashed: its process is gone and {why}; its staging is kept for `agent-etl resume {run_id}`",
        )
        reason = error
    if not store.settle(run_id, status, error):
        return None
    choice = f"mark run {run_id} {status}"
    store.record(
        Decision(sender="orchestrator", run_id=run_id, subject="run", choice=f"mark it {status}", reason=reason)
    )
    if decide is not None:
        decide(f"run {run_id}", choice, reason)
    return status


def settle_dead_runs(store: RunStore, settings: Settings, limit: int | None) -> None:
    """Settle the listed runs that are ``running`` while their lock's holder is dead (what ``agent-etl runs`` shows)."""
    durability = store.durability
    for record in store.list_runs(limit) if limit is not None else store.runs_of(None, ("running",)):
        holder = durability.holder(record["pipeline"]) if record["status"] == "running" else None
        if holder is None or holder["run_id"] != record["run_id"] or holder["alive"]:
            continue
        try:
            durability.acquire(
                record["pipeline"], record["run_id"]
            )  # one compare-and-set: a resume starting now wins or waits
        except PipelineBusyError:
            continue
        try:
            settle(store, settings, record["run_id"])
        finally:
            durability.release(record["pipeline"], record["run_id"])


def supersede(store: RunStore, settings: Settings, pipeline: str, run_id: str, decide: Decide) -> list[str]:
    """Drop the staging of the pipeline's failed and cancelled runs before ``run_id``; the runs superseded."""
    done = []
    for record in store.runs_of(pipeline, SUPERSEDABLE):
        if record["run_id"] == run_id:
            continue
        try:
            with _context(record, settings) as ctx:
                if ctx is None:
                    continue
                for dest in ctx.destinations:
                    dest.abort(record["run_id"])
        except AgentETLError as exc:
            decide(
                f"run {record['run_id']}",
                "leave its staging",
                f"it could not be dropped ({exc}); `agent-etl runs discard {record['run_id']}` drops it",
            )
            continue
        clean_workspace(settings.home_dir / "runs" / record["run_id"])
        if store.supersede(record["run_id"], by=run_id, was=SUPERSEDABLE):
            reason = (
                f"this new run loads its rows itself; resuming run {record['run_id']} afterwards would load them twice"
            )
            decide(f"run {record['run_id']}", "drop its staging: superseded", reason)
            store.record(
                Decision(
                    sender="orchestrator",
                    run_id=record["run_id"],
                    subject="run",
                    choice=f"superseded by run {run_id}",
                    reason="a new run of the pipeline loads its rows; its staging is dropped",
                )
            )
            done.append(record["run_id"])
    return done


def clean_workspace(run_dir: Path) -> None:
    """The workspace holds intermediate copies only; the store keeps the run's history."""
    for name in ("workspace.duckdb", "workspace.duckdb.wal"):
        (run_dir / name).unlink(missing_ok=True)
    for leftover in (run_dir / "spill",):
        if leftover.exists():
            for file in leftover.iterdir():
                file.unlink()
            leftover.rmdir()
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()


@contextmanager
def _context(record: dict[str, Any], settings: Settings) -> Iterator[RunContext | None]:
    """The destinations of a stored run, as its own spec names them (None for a workflow's record)."""
    loaded = parse_spec(record["spec_text"], file=record["spec_file"]) if record["spec_text"] else None
    if loaded is None or loaded.workflow is not None:
        yield None
        return
    spec = resolve_env(loaded.pipeline).rebased(Path(loaded.file).parent)
    ctx = RunContext(record["run_id"], spec, settings, settings.home_dir / "runs" / record["run_id"])
    try:
        ctx.expand()  # a multi-table source staged into one destination per table
        yield ctx
    finally:
        ctx.close()
