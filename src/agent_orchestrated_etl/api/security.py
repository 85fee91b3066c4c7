"""The API token.

The token guards every mutating route and the WebSocket. It comes from
AGENT_ETL_API_TOKEN, or else from ``<AGENT_ETL_HOME>/api-token``, which the first
``agent-etl serve`` creates (mode 0600) and announces once. Reading routes
are open: the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import Request
from agent_orchestrated_etl.api.problems import Problem

TOKEN_ENV = "AGENT_ETL_API_TOKEN"


def resolve_token(home: Path) -> tuple[str, bool]:
    """The API token and whether it was just generated (so the caller shows it, once)."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], False
    path = home / "api-token"
    if path.exists():
        return path.read_text().strip(), False
    home.mkdir(parents=True, exist_ok=True)
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


def require_token(request: Request) -> None:
    """FastAPI dependency for mutating routes."""
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": 'Bearer realm="agent-etl"'}
    if header is None:
        raise Problem(401, "token-missing", f"this route changes state and needs the API token: send 'Authorization: Bearer <token>' (set {TOKEN_ENV}, or read it from AGENT_ETL_HOME/api-token)", headers=challenge)
    if not token_matches(request.app.state.server.token, bearer(header)):
        raise Problem(401, "token-wrong", "the API token does not match; check AGENT_ETL_API_TOKEN or AGENT_ETL_HOME/api-token on the server", headers={**challenge, "WWW-Authenticate": 'Bearer realm="agent-etl", error="invalid_token"'})
