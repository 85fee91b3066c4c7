"""The Communication Hub: topic pub/sub for events, mailboxes and request/reply for tasks.

``Hub`` is the interface, in terms of messages only (no queue or future
crosses it), so that a networked backend can implement it: ``RedisHub``
(agents/redis_hub.py) does, for agents in other processes. ``InProcessHub``
is the asyncio backend used by default.

Delivery rules:
- a subscription has a bounded queue and drops its *oldest* message when
  full, counting the drop, so a slow subscriber (a dashboard) never slows a
  pipeline;
- a mailbox (one per agent) is never lossy: ``send`` waits for room, and a
  message received stays the agent's until it is acknowledged with ``ack``
  (a networked backend hands an unacknowledged one out again after a restart);
- ``request`` fails with ``TimeoutError`` when no reply comes in time, and with
  the handler's error (``RequestRefused`` across processes) when the agent
  could not handle the message.
"""

from __future__ import annotations

import asyncio
import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from agent_orchestrated_etl.model.messages import Message
from agent_orchestrated_etl.redaction import redact_model


class RequestRefused(RuntimeError):
    """The addressed agent received a request but could not handle it (its error, as text)."""


@dataclass(eq=False)
class Subscription:
    """A subscriber's local, bounded buffer of the events matching its pattern."""

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
class Delivery:
    """A message taken from an agent's mailbox, until the agent acknowledges it.

    ``receipt`` and ``reply_to`` belong to the backend: what ``ack`` and
    ``reply`` need (a stream entry id and a reply key, or a local future).
    """

    agent: str
    message: Message
    receipt: str = ""
    reply_to: Any = field(default=None, repr=False)

    @property
    def is_request(self) -> bool:
        return self.reply_to is not None


class Hub(ABC):
    def publish(self, topic: str, message: Message) -> None:
        """Deliver to every subscription whose pattern matches the topic; never blocks."""
        # The boundary every event crosses to the store, the monitor, /ws and alerts: secrets stop here.
        self._publish(topic, redact_model(message))

    @abstractmethod
    def _publish(self, topic: str, message: Message) -> None: ...

    @abstractmethod
    def subscribe(self, pattern: str, *, maxsize: int = 1000) -> Subscription:
        """Receive messages on topics matching a glob pattern (``run.*``)."""

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    @abstractmethod
    async def open_mailbox(self, agent: str) -> None:
        """Make ``agent`` addressable; messages sent from now on wait for it."""

    @abstractmethod
    async def send(self, agent: str, message: Message) -> None:
        """Put a message in an agent's mailbox, expecting no reply; raises LookupError for an unknown agent."""

    @abstractmethod
    async def receive(self, agent: str) -> Delivery:
        """The next message in the agent's own mailbox, waiting for one."""

    @abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """The agent has taken the message on: it is not handed out again."""

    @abstractmethod
    async def reply(self, delivery: Delivery, answer: Message | Exception) -> None:
        """Answer a request (a reply message, or the error that kept the agent from handling it)."""

    @abstractmethod
    async def request(self, agent: str, message: Message, *, timeout: float) -> Message:
        """Send to an agent's mailbox and wait for its reply."""

    @abstractmethod
    def queue_depths(self) -> dict[str, int]:
        """Messages waiting, by queue: ``mailbox:<agent>`` and ``subscription:<pattern>#<n>``."""

    async def close(self) -> None:  # noqa: B027 - the in-process hub holds no connection
        """Release the backend's connections."""


class InProcessHub(Hub):
    def __init__(self, *, mailbox_size: int = 100) -> None:
        self._subscriptions: list[Subscription] = []
        self._mailboxes: dict[str, asyncio.Queue[Delivery]] = {}
        self._mailbox_size = mailbox_size

    def _publish(self, topic: str, message: Message) -> None:
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

    async def open_mailbox(self, agent: str) -> None:
        self._mailbox(agent)

    def _mailbox(self, agent: str) -> asyncio.Queue[Delivery]:
        if agent not in self._mailboxes:
            self._mailboxes[agent] = asyncio.Queue(self._mailbox_size)
        return self._mailboxes[agent]

    def _addressed(self, agent: str) -> asyncio.Queue[Delivery]:
        if agent not in self._mailboxes:
            raise LookupError(f"no agent named {agent!r} on the hub")
        return self._mailboxes[agent]

    async def send(self, agent: str, message: Message) -> None:
        await self._addressed(agent).put(Delivery(agent, message))

    async def receive(self, agent: str) -> Delivery:
        return await self._mailbox(agent).get()

    async def ack(self, delivery: Delivery) -> None:
        """Nothing to do: a message in this process is handed out once."""

    async def reply(self, delivery: Delivery, answer: Message | Exception) -> None:
        future: asyncio.Future[Message] = delivery.reply_to
        if future is None or future.done():
            return
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    async def request(self, agent: str, message: Message, *, timeout: float) -> Message:
        mailbox = self._addressed(agent)
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout):
            await mailbox.put(Delivery(agent, message, reply_to=reply))
            return await reply

    def queue_depths(self) -> dict[str, int]:
        depths = {f"mailbox:{name}": q.qsize() for name, q in self._mailboxes.items()}
        depths.update({f"subscription:{s.pattern}#{i}": s.queue.qsize() for i, s in enumerate(self._subscriptions)})
        return depths
