"""``/api/v1/runs``: start, list, get (tasks, decisions, quality, errors), cancel, resume."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from agent_orchestrated_etl.api.deps import server
from agent_orchestrated_etl.api.pipelines import find
from agent_orchestrated_etl.api.problems import Problem, problem_responses
from agent_orchestrated_etl.api.security import Role, allow
from agent_orchestrated_etl.api.service import Server
from agent_orchestrated_etl.monitoring.live import FIX_HINTS, reads_source
from agent_orchestrated_etl.quality.verdicts import report
from agent_orchestrated_etl.store.history import runs_page
from agent_orchestrated_etl.store.pipelines import utc
from agent_orchestrated_etl.verify.stored import latest

router = APIRouter(prefix="/runs", tags=["runs"])
ServerDep = Annotated[Server, Depends(server)]
VIEWER = Depends(allow(Role.VIEWER, readable=True))


class StartRun(BaseModel):
    pipeline: str = Field(description="Name of a registered pipeline.")


def _seconds(run: dict[str, Any]) -> float | None:
    end = run["finished_at"] or datetime.now(UTC)
    return round((end - run["started_at"]).total_seconds(), 3) if run["started_at"] else None


@router.post(
    "",
    status_code=202,
    dependencies=[Depends(allow(Role.OPERATOR))],
    summary="Start a run of a registered pipeline",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def start_run(body: StartRun, srv: ServerDep, response: Response) -> dict[str, Any]:
    find(srv, body.pipeline)
    running = srv.running_run(body.pipeline)
    if running is not None:
        # Two runs of one pipeline would stage into the same targets; the scheduler avoids it too.
        raise Problem(
            409,
            "run-already-running",
            f"pipeline {body.pipeline!r} has a run going ({running}); wait for it or cancel it: POST /api/v1/runs/{running}/cancel",
            run_id=running,
        )
    run_id = await srv.start_run(body.pipeline, trigger="api")
    response.headers["Location"] = f"/api/v1/runs/{run_id}"
    return {
        "run_id": run_id,
        "pipeline": body.pipeline,
        "status": "running",
        "links": {"self": f"/api/v1/runs/{run_id}", "live": f"/ws?run={run_id}"},
    }


@router.get(
    "",
    dependencies=[VIEWER],
    summary="Runs, newest first, paged by run id",
    responses=problem_responses(401, 422, 429),
)
def list_runs(
    srv: ServerDep,
    pipeline: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="The last run id of the previous page.")] = None,
) -> dict[str, Any]:
    rows = runs_page(srv.runtime.store.engine, pipeline=pipeline, status=status, limit=limit, before=before)
    runs = [{**r, "seconds": _seconds(r)} for r in rows]
    return {"runs": runs, "next_before": runs[-1]["run_id"] if len(runs) == limit else None}


def _load(srv: Server, run_id: str) -> dict[str, Any]:
    run = srv.runtime.store.get_run(run_id)
    if run is None:
        raise Problem(404, "unknown-run", f"no run {run_id!r} in the store; GET /api/v1/runs lists them", run_id=run_id)
    return run


@router.get(
    "/{run_id}",
    dependencies=[VIEWER],
    summary="A run with its tasks, decisions, quality checks, errors and alerts",
    responses=problem_responses(401, 404, 429),
)
async def get_run(run_id: str, srv: ServerDep) -> dict[str, Any]:
    monitor = srv.runtime.monitor
    await monitor.drain()
    run = _load(srv, run_id)
    full_id = run["run_id"]
    live = monitor.runs.get(full_id)
    snapshot = live.to_dict(datetime.now(UTC)) if live is not None else None
    events = run.pop("events")
    tasks = snapshot["tasks"] if snapshot and snapshot["tasks"] else [_stored_task(t) for t in run.pop("tasks")]
    run.pop("tasks", None)
    started, finished = utc(run["started_at"]), utc(run["finished_at"])
    errors = [
        {
            "task_id": e["task_id"],
            "attempt": e["attempt"],
            "error_type": e["error_type"],
            "remedy": e["remedy"],
            "message": e["message"],
            "fix_hint": FIX_HINTS.get(e["remedy"]),
        }
        for e in events
        if e["kind"] == "task_failed" and e["remedy"] != "cancelled"
    ]
    return {
        **run,
        "started_at": started,
        "finished_at": finished,
        "seconds": _seconds({"started_at": started, "finished_at": finished}),
        "live": full_id in srv.active,
        # The monitor's own figure while it holds the run, so the API and /metrics agree at any moment.
        "rows_read": snapshot["rows_read"]
        if snapshot and snapshot["tasks"]
        else sum(t["rows"] for t in tasks if t["reads_source"]),
        "tasks": tasks,
        "decisions": [
            {k: e[k] for k in ("sender", "at", "subject", "choice", "reason")}
            for e in events
            if e["kind"] == "decision"
        ],
        "quality": [{"task_id": t["id"], **check} for t in tasks for check in t["checks"]]
        + [{"task_id": None, **check} for check in report(latest(events))],
        "errors": errors,
        "commits": [
            {k: e[k] for k in ("destination", "rows", "quarantined_rows", "already_committed")}
            for e in events
            if e["kind"] == "destination_committed"
        ],
        "alerts": srv.alerts.store.recent(run_id=full_id) if srv.alerts.store else [],
    }


def _stored_task(row: dict[str, Any]) -> dict[str, Any]:
    """A task from the store, shaped like a live one (for runs older than the monitor's memory)."""
    return {
        "id": row["task_id"],
        "kind": row["kind"],
        "status": row["status"],
        "agent": row["agent"],
        "attempt": row["attempts"],
        "rows": row["rows_read"] or 0,
        "bytes": None,
        "rows_written": row["rows_written"] or 0,
        "rows_quarantined": row["rows_quarantined"] or 0,
        "seconds": row["seconds"],
        "error": row["error"],
        "checks": row["checks"] or [],
        "depends_on": [],
        "reads_source": reads_source(row["kind"], (row["definition"] or {}).get("source")),
        "error_type": None,
        "remedy": None,
        "rows_per_second": round((row["rows_read"] or 0) / row["seconds"], 1) if row["seconds"] else 0.0,
        "fix_hint": None,
    }


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    dependencies=[Depends(allow(Role.OPERATOR))],
    summary="Ask a running run to stop",
    responses=problem_responses(401, 403, 404, 409, 429),
)
async def cancel_run(run_id: str, srv: ServerDep) -> dict[str, Any]:
    run = _load(srv, run_id)
    if not srv.cancel(run["run_id"]):
        raise Problem(
            409,
            "run-not-running",
            f"run {run['run_id']} is {run['status']}, not running in this server; only a running run can be cancelled",
            run_id=run["run_id"],
            run_status=run["status"],
        )
    return {"run_id": run["run_id"], "status": "cancelling"}


@router.post(
    "/{run_id}/resume",
    status_code=202,
    dependencies=[Depends(allow(Role.OPERATOR))],
    summary="Go on with a failed or cancelled run from its checkpoints",
    responses=problem_responses(401, 403, 404, 409, 429),
)
async def resume_run(run_id: str, srv: ServerDep) -> dict[str, Any]:
    run = _load(srv, run_id)
    full_id, pipeline = run["run_id"], run["pipeline"]
    if full_id in srv.active:
        raise Problem(
            409, "run-already-running", f"run {full_id} is running; there is nothing to resume yet", run_id=full_id
        )
    if run["status"] in ("succeeded", "discarded", "superseded") or not run.get("spec_text"):
        why = (
            ("it was " + run["error"] if run["status"] == "superseded" else f"it is {run['status']}")
            if run.get("spec_text")
            else "it has no stored spec"
        )
        raise Problem(
            409,
            "run-not-resumable",
            f'run {full_id} cannot be resumed: {why}; start a new run with POST /api/v1/runs {{"pipeline": "{pipeline}"}}',
            run_id=full_id,
            run_status=run["status"],
        )
    other = srv.running_run(pipeline)
    if other is not None:
        raise Problem(
            409,
            "run-already-running",
            f"pipeline {pipeline!r} has another run going ({other}); resume {full_id} when it ends",
            run_id=other,
        )
    srv.resume_run(run)
    return {
        "run_id": full_id,
        "pipeline": pipeline,
        "status": "running",
        "links": {"self": f"/api/v1/runs/{full_id}", "live": f"/ws?run={full_id}"},
    }
