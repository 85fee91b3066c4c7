"""``/api/v1/session``: the dashboard trades a token for an HttpOnly, SameSite=Strict session cookie.

The link serve prints carries the token in its fragment, which a browser never
sends; the page posts it here once, drops the fragment, and from then on the
cookie, which no script can read, stands for it. So the token is in no URL, no
log, no history entry and no local storage. Sessions are in the store (by hash)
and end after ``--session-hours``, or when their token is revoked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from agent_orchestrated_etl.api.deps import server
from agent_orchestrated_etl.api.problems import Problem, problem_responses
from agent_orchestrated_etl.api.security import SESSION_COOKIE, Role, allow, authenticate
from agent_orchestrated_etl.api.service import Server

router = APIRouter(prefix="/session", tags=["session"])
ServerDep = Annotated[Server, Depends(server)]


@router.post(
    "", status_code=204, summary="Exchange the bearer token for a session cookie", responses=problem_responses(401, 429)
)
def open_session(request: Request, srv: ServerDep) -> Response:
    request.state.audit = "open_session"
    holder = authenticate(request)
    if holder is None or "authorization" not in request.headers:
        raise Problem(
            401, "token-missing", "send the API token as 'Authorization: Bearer <token>' to get a session cookie"
        )
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE,
        srv.tokens.open_session(holder, timedelta(hours=srv.options.session_hours)),
        max_age=int(srv.options.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(
    "",
    dependencies=[Depends(allow(Role.VIEWER))],
    summary="Who the token or session cookie belongs to",
    responses=problem_responses(401, 429),
)
def whoami(request: Request) -> dict[str, Any]:
    holder = request.state.holder
    return {"name": holder.name, "role": holder.role}


@router.delete(
    "",
    status_code=204,
    dependencies=[Depends(allow(Role.VIEWER))],
    summary="End the session (sign out)",
    responses=problem_responses(401, 403, 429),
)
def close_session(request: Request, srv: ServerDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        srv.tokens.close_session(cookie)
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
