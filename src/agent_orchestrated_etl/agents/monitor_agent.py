"""The monitor agent: folds every hub message into live state and hands it to its watchers.

It keeps the live state of runs (``runs``), the agents it hears heartbeats
from (``agents``), a short backlog of recent messages for newcomers (a
dashboard that just connected), and a sample of this process's CPU and RSS
(unless ``sample_resources`` is off: MONITORING_ENABLED=false).
Watchers (metrics, SLAs, resource alerts under ``agent-etl serve``) see
every message as it is folded and get a tick every ``tick_seconds``, so
time-based rules (a run over its max duration, a stale pipeline) fire
without an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psutil

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.model.messages import Heartbeat, Message, RunEvent
from agent_orchestrated_etl.monitoring.live import RunState

log = logging.getLogger(__name__)

Listener = Callable[[RunState, RunEvent], None]

# A dashboard that connects gets this many recent messages; the run snapshots carry the rest.
BACKLOG = 200
# Finished runs stay in memory for the dashboard and RunResult; older ones are in the store.
KEEP_FINISHED = 200


class Watcher(Protocol):
    def observe(self, message: Message, state: RunState | None) -> None:
        """Called for every message, after it was folded into ``state`` (for run events)."""

    def tick(self, monitor: MonitorAgent) -> None:
        """Called every ``tick_seconds`` for rules that depend on time."""


@dataclass
class AgentStatus:
    name: str
    role: str
    capabilities: list[str]
    load: int
    capacity: int
    last_seen: float = field(default_factory=time.monotonic)
    pid: int = field(default_factory=os.getpid)

    def to_dict(self, process: ProcessSample | None, *, heartbeat_seconds: float) -> dict[str, Any]:
        age = time.monotonic() - self.last_seen
        # Agents of this process share its CPU and memory: in-process they are one OS process.
        status = "lost" if age > 5 * heartbeat_seconds else ("busy" if self.load else "idle")
        return {
            "name": self.name,
            "role": self.role,
            "capabilities": self.capabilities,
            "status": status,
            "load": self.load,
            "capacity": self.capacity,
            "heartbeat_age_seconds": round(age, 2),
            "pid": self.pid,
            "cpu_percent": process.cpu_percent if process else None,
            "rss_bytes": process.rss_bytes if process else None,
        }


@dataclass
class ProcessSample:
    cpu_percent: float = 0.0
    rss_bytes: int = 0


class MonitorAgent(Agent):
    role = "monitor"

    def __init__(self, name: str, hub: Hub, *, tick_seconds: float = 1.0, sample_resources: bool = True) -> None:
        super().__init__(name, hub, capabilities=frozenset({"monitor"}))
        self.runs: dict[str, RunState] = {}
        self.agents: dict[str, AgentStatus] = {}
        self.listeners: list[Listener] = []
        self.watchers: list[Watcher] = []
        self.recent: deque[Message] = deque(maxlen=BACKLOG)
        self.process: ProcessSample | None = None  # until the first sample, and for good when sampling is off
        self.sample_resources = sample_resources
        self.tick_seconds = tick_seconds
        # Monitoring must see every task's end, so this queue is deep; progress and heartbeats are the chatter.
        self._events = hub.subscribe("*", maxsize=100_000)
        self._psutil = psutil.Process()
        self._finished: deque[str] = deque()
        self._watch_loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await super().start()
        self._sample()
        self._watch_loops = [
            asyncio.create_task(self._follow(), name=f"{self.name}.events"),
            asyncio.create_task(self._ticks(), name=f"{self.name}.ticks"),
        ]

    async def stop(self) -> None:
        await self.drain()
        for loop in self._watch_loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self.hub.unsubscribe(self._events)
        await super().stop()

    async def drain(self) -> None:
        """Fold every message already published, so the state is complete."""
        while (message := self._events.get_nowait()) is not None:
            self._fold(message)

    def snapshot(self, *, active_only: bool = False) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [s.to_dict(now) for s in self.runs.values() if not (active_only and s.finished)]

    def agent_statuses(self) -> list[dict[str, Any]]:
        return [
            a.to_dict(self.process, heartbeat_seconds=self.heartbeat_seconds)
            for a in sorted(self.agents.values(), key=lambda a: a.name)
        ]

    async def _follow(self) -> None:
        while True:
            self._fold(await self._events.get())

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            self._sample()
            for watcher in self.watchers:
                try:
                    watcher.tick(self)
                except Exception:  # a broken rule must not stop monitoring
                    log.exception("monitor watcher %s failed on tick", type(watcher).__name__)

    def _sample(self) -> None:
        if not self.sample_resources:
            return
        with self._psutil.oneshot():
            self.process = ProcessSample(self._psutil.cpu_percent(None), self._psutil.memory_info().rss)

    def _fold(self, message: Message) -> None:
        state: RunState | None = None
        if isinstance(message, Heartbeat):
            self.agents[message.agent] = AgentStatus(
                message.agent, message.role, message.capabilities, message.load, message.capacity
            )
        else:
            self.recent.append(message)
        if isinstance(message, RunEvent):
            state = self.runs.setdefault(message.run_id, RunState(message.run_id))
            state.apply(message)
            for listener in self.listeners:
                listener(state, message)
            if message.kind == "run_finished":
                self._forget_old(message.run_id)
        for watcher in self.watchers:
            try:
                watcher.observe(message, state)
            except Exception:
                log.exception("monitor watcher %s failed on %s", type(watcher).__name__, message.kind)

    def _forget_old(self, run_id: str) -> None:
        self._finished.append(run_id)
        while len(self._finished) > KEEP_FINISHED:
            self.runs.pop(self._finished.popleft(), None)

    async def handle(self, message: Message) -> Message | None:
        return None
