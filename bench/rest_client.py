"""One REST extraction, run by bench/connectors.py in its own process; prints its figures as JSON.

    python bench/rest_client.py URL [--repeat N] [--rate 100/s] [--concurrency 8]
        [--param page] [--size-param per_page] [--records data]

Pages are numbered and the server's X-Total-Count gives the total up front,
so pages are fetched --concurrency at a time. Every id must arrive once.
"""

from __future__ import annotations

import argparse
import json
import time

import aiohttp  # noqa: F401 - imported before the clock starts, as raw_aiohttp.py does
import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.connectors.rest import RestSource, RestSourceSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--repeat", type=int, default=1, help="read the whole collection this many times")
    parser.add_argument("--rate")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--param", default="page")
    parser.add_argument("--size-param", default="per_page")
    parser.add_argument("--records", default="data")
    args = parser.parse_args()
    spec = RestSourceSpec.model_validate(
        {
            "type": "rest",
            "url": args.url,
            "records": args.records or None,
            "concurrency": args.concurrency,
            "rate_limit": args.rate,
            "retry": {"attempts": 20, "backoff_seconds": 0.05, "max_backoff_seconds": 2},
            "pagination": {"type": "page", "page_param": args.param, "size_param": args.size_param, "page_size": 100},
        }
    )
    rows = requests = 0
    distinct_ok = True
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.repeat):
        source = RestSource("bench", spec, batch_rows=131_072)
        ids: list[pa.Array] = []
        read = 0
        for batch, _ in source.read(Partition("all", "all")):
            read += batch.num_rows
            ids.append(batch.column("id"))
        distinct_ok &= pc.count_distinct(pa.chunked_array(ids)).as_py() == read
        rows += read
        requests += -(-read // 100) + source.retries
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        json.dumps(
            {
                "requests": requests,
                "rows": rows,
                "ids_unique": distinct_ok,
                "seconds": round(seconds, 3),
                "requests_per_second": round(requests / seconds, 1),
                # every thread's CPU time: on a shared machine a steadier measure than the wall clock
                "cpu_seconds": round(cpu, 3),
                "requests_per_cpu_second": round(requests / cpu, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
