"""Recall latency of agent memory with the embedded default (hashed embedding, exact cosine in numpy).

    python bench/memory_recall.py [--sizes 10000 100000] [--queries 300]

For each size: a fresh SQLite store in a temporary folder is filled with that
many synthetic episodes (failures and run summaries over 200 systems and 40
error classes, each text different), the index is loaded once (timed: the
first recall of a process pays it), then ``--queries`` recalls of k=5 are
timed one by one, end to end (embedding the query, scoring every vector,
reading the five episodes back from the store). Prints p50/p95/max per size,
wall clock and this process's CPU time (on a shared machine the wall clock
includes waiting for a core), and writes them to
bench/results/memory_recall-<time>.json with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from agent_orchestrated_etl.agents.memory import Memory, signature_of  # noqa: E402
from agent_orchestrated_etl.store.memory import Episode, EpisodeStore  # noqa: E402
from agent_orchestrated_etl.store.records import RunStore  # noqa: E402

SYSTEMS = [f"{a}_{b}" for a in ("orders", "billing", "crm", "events", "ledger") for b in range(40)]
ERRORS = [
    f"{a}{b}"
    for a in ("Timeout", "Server", "Auth", "Schema", "Parse", "Connection", "Quota", "Disk")
    for b in ("Error", "Exceeded", "Refused", "Drift", "Failure")
]
VERBS = ["reading page", "writing batch", "merging partition", "listing files in", "fetching token for"]


def episodes(n: int, rng: random.Random) -> list[Episode]:
    now = datetime.now(UTC)
    made = []
    for i in range(n):
        system = rng.choice(SYSTEMS)
        at = now - timedelta(minutes=n - i)
        if rng.random() < 0.7:
            error = rng.choice(ERRORS)
            message = (
                f"{error} while {rng.choice(VERBS)} {rng.randint(1, 999)} of {system} after {rng.random() * 30:.1f}s"
            )
            signature = signature_of(error, message, system)
            text = f"{signature}; retry tried {rng.randint(1, 5)} times, worked {rng.randint(0, 1)}"
            made.append(Episode("failure", text, system=system, signature=str(signature), run_id=f"run{i}", at=at))
        else:
            rows = rng.randint(0, 10**7)
            text = f"run of pipeline {system}_load succeeded: {rows} rows written from {system} in {rng.random() * 600:.1f}s"
            made.append(Episode("run", text, pipeline=f"{system}_load", run_id=f"run{i}", at=at))
    return made


def queries(n: int, rng: random.Random) -> list[str]:
    shapes = [
        "timeouts on the {s} API",
        "{e} on {s}",
        "has {s} failed before",
        "what fixed {e}",
        "slow runs of {s}_load",
        "authentication problems lately",
    ]
    return [rng.choice(shapes).format(s=rng.choice(SYSTEMS), e=rng.choice(ERRORS)) for _ in range(n)]


def measure(size: int, n_queries: int, rng: random.Random) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(f"sqlite:///{home}/agent-etl.db")
        memory = Memory(EpisodeStore(store.engine), retention=timedelta(days=3650), max_episodes=size)
        started = time.perf_counter()
        batch = 5_000
        for at in range(0, size, batch):
            memory.remember(episodes(min(batch, size - at), rng))
        filled = time.perf_counter() - started
        started = time.perf_counter()
        memory.recall("warm up: load the index", 5)
        load = time.perf_counter() - started
        timings, cpu = [], []
        for query in queries(n_queries, rng):
            started, used = time.perf_counter(), time.process_time()
            found = memory.recall(query, 5)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)
            assert len(found) == 5
        store.close()
    timings.sort()
    cpu.sort()
    return {
        "episodes": size,
        "fill_seconds": round(filled, 1),
        "index_load_seconds": round(load, 2),
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
        "max_ms": round(timings[-1], 2),
        # CPU time of this process per recall: what the wall-clock figures come to on a machine nobody else uses.
        "cpu_p50_ms": round(statistics.median(cpu), 2),
        "cpu_p95_ms": round(cpu[int(0.95 * (len(cpu) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(16)
    results = []
    for size in args.sizes:
        result = measure(size, args.queries, rng)
        results.append(result)
        print(json.dumps(result), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    record = {"results": results, "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    (out / f"memory_recall-{stamp}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
