"""The ceiling for the REST source: aiohttp alone fetching and parsing the same pages, 8 at a time.

aiohttp is agent-etl's HTTP client, so the project's venv runs it:
    python bench/raw_aiohttp.py http://127.0.0.1:PORT/items 2000   # against bench/fast_server.js
``python bench/connectors.py rest-vs-aiohttp`` runs it against the REST source in one run.
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

        started, cpu = time.perf_counter(), time.process_time()
        rows = sum(await asyncio.gather(*(one(p) for p in range(1, pages + 1))))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        json.dumps(
            {
                "requests": pages,
                "rows": rows,
                "seconds": round(seconds, 3),
                "requests_per_second": round(pages / seconds, 1),
                # every thread's CPU time: on a shared machine a steadier measure than the wall clock
                "cpu_seconds": round(cpu, 3),
                "requests_per_cpu_second": round(pages / cpu, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
