"""What the orchestrator says and keeps: its events and decisions on the hub, and each run's record in the store."""

from __future__ import annotations

import asyncio

from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.agents.memory import run_memory
from agent_orchestrated_etl.model.messages import Decision, RunEvent, RunFinished
from agent_orchestrated_etl.store.records import RunStore


class Voice:
    """Publishes a run's events as one sender; every choice is a Decision event, kept in the run record."""

    def __init__(self, hub: Hub, sender: str) -> None:
        self.hub = hub
        self.sender = sender

    def publish(self, event: RunEvent) -> None:
        self.hub.publish(event.topic, event)

    def decide(self, run_id: str, subject: str, choice: str, reason: str) -> None:
        self.publish(Decision(sender=self.sender, run_id=run_id, subject=subject, choice=choice, reason=reason))


class Recording:
    """Stores one run's events in order, up to and including its RunFinished."""

    def __init__(self, hub: Hub, store: RunStore, run_id: str) -> None:
        self.hub = hub
        self.store = store
        self.events = hub.subscribe(f"run.{run_id}", maxsize=1_000_000)
        self.memory = run_memory(store)
        self.task = asyncio.create_task(self._record())

    async def _record(self) -> None:
        while True:
            event = await self.events.get()
            if isinstance(event, RunEvent):
                await asyncio.to_thread(self._keep, event)
            if isinstance(event, RunFinished):
                return

    def _keep(self, event: RunEvent) -> None:
        self.store.record(event)
        if self.memory is not None:  # after the record: the run's own record comes first
            self.memory.observe(event)

    async def finish(self) -> None:
        try:
            # Shielded: a cancelled run must still leave its whole record.
            await asyncio.shield(self.task)
        finally:
            self.hub.unsubscribe(self.events)
