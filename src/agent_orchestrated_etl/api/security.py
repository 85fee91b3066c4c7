"""API tokens and their roles, the rate limit per token, and the Host check.

A token guards every route that returns or changes data, and the WebSocket;
``serve --public-read`` opens the reading routes (GET, and validating a spec).
Each route names the lowest role that may call it (``allow``): viewer, operator
or admin. The single API token is an admin's: it comes from AGENT_ETL_API_TOKEN (which may be
a secret reference such as ``${file:/run/secrets/token}``),
or else from ``<AGENT_ETL_HOME>/api-token``, which the first ``agent-etl serve``
creates (mode 0600) and announces once. Others, with their roles, are made by
``agent-etl tokens create`` and kept hashed in the store (store/tokens.py).
A browser sends the session cookie of api/sessions.py instead of a token.

A browser page from any site can make requests to 127.0.0.1 under a name
its attacker controls (DNS rebinding); such a request carries that name in
``Host``, so only the names serve is reached by are accepted: the bind
address, localhost, and each ``--allowed-host``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_orchestrated_etl import redaction
from agent_orchestrated_etl.api.problems import MEDIA_TYPE, Problem
from agent_orchestrated_etl.secrets import resolve as resolve_references
from agent_orchestrated_etl.store.tokens import DEFAULT_NAME, Holder

if TYPE_CHECKING:
    from agent_orchestrated_etl.api.service import Server

TOKEN_ENV = "AGENT_ETL_API_TOKEN"
SESSION_COOKIE = "agent_etl_session"


def resolve_token(home: Path) -> tuple[str, bool]:
    """The API token and whether it was just generated (so the caller shows it, once)."""
    if os.environ.get(TOKEN_ENV):
        token = resolve_references(os.environ[TOKEN_ENV], where=TOKEN_ENV)
        # A literal token is as secret as a resolved one: mask it in logs and answers too.
        redaction.register(token)
        return token, False
    path = home / "api-token"
    if path.exists():
        token = path.read_text().strip()
        redaction.register(token)
        return token, False
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    redaction.register(token)
    return token, True


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(expected.encode(), given.encode())


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class Role(IntEnum):
    """What a token may do; each role may do what the ones below it may."""

    VIEWER = 1  # read pipelines, runs, events, alerts, agents, tools, metrics; validate a spec; follow /ws
    OPERATOR = 2  # and start, cancel and resume runs of registered pipelines
    ADMIN = 3  # and register and delete pipelines (a spec chooses what is read and written), read the audit log

    @classmethod
    def of(cls, name: str) -> Role:
        return cls[name.upper()]


def holder_of(server: Server, token: str | None) -> Holder | None:
    """Whose token this is: the single API token is an admin named ``default``; others are in the store."""
    if not token:
        return None
    if token_matches(server.token, token):
        return Holder(DEFAULT_NAME, "admin")
    return server.tokens.holder(token)


def session_holder(server: Server, cookie: str | None) -> Holder | None:
    return server.tokens.session(cookie) if cookie else None


def allow(role: Role, *, readable: bool = False) -> Callable[[Request], None]:
    """A FastAPI dependency: the caller's token (or session cookie) must have ``role`` or a higher one.

    ``readable`` routes are open without a token when serve runs with --public-read. A call to any
    other route that is not a GET changes state, so it goes to the audit log (api/audit.py), refused or not.
    """

    def check(request: Request) -> None:
        if not readable and request.method not in _SAFE:
            request.state.audit = request.scope["endpoint"].__name__
        holder = authenticate(request)
        if holder is None:
            if readable and request.app.state.server.options.public_read:
                return
            why = (
                "this route returns pipelines, runs and their errors and needs the API token "
                "(or start serve with --public-read)"
                if readable
                else "this route changes state and needs the API token"
            )
            raise Problem(
                401,
                "token-missing",
                f"{why}: send 'Authorization: Bearer <token>' "
                f"(set {TOKEN_ENV}, or read it from AGENT_ETL_HOME/api-token)",
                headers={"WWW-Authenticate": 'Bearer realm="agent-etl"'},
            )
        if Role.of(holder.role) < role:
            wanted = role.name.lower()
            raise Problem(
                403,
                "role-insufficient",
                f"this route needs the {wanted} role, and token {holder.name!r} is a {holder.role}; "
                f"an admin can make one: agent-etl tokens create NAME --role {wanted}",
                role=wanted,
            )

    return check


_SAFE = ("GET", "HEAD", "OPTIONS")


def authenticate(request: Request) -> Holder | None:
    """The caller, by bearer token or session cookie (None for neither), past the rate limit; a wrong token is a 401."""
    srv: Server = request.app.state.server
    header = request.headers.get("authorization")
    if header is not None:
        holder = holder_of(srv, bearer(header))
        if holder is None:
            _limit(request, None)  # so guessing tokens is as slow as the rate limit
            raise Problem(
                401,
                "token-wrong",
                "the API token does not match; check AGENT_ETL_API_TOKEN or AGENT_ETL_HOME/api-token on the server, "
                "or `agent-etl tokens list`",
                headers={"WWW-Authenticate": 'Bearer realm="agent-etl", error="invalid_token"'},
            )
    else:
        holder = session_holder(srv, request.cookies.get(SESSION_COOKIE))
        if holder is not None and request.method not in _SAFE:
            _same_origin(request)
    _limit(request, holder)
    request.state.holder = holder
    return holder


def _same_origin(request: Request) -> None:
    """A cookie rides along on any request to this site, also one a page on another port of it makes
    (SameSite compares sites, not origins): a change made with the cookie must come from serve's own page."""
    origin = request.headers.get("origin")
    if origin is None or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise Problem(
            403,
            "cross-origin",
            "a request that changes state with the session cookie must come from the dashboard itself "
            f"(Origin {origin!r}); "
            "send the token as 'Authorization: Bearer <token>' instead",
        )


def _limit(request: Request, holder: Holder | None) -> None:
    limiter = request.app.state.server.limiter
    if limiter is None:
        return
    key = f"token:{holder.name}" if holder else f"address:{request.client.host if request.client else '?'}"
    wait = limiter.acquire(key)
    if wait is not None:
        seconds = math.ceil(wait)
        raise Problem(
            429,
            "rate-limited",
            f"more than {limiter.per_minute} requests a minute from {key}; "
            f"retry in {seconds} s (agent-etl serve --rate-limit)",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )


LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(bind: str, extra: list[str]) -> frozenset[str] | None:
    """The Host names serve answers to; None (any) only when ``--allowed-host '*'`` says so."""
    if "*" in extra:
        return None
    names = {*LOCAL_NAMES, *(name.lower() for name in extra)}
    if bind not in _WILDCARDS:
        names.add(bind.lower())
    return frozenset(names)


def host_name(header: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


class HostCheck:
    """Refuses a request or WebSocket whose Host header is not a name of this server (421, a problem document)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "Host not allowed"})
            return
        detail = f"this server does not answer to Host {host!r}; start agent-etl serve with --allowed-host {host or 'NAME'} if that is its name"
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Misdirected Request",
                "status": 421,
                "detail": detail,
                "instance": scope["path"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
