"""Every call to a route that changes state goes to the store's audit log, with its outcome.

The route's dependency (api/security.py ``allow``) names the action and the caller
before it checks the role, so a refused attempt is recorded too. The actor is the
token's name (``token:ci-bot``), or ``anonymous``: never the token. The row is written
after the response, with its status and, for a created run or pipeline, its Location.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
_LOCATION = re.compile(r"^/api/v1/(runs|pipelines)/([^/?]+)$")


class Audit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        outcome: dict[str, Any] = {"status": 500}

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                outcome.update(status=message["status"], location=headers.get(b"location", b"").decode("latin-1"))
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            state = scope.get("state") or {}
            if "audit" in state:
                await asyncio.to_thread(_record, scope, state, outcome)


def _record(scope: Scope, state: dict[str, Any], outcome: dict[str, Any]) -> None:
    holder = state.get("holder")
    params = scope.get("path_params") or {}
    run_id, pipeline = params.get("run_id"), params.get("name")
    if found := _LOCATION.match(outcome.get("location") or ""):
        run_id, pipeline = (found.group(2), pipeline) if found.group(1) == "runs" else (run_id, found.group(2))
    try:
        scope["app"].state.server.runtime.store.durability.audit(
            f"api:{state['audit']}",
            actor=f"token:{holder.name}" if holder else "anonymous",
            run_id=run_id,
            pipeline=pipeline,
            detail=f"{scope['method']} {scope['path']} -> {outcome['status']}",
        )
    except Exception:  # the response is gone already; a store that cannot write says so in the log
        log.exception("could not write the audit log entry for %s %s", scope["method"], scope["path"])
