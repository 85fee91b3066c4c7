"""The Redis hub against the real server: two hubs on one prefix stand for two processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import RequestRefused
from agent_orchestrated_etl.agents.redis_hub import RedisHub
from agent_orchestrated_etl.model.messages import Decision, Message, TaskAccepted, TaskFinished

pytestmark = pytest.mark.redis


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    import redis.asyncio as redis

    name = f"test-hub-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{name}:*", count=10_000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def hubs(redis_url: str, prefix: str) -> AsyncIterator[tuple[RedisHub, RedisHub]]:
    here, there = RedisHub(redis_url, prefix=prefix), RedisHub(redis_url, prefix=prefix)
    yield here, there
    await here.close()
    await there.close()


class Echo(Agent):
    role = "echo"

    def __init__(self, hub: RedisHub) -> None:
        super().__init__("echo", hub, heartbeat_seconds=60)
        self.seen: list[Message] = []

    async def handle(self, message: Message) -> Message | None:
        self.seen.append(message)
        if message.kind == "decision":
            raise ValueError("cannot handle decisions")
        return TaskAccepted(sender=self.name, task_id=message.id)


async def next_of(subscription, kind: str, timeout: float = 5.0) -> Message:
    async with asyncio.timeout(timeout):
        while True:
            message = await subscription.get()
            if message.kind == kind:
                return message


async def test_an_event_reaches_the_other_process_as_its_own_class(hubs: tuple[RedisHub, RedisHub]) -> None:
    here, there = hubs
    runs = there.subscribe("run.*")
    other = there.subscribe("agents.*")
    await asyncio.sleep(0.2)  # the reader has started from the stream's end
    event = TaskFinished(
        sender="etl-1",
        run_id="r1",
        task_id="t1",
        rows_read=3,
        rows_written=3,
        rows_quarantined=0,
        bytes=9,
        seconds=0.5,
        state={"max": 3},
    )
    here.publish(event.topic, event)
    got = await next_of(runs, "task_finished")
    assert isinstance(got, TaskFinished)
    assert got == event
    assert other.get_nowait() is None


async def test_own_events_arrive_once_and_in_order(hubs: tuple[RedisHub, RedisHub]) -> None:
    here, _ = hubs
    sub = here.subscribe("run.x")
    for n in range(5):
        here.publish("run.x", Decision(run_id="x", subject=f"s{n}", choice="c", reason="r"))
    await here.flush()
    await asyncio.sleep(0.3)  # had the reader not skipped them, they would have come back by now
    seen = []
    while (message := sub.get_nowait()) is not None:
        seen.append(message.subject)
    assert seen == ["s0", "s1", "s2", "s3", "s4"]


async def test_request_gets_the_reply_of_an_agent_in_the_other_process(hubs: tuple[RedisHub, RedisHub]) -> None:
    here, there = hubs
    agent = Echo(there)
    await agent.start()
    try:
        request = TaskAccepted(task_id="ping")
        reply = await here.request("echo", request, timeout=5)
        assert isinstance(reply, TaskAccepted)
        assert (reply.task_id, reply.sender) == (request.id, "echo")
    finally:
        await agent.stop()


async def test_request_carries_the_handlers_error_back(hubs: tuple[RedisHub, RedisHub]) -> None:
    here, there = hubs
    agent = Echo(there)
    await agent.start()
    try:
        with pytest.raises(RequestRefused, match="ValueError: cannot handle decisions"):
            await here.request("echo", Decision(run_id="x", subject="s", choice="c", reason="r"), timeout=5)
    finally:
        await agent.stop()


async def test_request_to_an_unknown_agent_fails_at_once(hubs: tuple[RedisHub, RedisHub]) -> None:
    here, _ = hubs
    with pytest.raises(LookupError, match="nobody"):
        await here.request("nobody", TaskAccepted(task_id="t"), timeout=5)


async def test_a_request_nobody_answers_times_out_and_is_dropped_when_read_late(
    hubs: tuple[RedisHub, RedisHub],
) -> None:
    here, there = hubs
    await there.open_mailbox("echo")  # addressable, but no agent reads it yet
    with pytest.raises(TimeoutError):
        await here.request("echo", TaskAccepted(task_id="late"), timeout=0.2)
    await here.send("echo", TaskAccepted(task_id="plain"))
    agent = Echo(there)
    await agent.start()
    try:
        async with asyncio.timeout(5):
            while not agent.seen:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        # The asker gave up on the request (it may have placed the task elsewhere): only the plain message is handled.
        assert [m.task_id for m in agent.seen] == ["plain"]
    finally:
        await agent.stop()


async def test_a_message_not_acknowledged_is_handed_out_again_after_a_restart(redis_url: str, prefix: str) -> None:
    sender = RedisHub(redis_url, prefix=prefix)
    first = RedisHub(redis_url, prefix=prefix)
    try:
        await first.open_mailbox("etl-1")
        await sender.send("etl-1", TaskAccepted(task_id="a"))
        await sender.send("etl-1", TaskAccepted(task_id="b"))
        taken = await first.receive("etl-1")
        await first.ack(taken)
        lost = await first.receive("etl-1")  # the agent dies before it acknowledges this one
        assert (taken.message.task_id, lost.message.task_id) == ("a", "b")
    finally:
        await first.close()
    again = RedisHub(redis_url, prefix=prefix)
    try:
        await again.open_mailbox("etl-1")
        await sender.send("etl-1", TaskAccepted(task_id="c"))
        redelivered = await asyncio.wait_for(again.receive("etl-1"), 5)
        assert redelivered.message.task_id == "b"
        await again.ack(redelivered)
        assert (await asyncio.wait_for(again.receive("etl-1"), 5)).message.task_id == "c"
    finally:
        await again.close()
        await sender.close()


async def test_a_slow_subscriber_drops_its_oldest_and_never_blocks_the_publisher(
    hubs: tuple[RedisHub, RedisHub],
) -> None:
    here, there = hubs
    slow = there.subscribe("run.*", maxsize=3)
    await asyncio.sleep(0.2)
    for n in range(10):
        here.publish("run.x", Decision(run_id="x", subject=f"s{n}", choice="c", reason="r"))
    await here.flush()
    async with asyncio.timeout(5):
        while slow.dropped < 7:
            await asyncio.sleep(0.02)
    assert [slow.get_nowait().subject for _ in range(3)] == ["s7", "s8", "s9"]


async def test_closing_stops_its_blocked_reader_at_once(redis_url: str, prefix: str) -> None:
    # redis-py may turn the cancel of a blocking XREAD into a connection error, which the reader took for an
    # outage, so closing waited for ever. Seen in about one run of three of this file's first test; this
    # test checks the bound, it does not reproduce that race reliably.
    for _ in range(5):
        hub = RedisHub(redis_url, prefix=prefix)
        hub.subscribe("run.*")
        await asyncio.sleep(0.3)  # blocked in XREAD now
        began = time.monotonic()
        await hub.close()
        assert time.monotonic() - began < 3
