"""The API token and the Host check.

The token guards every route that returns or changes data, and the WebSocket;
``serve --public-read`` opens the reading routes (GET, and validating a spec).
It comes from AGENT_ETL_API_TOKEN (which may be a secret reference such as
``${file:/run/secrets/token}``), or else from ``<AGENT_ETL_HOME>/api-token``,
which the first ``agent-etl serve`` creates (mode 0600) and announces once.

A browser page from any site can make requests to 127.0.0.1 under a name
its attacker controls (DNS rebinding); such a request carries that name in
``Host``, so only the names serve is reached by are accepted: the bind
address, localhost, and each ``--allowed-host``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_orchestrated_etl.api.problems import MEDIA_TYPE, Problem
from agent_orchestrated_etl.secrets import resolve as resolve_references

TOKEN_ENV = "AGENT_ETL_API_TOKEN"


def resolve_token(home: Path) -> tuple[str, bool]:
    """The API token and whether it was just generated (so the caller shows it, once)."""
    if os.environ.get(TOKEN_ENV):
        return resolve_references(os.environ[TOKEN_ENV], where=TOKEN_ENV), False
    path = home / "api-token"
    if path.exists():
        return path.read_text().strip(), False
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token, True


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(expected.encode(), given.encode())


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def require_reader(request: Request) -> None:
    """FastAPI dependency for reading routes: the token, unless serve runs with --public-read."""
    if not request.app.state.server.options.public_read:
        _check(request, "this route returns pipelines, runs and their errors and needs the API token (or start serve with --public-read)")


def require_token(request: Request) -> None:
    """FastAPI dependency for mutating routes."""
    _check(request, "this route changes state and needs the API token")


def _check(request: Request, why: str) -> None:
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": 'Bearer realm="agent-etl"'}
    if header is None:
        raise Problem(401, "token-missing", f"{why}: send 'Authorization: Bearer <token>' (set {TOKEN_ENV}, or read it from AGENT_ETL_HOME/api-token)", headers=challenge)
    if not token_matches(request.app.state.server.token, bearer(header)):
        raise Problem(401, "token-wrong", "the API token does not match; check AGENT_ETL_API_TOKEN or AGENT_ETL_HOME/api-token on the server", headers={**challenge, "WWW-Authenticate": 'Bearer realm="agent-etl", error="invalid_token"'})


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
        body = json.dumps({"type": "about:blank", "title": "Misdirected Request", "status": 421, "detail": detail, "instance": scope["path"]}).encode()
        await send({"type": "http.response.start", "status": 421, "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
