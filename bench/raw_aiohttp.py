"""raw_httpx.py on aiohttp: the same pages, 8 at a time, to compare the HTTP clients' ceilings.

aiohttp is not a dependency of agent-etl; run this from a venv that has it:
    python3 -m venv /tmp/aio && /tmp/aio/bin/pip install aiohttp
    /tmp/aio/bin/python bench/raw_aiohttp.py http://127.0.0.1:PORT/items 2000   # against bench/fast_server.js
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, pages: int, concurrency: int = 8) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(page: int) -> int:
            async with gate, client.get(url, params={"page": page, "per_page": 100}) as response:
                return len(json.loads(await response.read())["data"])

        started = time.perf_counter()
        rows = sum(await asyncio.gather(*(one(p) for p in range(1, pages + 1))))
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "requests": pages,
                "rows": rows,
                "seconds": round(seconds, 3),
                "requests_per_second": round(pages / seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
