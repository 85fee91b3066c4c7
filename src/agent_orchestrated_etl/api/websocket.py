"""``/ws``: every hub message, live, to dashboards and scripts.

Protocol (JSON text frames):
- the client authenticates with ``Authorization: Bearer <token>`` on the
  upgrade, the dashboard's session cookie, or a first frame ``{"token": "..."}``;
  a token of any role will do;
- the server sends ``{"type": "hello", "runs": [...], "backlog": [...]}``: snapshots
  of the runs in memory and the last messages, so a page can draw at once;
- then, at most every quarter second, ``{"type": "events", "events": [...]}`` with
  the hub messages since the last frame (run events, alerts, heartbeats, breaker
  changes), in order; of a task's progress and an agent's heartbeats only the
  latest in that interval is sent. ``?run=RUN_ID`` narrows them to one run's events;
- a client that falls behind gets ``{"type": "resync", "runs": [...]}`` instead of
  the frames it missed; one that stops reading for SEND_TIMEOUT is closed.

Clients share one hub subscription and each frame's text (api/fanout.py); each has a
bounded outbox, so a slow client costs the pipeline nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agent_orchestrated_etl.api.fanout import RESYNC, Client
from agent_orchestrated_etl.api.security import SESSION_COOKIE, bearer, holder_of, session_holder
from agent_orchestrated_etl.api.service import Server
from agent_orchestrated_etl.store.tokens import Holder

router = APIRouter()

SEND_TIMEOUT = 10.0
AUTH_TIMEOUT = 5.0
RECENT_FINISHED = 20
UNAUTHORIZED = 4401  # application close codes are 4000-4999; this one mirrors HTTP 401
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


async def _authenticated(websocket: WebSocket, srv: Server) -> bool:
    """Any role may follow /ws: by bearer token, the dashboard's session cookie, or a first frame ``{"token": ...}``."""
    given = bearer(websocket.headers.get("authorization"))
    cookie = websocket.cookies.get(SESSION_COOKIE)
    if await asyncio.to_thread(_holder, srv, given, cookie) is not None:
        return True
    try:
        async with asyncio.timeout(AUTH_TIMEOUT):
            first = json.loads(await websocket.receive_text())
        given = first.get("token") if isinstance(first, dict) else None
    except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
        given = None
    if isinstance(given, str) and await asyncio.to_thread(_holder, srv, given, None) is not None:
        return True
    with contextlib.suppress(Exception):
        await websocket.close(
            UNAUTHORIZED, 'missing or wrong token: send {"token": "..."} first, or an Authorization header'
        )
    return False


def _holder(srv: Server, token: str | None, cookie: str | None) -> Holder | None:
    return holder_of(srv, token) or session_holder(srv, cookie)


def _runs(srv: Server, run: str | None) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    states = list(srv.runtime.monitor.runs.values())
    if run is not None:
        return [s.to_dict(now) for s in states if s.run_id == run]
    active = [s for s in states if not s.finished]
    finished = [s for s in states if s.finished][-RECENT_FINISHED:]
    return [s.to_dict(now) for s in [*finished, *active]]


@router.websocket("/ws")
async def live(websocket: WebSocket, run: str | None = None) -> None:
    srv: Server = websocket.app.state.server
    await websocket.accept()
    if run is not None and not _RUN_ID.match(run):
        await websocket.close(1008, "run must be a run id")
        return
    if not await _authenticated(websocket, srv):
        return
    monitor = srv.runtime.monitor
    client = srv.fanout.add(run)
    srv.metrics.ws_clients.inc()
    writer = None
    try:
        await monitor.drain()  # so the snapshot holds everything published before the client was added
        backlog = [m for m in monitor.recent if run is None or getattr(m, "run_id", None) == run]
        hello = {
            "type": "hello",
            "runs": _runs(srv, run),
            "backlog": [json.loads(m.model_dump_json()) for m in backlog],
        }
        await websocket.send_text(json.dumps(hello, default=str))
        writer = asyncio.create_task(_write(websocket, srv, client))
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # the client has nothing more to say; reading notices when it leaves
    except WebSocketDisconnect:
        pass
    finally:
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        srv.fanout.remove(client)
        srv.metrics.ws_clients.dec()


async def _write(websocket: WebSocket, srv: Server, client: Client) -> None:
    try:
        while True:
            text = await client.outbox.get()
            if text is RESYNC:
                # Frames were lost: a fresh snapshot replaces them, and what is queued is older than it.
                await srv.runtime.monitor.drain()
                client.take_queued()
                srv.metrics.ws_resyncs.inc()
                text = json.dumps(
                    {"type": "resync", "runs": _runs(srv, client.run), "dropped_frames": client.dropped_frames},
                    default=str,
                )
            async with asyncio.timeout(SEND_TIMEOUT):
                await websocket.send_text(text)
    except TimeoutError:
        srv.metrics.ws_dropped.inc()
        with contextlib.suppress(Exception):
            await websocket.close(1013, "client stopped reading; reconnect to get a fresh snapshot")
