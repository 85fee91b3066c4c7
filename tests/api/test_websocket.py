"""/ws: token check, hello snapshot, every task's final event, and what happens to slow clients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN

from agent_orchestrated_etl.api import fanout
from agent_orchestrated_etl.api import websocket as ws
from agent_orchestrated_etl.api.service import ServeOptions, Server
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.model.messages import Heartbeat, TaskFinished, TaskProgress


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
    spec = PEOPLE_YAML.replace(
        "sources:\n  people: {type: file, path: people.csv}", "sources:\n  people: {type: file, path: 'people*.csv'}"
    )
    for i in range(3):
        (data_dir / f"people{i}.csv").write_text((data_dir / "people.csv").read_text())
    client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH)
    with client.websocket_connect("/ws") as socket:
        socket.send_text(json.dumps({"token": TOKEN}))
        hello = json.loads(socket.receive_text())
        assert hello["type"] == "hello" and hello["runs"] == []
        run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
        kinds, finished = [], set()
        while "run_finished" not in kinds:
            frame = json.loads(socket.receive_text())
            assert frame["type"] == "events"
            for event in frame["events"]:
                if event.get("run_id") != run_id:
                    continue
                kinds.append(event["kind"])
                if event["kind"] == "task_finished":
                    finished.add(event["task_id"])
    assert finished == {f"people[{i}]>people" for i in range(4)}
    assert kinds[0] == "run_started" and kinds.count("destination_committed") == 1
    # A newcomer gets the finished run in its hello, and the backlog.
    with client.websocket_connect(
        f"/ws?run={run_id}", headers=dict(AUTH)
    ) as socket:  # a copy: the test client adds its handshake headers to the dict it is given
        hello = json.loads(socket.receive_text())
    (run,) = hello["runs"]
    assert (run["run_id"], run["status"], run["rows_written"], run["rows_quarantined"]) == (
        run_id,
        "succeeded",
        360,
        40,
    )
    assert hello["backlog"][-1]["kind"] == "run_finished"


class _StuckSocket:
    """A client that stops reading: its first send blocks until released."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.release = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))
        if len(self.sent) == 1:
            await self.release.wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def _server(home: Path) -> Server:
    return Server(ServeOptions(settings=Settings(), token=TOKEN, base_dir=home))


def _progress(run: str, task: str, rows: int) -> TaskProgress:
    return TaskProgress(run_id=run, task_id=task, rows=rows, bytes=rows)


async def test_a_client_that_falls_behind_is_resynced_and_never_blocks_publishing(etl_home: Path) -> None:
    async with await _server(etl_home) as srv:
        client = srv.fanout.add(None)
        socket = _StuckSocket()
        writer = asyncio.create_task(ws._write(socket, srv, client))  # type: ignore[arg-type]

        def emit(rows: int) -> None:
            # Published so the monitor's snapshot knows the run, and delivered as a frame of its own at once.
            event = _progress("r1", "t", rows)
            srv.runtime.hub.publish(event.topic, event)
            srv.fanout.deliver([event])

        emit(1)
        await asyncio.sleep(0.01)  # the writer is now stuck sending that frame
        for rows in range(2, fanout.OUTBOX_FRAMES + 12):
            emit(rows)  # returns at once: the outbox overflows into a resync
        assert client.dropped_frames == fanout.OUTBOX_FRAMES
        socket.release.set()
        await asyncio.sleep(0.05)
        writer.cancel()
    assert [m["type"] for m in socket.sent[:2]] == ["events", "resync"]
    assert socket.sent[1]["dropped_frames"] == fanout.OUTBOX_FRAMES and [
        r["run_id"] for r in socket.sent[1]["runs"]
    ] == ["r1"]
    # Frames after the resync are newer than its snapshot; the ones queued before it were dropped.
    assert all(m["type"] == "events" and m["events"][0]["rows"] > fanout.OUTBOX_FRAMES for m in socket.sent[2:])


async def test_a_client_that_stops_reading_is_closed(etl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws, "SEND_TIMEOUT", 0.05)
    async with await _server(etl_home) as srv:
        client = srv.fanout.add(None)
        socket = _StuckSocket()
        writer = asyncio.create_task(ws._write(socket, srv, client))  # type: ignore[arg-type]
        srv.fanout.deliver([_progress("r1", "t", 1)])
        await asyncio.wait_for(writer, 2)
    assert socket.closed == (1013, "client stopped reading; reconnect to get a fresh snapshot")


async def _frame_about_runs(client: fanout.Client) -> dict:
    """The next frame with run events in it (the server's own agents send heartbeats too)."""
    while True:
        text = await asyncio.wait_for(client.outbox.get(), 5)
        assert text is not None
        frame = json.loads(text)
        if any("run_id" in e for e in frame["events"]):
            return frame


async def test_one_frame_per_flush_keeps_every_final_event_and_the_latest_progress(etl_home: Path) -> None:
    async with await _server(etl_home) as srv:
        hub = srv.runtime.hub
        subscriptions = len(hub.queue_depths())
        everything, one_run = srv.fanout.add(None), srv.fanout.add("r1")
        assert len(hub.queue_depths()) == subscriptions + 1  # one hub subscription for every client
        beat = {"role": "etl", "capabilities": [], "capacity": 2}
        batch: list[TaskProgress | TaskFinished | Heartbeat] = [
            _progress("r1", "a", 10),
            _progress("r1", "b", 5),
            _progress("r2", "a", 7),
            _progress("r1", "a", 20),
            TaskFinished(
                run_id="r1", task_id="a", rows_read=30, rows_written=30, rows_quarantined=0, bytes=300, seconds=1.0
            ),
            _progress("r1", "a", 30),  # a late progress of a finished task is still the latest of that task
            Heartbeat(agent="probe", load=1, **beat),
            Heartbeat(agent="probe", load=0, **beat),
        ]
        for message in batch:  # at once, so one flush takes them all
            hub.publish(message.topic, message)
        frames = [await _frame_about_runs(c) for c in (everything, one_run)]
        srv.fanout.remove(everything)
        srv.fanout.remove(one_run)
        assert len(hub.queue_depths()) == subscriptions  # nobody watches: no subscription, no cost
    seen = [
        (e["kind"], e.get("run_id"), e.get("task_id") or e["agent"], e.get("rows", e.get("load")))
        for e in frames[0]["events"]
        if e.get("agent") in (None, "probe")
    ]
    assert seen == [
        ("task_progress", "r1", "b", 5),
        ("task_progress", "r2", "a", 7),
        ("task_finished", "r1", "a", None),
        ("task_progress", "r1", "a", 30),
        ("heartbeat", None, "probe", 0),
    ]
    assert [(e["kind"], e["task_id"]) for e in frames[1]["events"]] == [
        ("task_progress", "b"),
        ("task_finished", "a"),
        ("task_progress", "a"),
    ]
