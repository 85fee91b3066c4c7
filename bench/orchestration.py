"""Orchestration latency: planning, agent selection, and how soon rows move after a resume.

    python bench/orchestration.py [--tasks 100] [--repeat 50]

In-process timings (best and median of --repeat), since these are
milliseconds that a subprocess start would drown. Targets from issue 6:
planning a 100-task workflow <= 100 ms; agent selection <= 1 ms per task;
rows moving again <= 5 s after `resume`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from agent_orchestrated_etl.agents.orchestrator_agent import AgentInfo, select_agent
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.orchestrator import Runtime, run_pipeline
from agent_orchestrated_etl.plan import make_plan
from agent_orchestrated_etl.spec import load_spec, parse_spec


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return min(samples), statistics.median(samples)


def planning(tasks: int, repeat: int, directory: Path) -> None:
    for i in range(tasks):
        (directory / f"f{i}.csv").write_text("id\n1\n")
    sources = "\n".join(f"  s{i}: {{type: file, path: {directory}/f{i}.csv}}" for i in range(tasks))
    dests = "\n".join(
        f"  - {{type: duckdb, path: {directory}/w.duckdb, table: t{i}, input: s{i}}}" for i in range(tasks)
    )
    text = f"name: wide\nsources:\n{sources}\ndestinations:\n{dests}\n"
    spec = parse_spec(text).pipeline
    built = {name: source_class(s.type)(name, s, batch_rows=1000) for name, s in spec.sources.items()}
    best, median = timed(lambda: make_plan(spec, built), repeat)
    print(f"plan {tasks} tasks: best {best * 1000:.2f} ms, median {median * 1000:.2f} ms (target <= 100 ms)")
    best, median = timed(lambda: parse_spec(text), repeat)
    print(f"parse + validate the {tasks}-source spec: best {best * 1000:.2f} ms, median {median * 1000:.2f} ms")


def selection(tasks: int, repeat: int) -> None:
    agents = [
        AgentInfo(f"etl-{i}", frozenset({"extract_load", "stage", "transform_load"}), capacity=4) for i in range(8)
    ]

    def place_all() -> None:
        for agent in agents:
            agent.in_flight = 0
        for n in range(tasks):
            chosen = select_agent(agents, "extract_load")
            if chosen is None:  # all full: one finishes
                agents[n % len(agents)].in_flight -= 1
                chosen = select_agent(agents, "extract_load")
            chosen.in_flight += 1  # type: ignore[union-attr]

    best, median = timed(place_all, repeat)
    print(
        f"select an agent for {tasks} tasks among 8 agents: best {best / tasks * 1e6:.2f} us/task, median {median / tasks * 1e6:.2f} us/task (target <= 1 ms)"
    )


def resume_latency(directory: Path) -> None:
    """Fail a run on its second source, fix it, and time resume until the first rows move."""
    directory.mkdir()
    os.environ["AGENT_ETL_HOME"] = str(directory / "home")
    rows = 2_000_000
    (directory / "big.csv").write_text("id,v\n" + "".join(f"{i},{i % 97}\n" for i in range(rows)))
    (directory / "p.yaml").write_text(
        "name: resumable\nsources:\n  big: {type: file, path: big.csv}\n  late: {type: file, path: late.csv}\n"
        "destinations:\n  - {type: duckdb, path: w.duckdb, table: big, input: big}\n  - {type: duckdb, path: w.duckdb, table: late, input: late}\n"
    )
    failed = run_pipeline(load_spec(directory / "p.yaml"), Settings())
    (directory / "late.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(rows)))
    first_rows: list[float] = []

    async def resume() -> float:
        started = time.perf_counter()
        async with Runtime(Settings()) as runtime:

            def listen(state, event) -> None:  # type: ignore[no-untyped-def]
                if (
                    event.kind in ("task_progress", "task_finished")
                    and not first_rows
                    and getattr(event, "sender", "") != "orchestrator"
                ):
                    first_rows.append(time.perf_counter() - started)

            result = await runtime.resume(failed.run_id, listener=listen)
        assert result.status == "succeeded", result.error
        return time.perf_counter() - started

    total = asyncio.run(resume())
    print(
        f"resume: rows moving after {first_rows[0]:.2f} s, run done after {total:.2f} s (target <= 5 s to moving rows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        planning(args.tasks, args.repeat, Path(tmp))
        selection(args.tasks, args.repeat)
        resume_latency(Path(tmp) / "resume")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
