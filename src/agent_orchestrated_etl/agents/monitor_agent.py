"""The monitor agent: subscribes to every run's events and keeps their live state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.agents.messages import Message, RunEvent
from agent_orchestrated_etl.monitoring.live import RunState

Listener = Callable[[RunState, RunEvent], None]


class MonitorAgent(Agent):
    role = "monitor"

    def __init__(self, name: str, hub: Hub) -> None:
        super().__init__(name, hub, capabilities=frozenset({"monitor"}))
        self.runs: dict[str, RunState] = {}
        self.listeners: list[Listener] = []
        # Monitoring must see every task's end, so this queue is deep; progress is the only chatter.
        self._events = hub.subscribe("run.*", maxsize=100_000)
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._watch = asyncio.create_task(self._follow(), name=f"{self.name}.events")

    async def stop(self) -> None:
        await self.drain()
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self.hub.unsubscribe(self._events)
        await super().stop()

    async def drain(self) -> None:
        """Fold every event already published, so the state is complete."""
        while (event := self._events.get_nowait()) is not None:
            self._fold(event)

    async def _follow(self) -> None:
        while True:
            self._fold(await self._events.get())

    def _fold(self, event: Message) -> None:
        if not isinstance(event, RunEvent):
            return
        state = self.runs.setdefault(event.run_id, RunState(event.run_id))
        state.apply(event)
        for listener in self.listeners:
            listener(state, event)

    async def handle(self, message: Message) -> Message | None:
        return None
