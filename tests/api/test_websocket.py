"""/ws: token check, hello snapshot, every task's final event, and what happens to slow clients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from agent_orchestrated_etl.agents.messages import TaskProgress
from agent_orchestrated_etl.api import websocket as ws
from agent_orchestrated_etl.api.service import Server, ServeOptions
from agent_orchestrated_etl.config import Settings
from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN


def test_the_socket_needs_the_token(client: TestClient) -> None:
    with client.websocket_connect("/ws") as socket:
        socket.send_text(json.dumps({"token": "wrong"}))
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
    assert closed.value.code == ws.UNAUTHORIZED
    with client.websocket_connect("/ws", headers={"Authorization": "Bearer wrong"}) as socket:
        socket.send_text("not json")
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
    assert closed.value.code == ws.UNAUTHORIZED


def test_a_subscriber_sees_the_run_live_and_every_task_end(client: TestClient, data_dir: Path) -> None:
    spec = PEOPLE_YAML.replace("sources:\n  people: {type: file, path: people.csv}", "sources:\n  people: {type: file, path: 'people*.csv'}")
    for i in range(3):
        (data_dir / f"people{i}.csv").write_text((data_dir / "people.csv").read_text())
    client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH)
    with client.websocket_connect("/ws") as socket:
        socket.send_text(json.dumps({"token": TOKEN}))
        hello = json.loads(socket.receive_text())
        assert hello["type"] == "hello" and hello["runs"] == []
        run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
        kinds, finished = [], set()
        while True:
            frame = json.loads(socket.receive_text())
            assert frame["type"] == "event"
            event = frame["event"]
            if event.get("run_id") != run_id:
                continue
            kinds.append(event["kind"])
            if event["kind"] == "task_finished":
                finished.add(event["task_id"])
            if event["kind"] == "run_finished":
                break
    assert finished == {f"people[{i}]>people" for i in range(4)}
    assert kinds[0] == "run_started" and kinds.count("destination_committed") == 1
    # A newcomer gets the finished run in its hello, and the backlog.
    with client.websocket_connect(f"/ws?run={run_id}", headers=AUTH) as socket:
        hello = json.loads(socket.receive_text())
    (run,) = hello["runs"]
    assert (run["run_id"], run["status"], run["rows_written"], run["rows_quarantined"]) == (run_id, "succeeded", 360, 40)
    assert hello["backlog"][-1]["kind"] == "run_finished"


class _StuckSocket:
    """A client that stops reading: its first send blocks until released."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.release = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        if not self.sent:
            self.sent.append(json.loads(text))
            await self.release.wait()
            return
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def _server(home: Path) -> Server:
    return Server(ServeOptions(settings=Settings(), token=TOKEN, base_dir=home))


async def test_a_client_that_falls_behind_is_resynced_and_never_blocks_publishing(etl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await _server(etl_home) as srv:
        subscription = srv.runtime.hub.subscribe("run.*", maxsize=4)
        socket = _StuckSocket()
        pump = asyncio.create_task(ws._pump(socket, srv, subscription, None))  # type: ignore[arg-type]
        event = TaskProgress(run_id="r1", task_id="t", rows=1, bytes=1)
        srv.runtime.hub.publish(event.topic, event)
        await asyncio.sleep(0.01)  # the pump is now stuck sending that one
        for rows in range(2, 50):
            progress = TaskProgress(run_id="r1", task_id="t", rows=rows, bytes=rows)
            srv.runtime.hub.publish(progress.topic, progress)  # returns at once: the queue drops its oldest
        assert subscription.dropped == 44  # 48 published, 4 kept
        socket.release.set()
        await asyncio.sleep(0.05)
        pump.cancel()
    assert [m["type"] for m in socket.sent] == ["event", "resync"]
    assert socket.sent[1]["dropped"] == 44 and [r["run_id"] for r in socket.sent[1]["runs"]] == ["r1"]


async def test_a_client_that_stops_reading_is_closed(etl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws, "SEND_TIMEOUT", 0.05)
    async with await _server(etl_home) as srv:
        subscription = srv.runtime.hub.subscribe("run.*", maxsize=4)
        socket = _StuckSocket()
        pump = asyncio.create_task(ws._pump(socket, srv, subscription, None))  # type: ignore[arg-type]
        event = TaskProgress(run_id="r1", task_id="t", rows=1, bytes=1)
        srv.runtime.hub.publish(event.topic, event)
        await asyncio.wait_for(pump, 2)
    assert socket.closed == (1013, "client stopped reading; reconnect to get a fresh snapshot")
