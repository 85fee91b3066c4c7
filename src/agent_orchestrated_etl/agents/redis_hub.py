"""The hub on Redis, for agents in several processes or on several machines (``AGENT_ETL_HUB_URL=redis://...``).

- A mailbox is a stream (``<prefix>:mailbox:<agent>``) read through a consumer
  group named after the agent. A message stays pending until the agent
  acknowledges it (XACK, once it has taken it on), so an agent that restarts
  under the same name is handed its unacknowledged messages again.
- A request carries a reply key and a deadline; the answer is pushed to the
  key (BLPOP on the asking side). A request read after its deadline is
  dropped: the asker has given up and may have placed the task elsewhere.
- Events go to one stream (``<prefix>:events``, trimmed to about
  ``EVENTS_KEPT`` entries). This process's subscribers get its own events at
  once, as in process; a reader task brings every other process's events to
  them. Publishing never waits for Redis: a writer task sends them in order.

Messages travel as JSON and are rebuilt as their own class by ``kind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
import uuid
from typing import Any

from agent_orchestrated_etl.agents.hub import Delivery, Hub, RequestRefused, Subscription
from agent_orchestrated_etl.exceptions import MissingDependencyError
from agent_orchestrated_etl.model.messages import Message

log = logging.getLogger(__name__)

#: About how many events the events stream keeps for late readers (XADD MAXLEN ~).
EVENTS_KEPT = 100_000
#: How long a blocking read waits before it looks again (so that it notices being stopped).
BLOCK_MS = 1000
#: How long each step of closing waits: for the events still to be sent, its readers, its connections.
CLOSE_FLUSH_SECONDS = 10.0
#: How long an answer waits in Redis for an asker that went away.
REPLY_TTL_SECONDS = 60


def _message_types() -> dict[str, type[Message]]:
    found: dict[str, type[Message]] = {}
    pending: list[type[Message]] = [Message]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        kind = cls.model_fields["kind"].default if "kind" in cls.model_fields else None
        # Ours first: a test may define a look-alike of a message under the same kind.
        if isinstance(kind, str) and (kind not in found or cls.__module__.startswith("agent_orchestrated_etl.")):
            found[kind] = cls
    return found


def decode(text: str | bytes) -> Message:
    data = json.loads(text)
    cls = _message_types().get(data.get("kind"))
    if cls is None:
        raise ValueError(f"the hub received a message of unknown kind {data.get('kind')!r}")
    return cls.model_validate(data)


class RedisHub(Hub):
    def __init__(self, url: str, *, prefix: str = "agent-etl") -> None:
        try:
            import redis.asyncio as redis
        except ImportError:
            raise MissingDependencyError("the Redis hub (AGENT_ETL_HUB_URL)", "redis") from None
        # Any: redis-py types every reply as the union of its RESP2 and RESP3 shapes; these are RESP2's.
        self._redis: Any = redis.Redis.from_url(url)
        self.prefix = prefix
        self.origin = uuid.uuid4().hex  # this hub's own events come back from the stream; it skips them
        self._subscriptions: list[Subscription] = []
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._opened: dict[str, bool] = {}  # agent -> whether its pending messages were read yet
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _start(self) -> None:
        if not self._loops:
            self._loops = [
                asyncio.get_running_loop().create_task(self._write_events(), name="redis-hub.writer"),
                asyncio.get_running_loop().create_task(self._read_events(), name="redis-hub.reader"),
            ]

    # events

    def _publish(self, topic: str, message: Message) -> None:
        self._start()
        self._deliver(topic, message)
        self._outbox.put_nowait((topic, message.model_dump_json()))

    def _deliver(self, topic: str, message: Message) -> None:
        for subscription in self._subscriptions:
            if fnmatch.fnmatchcase(topic, subscription.pattern):
                subscription.offer(message)

    def subscribe(self, pattern: str, *, maxsize: int = 1000) -> Subscription:
        self._start()
        subscription = Subscription(pattern, asyncio.Queue(maxsize))
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def _write_events(self) -> None:
        stream = self._key("events")
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 500:
                batch.append(self._outbox.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for topic, text in batch:
                        pipe.xadd(
                            stream,
                            {"topic": topic, "origin": self.origin, "message": text},
                            maxlen=EVENTS_KEPT,
                            approximate=True,
                        )
                    await pipe.execute()
            except Exception:  # the hub carries news, the store keeps the record: an outage must not stop a run
                if self._closing:
                    return
                log.exception("the Redis hub lost %d event(s) it could not send", len(batch))
            finally:
                for _ in batch:
                    self._outbox.task_done()

    async def _read_events(self) -> None:
        stream = self._key("events")
        newest = await self._redis.xrevrange(stream, count=1)
        last = newest[0][0] if newest else b"0-0"
        while True:
            try:
                found = await self._redis.xread({stream: last}, count=1000, block=BLOCK_MS)
            except Exception:
                if self._closing:  # redis-py may turn the cancel of a blocking read into a connection error
                    return
                log.exception("the Redis hub cannot read events; trying again")
                await asyncio.sleep(1)
                continue
            for _, entries in found:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(b"origin", b"").decode() == self.origin:
                        continue
                    try:
                        self._deliver(fields[b"topic"].decode(), decode(fields[b"message"]))
                    except ValueError:
                        log.warning("the Redis hub skipped an event it cannot read", exc_info=True)

    # mailboxes

    async def open_mailbox(self, agent: str) -> None:
        self._start()
        import redis.exceptions

        with contextlib.suppress(redis.exceptions.ResponseError):  # BUSYGROUP: it exists, with what is pending in it
            await self._redis.xgroup_create(self._key("mailbox", agent), agent, id="0", mkstream=True)
        self._opened[agent] = False

    async def _addressed(self, agent: str) -> str:
        key = self._key("mailbox", agent)
        if not await self._redis.exists(key):
            raise LookupError(f"no agent named {agent!r} on the hub")
        return key

    async def send(self, agent: str, message: Message) -> None:
        await self._redis.xadd(await self._addressed(agent), {"message": message.model_dump_json()})

    async def receive(self, agent: str) -> Delivery:
        key = self._key("mailbox", agent)
        while True:
            # First what was handed to this agent before and never acknowledged (it restarted), then new messages.
            again = not self._opened.get(agent, False)
            try:
                found = await self._redis.xreadgroup(
                    agent, agent, {key: "0" if again else ">"}, count=1, block=None if again else BLOCK_MS
                )
            except Exception:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # redis-py turned the agent's stop into an error
                    raise asyncio.CancelledError from None
                raise
            entries = found[0][1] if found else []
            if again and not entries:
                self._opened[agent] = True
                continue
            for entry_id, fields in entries:
                delivery = Delivery(agent, decode(fields[b"message"]), receipt=entry_id.decode())
                if b"reply_to" in fields:
                    if float(fields[b"deadline"]) < time.time():
                        await self.ack(delivery)  # its asker gave up on it
                        continue
                    delivery.reply_to = fields[b"reply_to"].decode()
                return delivery

    async def ack(self, delivery: Delivery) -> None:
        key = self._key("mailbox", delivery.agent)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(key, delivery.agent, delivery.receipt)
            pipe.xdel(key, delivery.receipt)
            await pipe.execute()

    async def reply(self, delivery: Delivery, answer: Message | Exception) -> None:
        if delivery.reply_to is None:
            return
        if isinstance(answer, Exception):
            body = json.dumps({"error": f"{type(answer).__name__}: {answer}"})
        else:
            body = json.dumps({"message": answer.model_dump_json()})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(delivery.reply_to, body)
            pipe.expire(delivery.reply_to, REPLY_TTL_SECONDS)
            await pipe.execute()

    async def request(self, agent: str, message: Message, *, timeout: float) -> Message:
        key = await self._addressed(agent)
        reply_to = self._key("reply", uuid.uuid4().hex)
        fields = {"message": message.model_dump_json(), "reply_to": reply_to, "deadline": repr(time.time() + timeout)}
        await self._redis.xadd(key, fields)
        async with asyncio.timeout(timeout):
            answer = await self._redis.blpop([reply_to], timeout=timeout)
        if answer is None:
            raise TimeoutError(f"{agent} did not answer within {timeout:g}s")
        body = json.loads(answer[1])
        if "error" in body:
            raise RequestRefused(f"{agent} could not handle {message.kind}: {body['error']}")
        return decode(body["message"])

    def queue_depths(self) -> dict[str, int]:
        depths = {"outbox:events": self._outbox.qsize()}
        depths.update({f"subscription:{s.pattern}#{i}": s.queue.qsize() for i, s in enumerate(self._subscriptions)})
        return depths

    async def flush(self) -> None:
        """Wait until every event published so far has been sent to Redis."""
        if self._loops:
            await self._outbox.join()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), CLOSE_FLUSH_SECONDS)
        except TimeoutError:  # Redis went away: the store has the record; closing must not hang on news
            log.warning("the Redis hub closed with %d event(s) it could not send", self._outbox.qsize())
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        # Bounded: a cancelled blocking read or a disconnect must not keep the process from exiting.
        _, stuck = await asyncio.wait(self._loops, timeout=CLOSE_FLUSH_SECONDS) if self._loops else (set(), set())
        if stuck:
            log.warning("the Redis hub's %s did not stop when cancelled", ", ".join(t.get_name() for t in stuck))
        self._loops = []
        try:
            await asyncio.wait_for(self._redis.aclose(), CLOSE_FLUSH_SECONDS)
        except TimeoutError:
            log.warning("the Redis hub's connections did not close in %gs", CLOSE_FLUSH_SECONDS)
