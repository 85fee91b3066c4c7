"""One hub subscription shared by every ``/ws`` client, flushed as one frame per interval.

Fifty dashboards must not cost a pipeline fifty times the work. So the server
subscribes once, however many clients there are, and every ``FLUSH_SECONDS``
it turns what arrived into one ``events`` frame: each message is serialised
once, the text is shared by every client with the same filter, and a client
gets one send per interval instead of one per message (a send is a system call
and a turn of the event loop the agents share). Within an interval only the
latest ``task_progress`` of a task and the latest heartbeat of an agent are
kept: they are running totals, so an earlier one says nothing the later one
does not. Every other message (a task's end, a decision, an alert) is kept.

Each client has a bounded outbox of frames. The fan-out never waits for a
client: when an outbox is full its frames are dropped and replaced by a
resync marker, and the client's writer sends a fresh snapshot instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from agent_orchestrated_etl.agents.hub import Hub, Subscription
from agent_orchestrated_etl.model.messages import Heartbeat, Message, RunEvent, TaskProgress

FLUSH_SECONDS = 0.25
# Frames a client may have waiting (OUTBOX_FRAMES * FLUSH_SECONDS of backlog) before it is resynced.
OUTBOX_FRAMES = 64
# The fan-out's own hub queue; it empties every flush, so this only fills if the event loop stalls.
HUB_QUEUE = 100_000

RESYNC = None  # in an outbox: frames were dropped here, send a snapshot instead


@dataclass(eq=False)
class Client:
    """One connection's view: the run it follows (None: everything) and its frames to send."""

    run: str | None
    outbox: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(OUTBOX_FRAMES))
    dropped_frames: int = 0

    def offer(self, frame: str | None) -> None:
        if self.outbox.full():
            self.dropped_frames += self.outbox.qsize()
            while not self.outbox.empty():
                self.outbox.get_nowait()
            frame = RESYNC
        self.outbox.put_nowait(frame)

    def take_queued(self) -> None:
        """Forget what is queued: a snapshot taken now already holds it."""
        while not self.outbox.empty():
            self.outbox.get_nowait()


def coalesce(messages: list[Message]) -> list[Message]:
    """Drop each progress or heartbeat that a later one of the same task or agent supersedes; keep the order."""
    latest: dict[tuple[str, ...], int] = {}
    keys = [_running_total_key(m) for m in messages]
    for i, key in enumerate(keys):
        if key is not None:
            latest[key] = i
    return [m for i, (m, key) in enumerate(zip(messages, keys, strict=True)) if key is None or latest[key] == i]


def _running_total_key(message: Message) -> tuple[str, ...] | None:
    if isinstance(message, TaskProgress):
        return ("progress", message.run_id, message.task_id)
    if isinstance(message, Heartbeat):
        return ("heartbeat", message.agent)
    return None


def frame(encoded: list[str]) -> str:
    return '{"type":"events","events":[' + ",".join(encoded) + "]}"


class Fanout:
    """Subscribes to the hub while at least one client is connected; see the module docstring."""

    def __init__(self, hub: Hub, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.hub = hub
        self.flush_seconds = flush_seconds
        self.clients: set[Client] = set()
        self._subscription: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None

    def add(self, run: str | None) -> Client:
        client = Client(run)
        self.clients.add(client)
        if self._subscription is None:
            self._subscription = self.hub.subscribe("*", maxsize=HUB_QUEUE)
            self._loop = asyncio.create_task(self._flushing(self._subscription), name="ws-fanout")
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self.stop()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        if self._subscription is not None:
            self.hub.unsubscribe(self._subscription)
        self._loop = self._subscription = None

    async def _flushing(self, subscription: Subscription) -> None:
        seen_dropped = 0
        while True:
            batch = [await subscription.get()]
            await asyncio.sleep(self.flush_seconds)
            while (message := subscription.get_nowait()) is not None:
                batch.append(message)
            if subscription.dropped != seen_dropped:
                seen_dropped = subscription.dropped
                for client in self.clients:
                    client.offer(RESYNC)
                continue
            self.deliver(batch)

    def deliver(self, batch: list[Message]) -> None:
        """Hand one frame per filter to every client; never waits."""
        messages = coalesce(batch)
        encoded = [m.model_dump_json() for m in messages]
        frames: dict[str | None, str | None] = {}
        for client in tuple(self.clients):
            if client.run not in frames:
                picked = [
                    text
                    for m, text in zip(messages, encoded, strict=True)
                    if client.run is None or (isinstance(m, RunEvent) and m.run_id == client.run)
                ]
                frames[client.run] = frame(picked) if picked else None
            text = frames[client.run]
            if text is not None:
                client.offer(text)

    async def aclose(self) -> None:
        loop = self._loop
        self.stop()
        if loop is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
