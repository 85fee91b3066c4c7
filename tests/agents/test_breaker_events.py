import asyncio
import threading

from agent_orchestrated_etl.circuit_breaker import breakers
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import Runtime


async def test_breaker_state_changes_become_hub_events() -> None:
    breakers.reset()
    async with Runtime(Settings()) as runtime:
        seen = runtime.hub.subscribe("breakers.*")
        breaker = breakers.get("api.example.test", failure_threshold=2, reset_seconds=60)

        def fail_twice() -> None:  # as an HTTP source's worker thread would
            breaker.record_failure("503")
            breaker.record_failure("503")

        thread = threading.Thread(target=fail_twice)
        thread.start()
        thread.join()
        event = await asyncio.wait_for(seen.get(), timeout=2)
        assert (event.kind, event.system, event.previous, event.state) == (
            "breaker_changed",
            "api.example.test",
            "closed",
            "open",
        )
        assert event.consecutive_failures == 2
    breakers.reset()
