import asyncio

import pytest

from agent_orchestrated_etl.agents.base import Agent
from agent_orchestrated_etl.agents.hub import InProcessHub
from agent_orchestrated_etl.model.messages import Decision, Message, TaskAccepted


def decision(run_id: str, n: int) -> Decision:
    return Decision(run_id=run_id, subject=f"s{n}", choice="c", reason="r")


async def test_publish_reaches_matching_subscriptions_only() -> None:
    hub = InProcessHub()
    runs = hub.subscribe("run.*")
    one = hub.subscribe("run.a")
    other = hub.subscribe("agents.*")
    hub.publish("run.a", decision("a", 1))
    hub.publish("run.b", decision("b", 2))
    assert [m.subject for m in (runs.get_nowait(), runs.get_nowait())] == ["s1", "s2"]
    assert one.get_nowait().subject == "s1"
    assert one.get_nowait() is None
    assert other.get_nowait() is None


async def test_full_subscription_drops_oldest_and_never_blocks_the_publisher() -> None:
    hub = InProcessHub()
    slow = hub.subscribe("run.*", maxsize=3)
    for n in range(10):
        hub.publish("run.x", decision("x", n))
    assert slow.dropped == 7
    assert [slow.get_nowait().subject for _ in range(3)] == ["s7", "s8", "s9"]


async def test_unsubscribed_stops_receiving() -> None:
    hub = InProcessHub()
    sub = hub.subscribe("run.*")
    hub.unsubscribe(sub)
    hub.publish("run.x", decision("x", 1))
    assert sub.get_nowait() is None


class Echo(Agent):
    role = "echo"

    def __init__(self, hub: InProcessHub, delay: float = 0.0) -> None:
        super().__init__("echo", hub, heartbeat_seconds=60)
        self.delay = delay

    async def handle(self, message: Message) -> Message | None:
        await asyncio.sleep(self.delay)
        if message.kind == "decision":
            raise ValueError("cannot handle decisions")
        return TaskAccepted(sender=self.name, task_id=message.id)


async def test_request_gets_the_reply_of_the_addressed_agent() -> None:
    hub = InProcessHub()
    agent = Echo(hub)
    await agent.start()
    try:
        request = TaskAccepted(task_id="ping")
        reply = await hub.request("echo", request, timeout=1)
        assert isinstance(reply, TaskAccepted)
        assert reply.task_id == request.id
        assert reply.sender == "echo"
    finally:
        await agent.stop()


async def test_request_times_out_when_no_reply_comes() -> None:
    hub = InProcessHub()
    agent = Echo(hub, delay=5)
    await agent.start()
    try:
        with pytest.raises(TimeoutError):
            await hub.request("echo", TaskAccepted(task_id="slow"), timeout=0.05)
    finally:
        await agent.stop()


async def test_request_carries_the_handlers_error_back() -> None:
    hub = InProcessHub()
    agent = Echo(hub)
    await agent.start()
    try:
        with pytest.raises(ValueError, match="cannot handle decisions"):
            await hub.request("echo", decision("x", 1), timeout=1)
    finally:
        await agent.stop()


async def test_request_to_an_unknown_agent_fails_at_once() -> None:
    with pytest.raises(LookupError, match="nobody"):
        await InProcessHub().request("nobody", TaskAccepted(task_id="t"), timeout=1)


async def test_agents_announce_themselves_with_heartbeats() -> None:
    hub = InProcessHub()
    beats = hub.subscribe("agents.heartbeat")
    agent = Echo(hub)
    agent.heartbeat_seconds = 0.01
    await agent.start()
    await asyncio.sleep(0.05)
    await agent.stop()
    seen = []
    while (beat := beats.get_nowait()) is not None:
        seen.append(beat)
    assert len(seen) >= 2
    assert {b.agent for b in seen} == {"echo"}
