"""An agent is a concurrent actor: a mailbox on the hub, a lifecycle and a heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.model.messages import Heartbeat, Message

log = logging.getLogger(__name__)


class Agent(ABC):
    role: ClassVar[str]

    def __init__(
        self,
        name: str,
        hub: Hub,
        *,
        capabilities: frozenset[str] = frozenset(),
        capacity: int = 1,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self.hub = hub
        self.capabilities = capabilities
        self.capacity = capacity
        self.heartbeat_seconds = heartbeat_seconds
        self._loops: list[asyncio.Task[None]] = []

    @property
    def load(self) -> int:
        """Work in hand; the orchestrator prefers the least loaded agent."""
        return 0

    async def start(self) -> None:
        await self.hub.open_mailbox(self.name)
        self._loops = [
            asyncio.create_task(self._receive(), name=f"{self.name}.mailbox"),
            asyncio.create_task(self._beat(), name=f"{self.name}.heartbeat"),
        ]
        self.heartbeat()

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []

    def heartbeat(self) -> None:
        beat = Heartbeat(
            sender=self.name,
            agent=self.name,
            role=self.role,
            capabilities=sorted(self.capabilities),
            load=self.load,
            capacity=self.capacity,
        )
        self.hub.publish(beat.topic, beat)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            self.heartbeat()

    async def _receive(self) -> None:
        while True:
            delivery = await self.hub.receive(self.name)
            try:
                reply = await self.handle(delivery.message)
            except Exception as exc:  # one bad message must not kill the actor
                log.exception("%s failed to handle %s", self.name, delivery.message.kind)
                answer: Message | Exception = exc
            else:
                answer = reply or RuntimeError(f"{self.name} sent no reply to {delivery.message.kind}")
            # Acknowledged once handled, taken on or refused: a message that fails every time must not come back.
            await self.hub.ack(delivery)
            if delivery.is_request:
                await self.hub.reply(delivery, answer)

    @abstractmethod
    async def handle(self, message: Message) -> Message | None:
        """React to a message from the mailbox; return the reply to a request."""
