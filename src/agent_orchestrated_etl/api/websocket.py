"""``/ws``: every hub message, live, to dashboards and scripts.

Protocol (JSON text frames):
- the client authenticates with ``Authorization: Bearer <token>`` on the
  upgrade, or, from a browser, with a first frame ``{"token": "..."}``;
- the server sends ``{"type": "hello", "runs": [...], "backlog": [...]}``: snapshots
  of the runs in memory and the last messages, so a page can draw at once;
- then ``{"type": "event", "event": {...}}`` per hub message (run events, alerts,
  heartbeats, breaker changes); ``?run=RUN_ID`` narrows them to one run;
- a client that falls behind gets ``{"type": "resync", "runs": [...]}`` instead of
  the messages it missed; one that stops reading for SEND_TIMEOUT is closed.

Each client has its own hub subscription, which drops its oldest message when
full (agents/hub.py), so a slow client costs the pipeline nothing: that is the
bounded queue, and ``dropped`` moving is the signal to resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agent_orchestrated_etl.agents.hub import Subscription
from agent_orchestrated_etl.agents.messages import Message
from agent_orchestrated_etl.api.security import bearer, token_matches
from agent_orchestrated_etl.api.service import Server

router = APIRouter()

QUEUE_SIZE = 256
SEND_TIMEOUT = 10.0
AUTH_TIMEOUT = 5.0
RECENT_FINISHED = 20
UNAUTHORIZED = 4401  # application close codes are 4000-4999; this one mirrors HTTP 401
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class _Encoded:
    """Each message is serialised once however many clients it goes to."""

    def __init__(self, size: int = 4096) -> None:
        self._cache: OrderedDict[str, str] = OrderedDict()
        self.size = size

    def __call__(self, message: Message) -> str:
        text = self._cache.get(message.id)
        if text is None:
            text = '{"type":"event","event":' + message.model_dump_json() + "}"
            self._cache[message.id] = text
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return text


encode = _Encoded()


async def _authenticated(websocket: WebSocket, token: str) -> bool:
    if token_matches(token, bearer(websocket.headers.get("authorization"))):
        return True
    try:
        async with asyncio.timeout(AUTH_TIMEOUT):
            first = json.loads(await websocket.receive_text())
        given = first.get("token") if isinstance(first, dict) else None
    except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
        given = None
    if token_matches(token, given if isinstance(given, str) else None):
        return True
    with contextlib.suppress(Exception):
        await websocket.close(UNAUTHORIZED, "missing or wrong token: send {\"token\": \"...\"} first, or an Authorization header")
    return False


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
    if not await _authenticated(websocket, srv.token):
        return
    hub, monitor = srv.runtime.hub, srv.runtime.monitor
    subscription = hub.subscribe(f"run.{run}" if run else "*", maxsize=QUEUE_SIZE)
    srv.metrics.ws_clients.inc()
    pump = None
    try:
        await monitor.drain()  # so the snapshot holds everything published before the subscription
        backlog = [m for m in monitor.recent if run is None or getattr(m, "run_id", None) == run]
        hello = {"type": "hello", "runs": _runs(srv, run), "backlog": [json.loads(m.model_dump_json()) for m in backlog]}
        await websocket.send_text(json.dumps(hello, default=str))
        pump = asyncio.create_task(_pump(websocket, srv, subscription, run))
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # the client has nothing more to say; reading notices when it leaves
    except WebSocketDisconnect:
        pass
    finally:
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        hub.unsubscribe(subscription)
        srv.metrics.ws_clients.dec()


async def _pump(websocket: WebSocket, srv: Server, subscription: Subscription, run: str | None) -> None:
    seen_dropped = 0
    try:
        while True:
            message = await subscription.get()
            if subscription.dropped != seen_dropped:
                # Messages were lost: a fresh snapshot replaces them, and what is queued is older than it.
                await srv.runtime.monitor.drain()
                while subscription.get_nowait() is not None:
                    pass
                seen_dropped = subscription.dropped
                srv.metrics.ws_resyncs.inc()
                text = json.dumps({"type": "resync", "runs": _runs(srv, run), "dropped": seen_dropped}, default=str)
            else:
                text = encode(message)
            async with asyncio.timeout(SEND_TIMEOUT):
                await websocket.send_text(text)
    except TimeoutError:
        srv.metrics.ws_dropped.inc()
        with contextlib.suppress(Exception):
            await websocket.close(1013, "client stopped reading; reconnect to get a fresh snapshot")
