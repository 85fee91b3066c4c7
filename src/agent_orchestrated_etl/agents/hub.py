"""The Communication Hub: topic pub/sub for events, mailboxes and request/reply for tasks.

``Hub`` is the interface; ``InProcessHub`` is the asyncio backend used by
default. A networked backend (Redis) implements the same four methods.

Delivery rules:
- a subscription has a bounded queue and drops its *oldest* message when
  full, counting the drop, so a slow subscriber (a dashboard) never slows a
  pipeline;
- a mailbox (one per agent) is never lossy: a request waits for room;
- ``request`` fails with ``TimeoutError`` when no reply comes in time.
"""

from __future__ import annotations

import asyncio
import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from agent_orchestrated_etl.model.messages import Message
from agent_orchestrated_etl.redaction import redact_model


@dataclass(eq=False)
class Subscription:
    pattern: str
    queue: asyncio.Queue[Message]
    dropped: int = 0

    async def get(self) -> Message:
        return await self.queue.get()

    def get_nowait(self) -> Message | None:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def offer(self, message: Message) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)


@dataclass(eq=False)
class Envelope:
    """A message in a mailbox; ``reply_to`` is set for requests."""

    message: Message
    reply_to: asyncio.Future[Message] | None = field(default=None, repr=False)


class Hub(ABC):
    @abstractmethod
    def publish(self, topic: str, message: Message) -> None:
        """Deliver to every subscription whose pattern matches the topic; never blocks."""

    @abstractmethod
    def subscribe(self, pattern: str, *, maxsize: int = 1000) -> Subscription:
        """Receive messages on topics matching a glob pattern (``run.*``)."""

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    @abstractmethod
    def mailbox(self, agent: str, *, maxsize: int = 100) -> asyncio.Queue[Envelope]:
        """The agent's own inbox; created on first use."""

    @abstractmethod
    async def request(self, agent: str, message: Message, *, timeout: float) -> Message:
        """Send to an agent's mailbox and wait for its reply."""


class InProcessHub(Hub):
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._mailboxes: dict[str, asyncio.Queue[Envelope]] = {}

    def publish(self, topic: str, message: Message) -> None:
        # The boundary every event crosses to the store, the monitor, /ws and alerts: secrets stop here.
        message = redact_model(message)  # type: ignore[assignment]
        for subscription in self._subscriptions:
            if fnmatch.fnmatchcase(topic, subscription.pattern):
                subscription.offer(message)

    def subscribe(self, pattern: str, *, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(pattern, asyncio.Queue(maxsize))
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def mailbox(self, agent: str, *, maxsize: int = 100) -> asyncio.Queue[Envelope]:
        if agent not in self._mailboxes:
            self._mailboxes[agent] = asyncio.Queue(maxsize)
        return self._mailboxes[agent]

    async def request(self, agent: str, message: Message, *, timeout: float) -> Message:
        if agent not in self._mailboxes:
            raise LookupError(f"no agent named {agent!r} on the hub")
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout):
            await self._mailboxes[agent].put(Envelope(message, reply))
            return await reply

    def queue_depths(self) -> dict[str, int]:
        depths = {f"mailbox:{name}": q.qsize() for name, q in self._mailboxes.items()}
        depths.update({f"subscription:{s.pattern}#{i}": s.queue.qsize() for i, s in enumerate(self._subscriptions)})
        return depths
