"""An ETL agent in a process of its own, talking to the orchestrator only through a networked hub.

    python -m agent_orchestrated_etl.agents.worker --hub redis://127.0.0.1:6379/0 --name etl-remote-1
    agent-etl worker --hub redis://127.0.0.1:6379/0

It opens each run it is given from the assignment's spec (resolving the
spec's ``${env:}`` references from its own environment), stages into the
destinations, and reports back by events; the orchestrator commits. It stops
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket

from agent_orchestrated_etl.agents.etl_agent import ETLAgent
from agent_orchestrated_etl.agents.redis_hub import RedisHub
from agent_orchestrated_etl.agents.tools import default_registry
from agent_orchestrated_etl.config import load_settings


async def serve(hub_url: str, *, name: str, capacity: int, prefix: str | None = None) -> None:
    """Run one ETL agent on the hub at ``hub_url`` until the process is asked to stop."""
    settings = load_settings()
    hub = RedisHub(hub_url, prefix=prefix or settings.hub_prefix)
    agent = ETLAgent(name, hub, default_registry(), capacity=capacity, settings=settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await agent.start()
    try:
        await stopping.wait()
    finally:
        await agent.stop()
        await hub.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agent-etl worker", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hub", default=os.environ.get("AGENT_ETL_HUB_URL"), help="the hub's Redis URL (AGENT_ETL_HUB_URL)"
    )
    parser.add_argument(
        "--name", default=f"etl-{socket.gethostname()}-{os.getpid()}", help="the agent's name on the hub"
    )
    parser.add_argument("--capacity", type=int, default=2, help="how many tasks it runs at once")
    parser.add_argument("--prefix", default=None, help="the hub's key prefix (AGENT_ETL_HUB_PREFIX)")
    args = parser.parse_args(argv)
    if not args.hub:
        parser.error("a worker needs a networked hub: give --hub redis://host:6379/0 or set AGENT_ETL_HUB_URL")
    asyncio.run(serve(args.hub, name=args.name, capacity=args.capacity, prefix=args.prefix))


if __name__ == "__main__":
    main()
