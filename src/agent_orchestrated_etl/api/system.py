"""Agents, tools, events, alerts and ``/metrics``: what the system is and what it did."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from agent_orchestrated_etl.api.deps import server
from agent_orchestrated_etl.api.problems import Problem, problem_responses
from agent_orchestrated_etl.api.security import Role, allow
from agent_orchestrated_etl.api.service import Server
from agent_orchestrated_etl.monitoring.metrics import CONTENT_TYPE
from agent_orchestrated_etl.store.history import page_events

router = APIRouter(tags=["system"])
ServerDep = Annotated[Server, Depends(server)]
VIEWER = Depends(allow(Role.VIEWER, readable=True))


@router.get(
    "/agents",
    dependencies=[VIEWER],
    summary="Agents: capabilities, status, load, heartbeat age, CPU and RSS",
    responses=problem_responses(401, 429),
)
async def agents(srv: ServerDep) -> list[dict[str, Any]]:
    return srv.runtime.monitor.agent_statuses()


@router.get(
    "/tools",
    dependencies=[VIEWER],
    summary="Tools the ETL agents hold, with input and output JSON Schemas",
    responses=problem_responses(401, 429),
)
def tools(srv: ServerDep) -> list[dict[str, Any]]:
    return srv.runtime.tools.describe()


@router.get(
    "/events",
    dependencies=[VIEWER],
    summary="Recorded run events in order, paged by id",
    responses=problem_responses(401, 422, 429),
)
def events(
    srv: ServerDep,
    run_id: str | None = None,
    kind: str | None = None,
    after: Annotated[int, Query(ge=0, description="The last event id seen; 0 to start.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    page = page_events(srv.runtime.store.engine, run_id=run_id, kind=kind, after=after, limit=limit)
    return {"events": page, "next_after": page[-1]["id"] if len(page) == limit else None}


@router.get(
    "/alerts",
    dependencies=[VIEWER],
    summary="Alerts sent, newest first",
    responses=problem_responses(401, 422, 429),
)
def alerts(
    srv: ServerDep, run_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    return srv.alerts.store.recent(run_id=run_id, limit=limit) if srv.alerts.store else []


metrics_router = APIRouter(tags=["system"])


@metrics_router.get(
    "/metrics",
    dependencies=[VIEWER],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}, **problem_responses(401, 404, 429)},
)
async def metrics(srv: ServerDep) -> Response:
    if not srv.options.settings.monitoring_enabled:
        raise Problem(
            404,
            "monitoring-disabled",
            "metrics are off because MONITORING_ENABLED=false; set MONITORING_ENABLED=true and restart agent-etl serve",
        )
    return Response(srv.metrics.render(), media_type=CONTENT_TYPE)


@router.get(
    "/audit",
    dependencies=[Depends(allow(Role.ADMIN))],
    summary="The audit log, newest first: who changed what",
    responses=problem_responses(401, 403, 422, 429),
)
def audit(srv: ServerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return srv.runtime.store.durability.audit_log(limit=limit)
