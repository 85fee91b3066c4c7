"""The ceiling for the REST benchmark: httpx alone fetching and parsing the same pages, 8 at a time."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def main(url: str, pages: int, concurrency: int = 8) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(page: int) -> int:
            async with gate:
                response = await client.get(url, params={"page": page, "per_page": 100})
                return len(response.json()["data"])

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
