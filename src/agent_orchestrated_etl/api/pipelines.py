"""``/api/v1/pipelines``: register from YAML (a pipeline, or a workflow of several), list, get, validate, unregister."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from agent_orchestrated_etl.api.deps import server
from agent_orchestrated_etl.api.problems import Problem, problem_responses, spec_problem
from agent_orchestrated_etl.api.security import Role, allow
from agent_orchestrated_etl.api.service import Server, UnknownPipeline
from agent_orchestrated_etl.exceptions import SpecError
from agent_orchestrated_etl.monitoring.schedules import as_schedule
from agent_orchestrated_etl.store.history import runs_page
from agent_orchestrated_etl.store.pipelines import RegisteredPipeline

router = APIRouter(prefix="/pipelines", tags=["pipelines"])
ServerDep = Annotated[Server, Depends(server)]
VIEWER = Depends(allow(Role.VIEWER, readable=True))


class SpecBody(BaseModel):
    yaml: str = Field(
        description="The pipeline spec, or a workflow spec (`workflow:` with `pipelines:`), as YAML text."
    )
    base_dir: str | None = Field(
        None,
        description="Directory relative paths in the spec resolve against (inside the server's --data-root); the server's working directory by default.",
    )


def find(srv: Server, name: str) -> RegisteredPipeline:
    try:
        return srv.get(name)
    except UnknownPipeline:
        known = ", ".join(p.name for p in srv.pipelines.list()) or "none yet"
        raise Problem(
            404,
            "unknown-pipeline",
            f"no pipeline named {name!r} is registered (registered: {known}); POST its YAML to /api/v1/pipelines",
            pipeline=name,
        ) from None


def describe(srv: Server, registered: RegisteredPipeline, *, with_yaml: bool = False) -> dict[str, Any]:
    loaded = srv.loaded(registered)
    spec, workflow = loaded.pipeline, loaded.workflow
    members = loaded.pipelines
    last = runs_page(srv.runtime.store.engine, pipeline=registered.name, status=None, limit=1, before=None)
    data: dict[str, Any] = {
        "name": registered.name,
        "kind": "workflow" if workflow else "pipeline",
        "description": workflow.description if workflow else members[0].description,
        "sha256": registered.sha256,
        "base_dir": registered.base_dir,
        "registered_at": registered.registered_at,
        "updated_at": registered.updated_at,
        "schedule": as_schedule(spec.schedule).model_dump() if spec is not None and spec.schedule is not None else None,
        "next_run_at": srv.scheduler.next_due(registered.name),
        "sla": spec.sla.model_dump(exclude_none=True) if spec is not None and spec.sla else None,
        "sources": sorted({name for p in members for name in p.sources}),
        "destinations": sum(len(p.all_destinations) for p in members),
        "running": srv.is_running(registered.name),
        "last_run": {k: last[0][k] for k in ("run_id", "status", "started_at", "finished_at", "rows_written")}
        if last
        else None,
    }
    if workflow:
        data["pipelines"] = [
            {"name": p.name, "depends_on": p.depends_on, "sla": p.sla.model_dump(exclude_none=True) if p.sla else None}
            for p in workflow.pipelines
        ]
    if with_yaml:
        data["yaml"] = registered.yaml
    return data


@router.get("", dependencies=[VIEWER], summary="List registered pipelines", responses=problem_responses(401, 429))
def list_pipelines(srv: ServerDep) -> list[dict[str, Any]]:
    return [describe(srv, p) for p in srv.pipelines.list()]


@router.post(
    "",
    status_code=201,
    dependencies=[Depends(allow(Role.ADMIN))],
    responses=problem_responses(400, 401, 403, 413, 422, 429),
    summary="Register a pipeline or a workflow from YAML (replaces one of the same name)",
)
async def register(body: SpecBody, srv: ServerDep, response: Response) -> dict[str, Any]:
    _, base = srv.check_request(body.yaml, body.base_dir)
    loaded, created = srv.register(body.yaml, base_dir=base)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/pipelines/{loaded.name}"
    return describe(srv, find(srv, loaded.name))


@router.post(
    "/validate",
    dependencies=[VIEWER],
    summary="Check a spec without registering it",
    responses=problem_responses(400, 401, 413, 422, 429),
)
def validate(body: SpecBody, srv: ServerDep) -> dict[str, Any]:
    try:
        loaded, _ = srv.check_request(body.yaml, body.base_dir)
    except SpecError as exc:
        return {"valid": False, "problems": spec_problem(exc).extra["problems"]}
    return {
        "valid": True,
        "pipeline": loaded.name,
        "kind": "workflow" if loaded.workflow else "pipeline",
        "problems": [],
    }


@router.get(
    "/{name}",
    dependencies=[VIEWER],
    summary="A registered pipeline, with its YAML",
    responses=problem_responses(401, 404, 429),
)
def get_pipeline(name: str, srv: ServerDep) -> dict[str, Any]:
    return describe(srv, find(srv, name), with_yaml=True)


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=[Depends(allow(Role.ADMIN))],
    responses=problem_responses(401, 403, 404, 429),
    summary="Unregister a pipeline (its runs stay in the store)",
)
async def delete_pipeline(name: str, srv: ServerDep) -> Response:
    find(srv, name)
    srv.unregister(name)
    return Response(status_code=204)
