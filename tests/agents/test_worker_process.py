"""An ETL agent in a separate process, reached only through the Redis hub, runs the tasks of a real pipeline."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.model.messages import AssignTask, Heartbeat
from agent_orchestrated_etl.orchestrator import Runtime
from agent_orchestrated_etl.spec import load_spec

pytestmark = pytest.mark.redis

SPEC = """\
name: remote_orders
sources:
  orders: {{type: file, path: "data/*.csv"}}
destination: {{type: sqlite, url: "sqlite:///{target}", table: orders, write: replace}}
"""


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    import redis

    name = f"test-worker-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}:*", count=10_000))
    if keys:
        client.delete(*keys)
    client.close()


def write_orders(data: Path, files: int, rows: int) -> tuple[int, int]:
    """CSV files of orders; the count and the sum of ids*amount, to compare the target with."""
    data.mkdir()
    total = 0
    for f in range(files):
        lines = ["id,customer,amount"]
        for i in range(rows):
            order = f * rows + i
            lines.append(f"{order},c{order % 17},{order % 1000}")
            total += order * (order % 1000)
        (data / f"part-{f}.csv").write_text("\n".join(lines) + "\n")
    return files * rows, total


@pytest.fixture
def worker(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "AGENT_ETL_HUB_PREFIX": prefix, "AGENT_ETL_HOME": str(tmp_path / "worker-home")}
    command = [
        sys.executable,
        "-m",
        "agent_orchestrated_etl.agents.worker",
        "--hub",
        redis_url,
        "--name",
        "etl-remote",
        "--capacity",
        "2",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path / "elsewhere" if (tmp_path / "elsewhere").mkdir() is None else None
    )
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


async def seen_heartbeat(runtime: Runtime, agent: str) -> Heartbeat:
    beats = runtime.hub.subscribe("agents.heartbeat")
    try:
        async with asyncio.timeout(90):  # the worker process imports the engine first; under load that takes a while
            while True:
                beat = await beats.get()
                if isinstance(beat, Heartbeat) and beat.agent == agent:
                    return beat
    finally:
        runtime.hub.unsubscribe(beats)


def test_an_etl_agent_in_another_process_loads_a_pipeline_exactly(
    redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: subprocess.Popen[bytes]
) -> None:
    rows, checksum = write_orders(tmp_path / "data", files=3, rows=2000)
    target = tmp_path / "out.db"
    spec = tmp_path / "orders.yaml"
    spec.write_text(SPEC.format(target=target))
    monkeypatch.setenv("AGENT_ETL_HUB_URL", redis_url)
    monkeypatch.setenv("AGENT_ETL_HUB_PREFIX", prefix)

    async def run() -> tuple:
        # No ETL agent in this process: every task must go to the worker, by hub messages.
        async with Runtime(Settings(), etl_agents=0) as runtime:
            assert runtime.workers == []
            await seen_heartbeat(runtime, "etl-remote")
            assignments = runtime.hub.subscribe("*")  # what this process sees of the run: events only
            result = await runtime.run(load_spec(spec))
            return result, runtime.store.get_run(result.run_id), assignments

    result, record, seen = asyncio.run(run())
    assert result.status == "succeeded", result.error
    assert worker.poll() is None, "the worker process is still serving"
    assert {t.agent for t in result.tasks} == {"etl-remote"}
    assert len(result.tasks) == 3
    assert result.rows_written == rows
    assigned = [d for d in record["events"] if d["kind"] == "decision" and d["choice"].startswith("assign to")]
    assert {d["choice"] for d in assigned} == {"assign to etl-remote"}
    with sqlite3.connect(target) as con:
        assert con.execute("SELECT count(*), sum(id * amount), count(DISTINCT id) FROM orders").fetchone() == (
            rows,
            checksum,
            rows,
        )
    while (message := seen.get_nowait()) is not None:
        assert not isinstance(message, AssignTask), "assignments go to a mailbox, not to subscribers"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0


@pytest.fixture
def slow_table(postgres_url: str) -> Iterator[tuple[str, str]]:
    table = f"slow_{uuid.uuid4().hex[:8]}"
    run_sql(postgres_url, f"CREATE TABLE {table} AS SELECT i AS id FROM generate_series(1, 1500) i")
    yield postgres_url, table
    run_sql(postgres_url, f"DROP TABLE IF EXISTS {table}")


@pytest.mark.postgres
def test_a_cancelled_run_stops_the_task_running_in_another_process(
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    worker: subprocess.Popen[bytes],
    slow_table: tuple[str, str],
) -> None:
    url, table = slow_table
    # 5 ms a row, slept in the server: reading it takes 7.5 s, so the cancel lands while the worker reads.
    query = f"SELECT id FROM {table} WHERE pg_sleep(0.005)::text = ''"
    target = tmp_path / "out.db"
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        f'name: slow\nsources:\n  t: {{type: postgres, url: "{url}", query: "{query}"}}\n'
        f'destination: {{type: sqlite, url: "sqlite:///{target}", table: t}}\n'
    )
    monkeypatch.setenv("AGENT_ETL_HUB_URL", redis_url)
    monkeypatch.setenv("AGENT_ETL_HUB_PREFIX", prefix)

    async def run() -> tuple:
        async with Runtime(Settings(), etl_agents=0) as runtime:
            await seen_heartbeat(runtime, "etl-remote")
            events = runtime.hub.subscribe("run.*")
            running = asyncio.create_task(runtime.run(load_spec(spec)))
            async with asyncio.timeout(30):
                started = await next_kind(events, "task_started")
            await asyncio.sleep(0.5)
            assert runtime.cancel(started.run_id)
            return await running

    result = asyncio.run(run())
    assert result.status == "cancelled"
    [task] = result.tasks
    assert (task.agent, task.status, task.error_type) == ("etl-remote", "cancelled", "Cancelled")
    # The worker's own copy of the run heard of the cancel only by message: without it, its task read on and finished.
    with sqlite3.connect(target) as con:
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone() == (0,)


async def next_kind(subscription, kind: str):
    while True:
        message = await subscription.get()
        if message.kind == kind:
            return message
