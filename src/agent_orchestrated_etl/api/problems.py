"""Errors as RFC 9457 problem details (``application/problem+json``), for every route.

Our own problem types are URNs (``urn:agent-etl:problem:invalid-spec``): stable
identifiers a client can switch on, without a web page to host. Anything not
raised on purpose becomes a 500 problem that names the request id to report,
and the server keeps running.
"""

from __future__ import annotations

import logging
import secrets
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, SpecError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        slug: str | None,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = f"urn:agent-etl:problem:{slug}" if slug else "about:blank"
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = headers
        self.extra = extra


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "description": "A URN such as urn:agent-etl:problem:invalid-spec, or about:blank."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What happened, where, and what to do next."},
        "instance": {"type": "string", "description": "The request's path."},
    },
    "additionalProperties": True,
}
_WHEN = {
    400: "The server's configuration refuses the request",
    401: "No token, or a wrong one",
    403: "The token's role may not do this",
    404: "No such pipeline or run",
    409: "The run or pipeline is not in a state that allows this",
    413: "The request body is larger than serve --max-body",
    422: "The request or the spec in it is invalid; each problem names where",
    429: "Too many requests from this token; Retry-After says when to try again",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem documents a route can answer with (and 500, which any can)."""
    content = {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}
    declared: dict[int | str, dict[str, Any]] = {s: {"description": _WHEN[s], "content": content} for s in statuses}
    if 429 in statuses:
        declared[429]["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
    if 401 in statuses:
        challenge = {"description": "The Bearer challenge", "schema": {"type": "string"}}
        declared[401]["headers"] = {"WWW-Authenticate": challenge}
    declared[500] = {"description": "A bug: the detail names the incident the server logged", "content": content}
    return declared


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return JSONResponse(body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers)


def spec_problem(exc: SpecError) -> Problem:
    return Problem(
        422,
        "invalid-spec",
        f"{len(exc.problems)} problem(s) in the pipeline spec",
        problems=[vars(p) for p in exc.problems],
    )


def _methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document gives ``path``; templates (``/runs/{run_id}``) match segment by segment."""
    paths = app.openapi()["paths"]
    if path in paths:  # a fixed path (/pipelines/validate) is that route, not a value of /pipelines/{name}
        return sorted(method.upper() for method in paths[path])
    parts = path.rstrip("/").split("/")
    found: set[str] = set()
    for template, operations in paths.items():
        pattern = template.rstrip("/").split("/")
        matches = len(pattern) == len(parts)
        if matches and all(p == q or (p.startswith("{") and q) for p, q in zip(pattern, parts, strict=True)):
            found.update(method.upper() for method in operations)
    return sorted(found)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # The router names the methods of the first route whose path matched, not of every route on the path.
            headers["Allow"] = ", ".join(_methods(app, request.url.path)) or headers.get("Allow", "")
        return problem_response(Problem(exc.status_code, None, str(exc.detail), headers=headers), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"where": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['where']}: {e['message']}" for e in errors)
        return problem_response(Problem(422, "invalid-request", detail, errors=errors), request)

    @app.exception_handler(SpecError)
    async def _spec(request: Request, exc: SpecError) -> JSONResponse:
        return problem_response(spec_problem(exc), request)

    @app.exception_handler(AgentETLError)
    async def _ours(request: Request, exc: AgentETLError) -> JSONResponse:
        status = 400 if isinstance(exc, ConfigurationError) else 500
        return problem_response(
            Problem(status, type(exc).__name__.lower(), str(exc), where=exc.where, hint=exc.hint), request
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        incident = secrets.token_hex(4)
        log.exception("internal error %s on %s %s", incident, request.method, request.url.path)
        detail = f"internal error {incident}: {type(exc).__name__}; the server logged the traceback, please report it"
        return problem_response(Problem(500, "internal", detail, incident=incident), request)
