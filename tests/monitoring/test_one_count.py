"""One source of truth for counts: the API, /metrics and the monitor agree during a run and equal the record after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import AUTH, TOKEN
from tests.connectors.http_servers import FaultAPI, fault_server
from tests.monitoring.test_metrics import samples

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.model.messages import RunStarted, TaskProgress, TaskStarted
from agent_orchestrated_etl.monitoring.live import RATE_WINDOW_SECONDS, RunState, TaskState

ITEMS, PAGE = 400, 50


@pytest.fixture
def slow_api() -> Iterator[tuple[str, FaultAPI]]:
    server, url, api = fault_server(ITEMS)
    # Every page after the first waits for the test: the run moves only when the test has sampled it, however
    # loaded the machine and however far the client fetches ahead.
    for offset in range(PAGE, ITEMS, PAGE):
        api.faults[f"offset={offset}"] = ["hold"]
        api.held[f"offset={offset}"] = threading.Event()  # made here, not raced for by handler and test
    yield url, api
    for release in list(api.held.values()):
        release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def small_batches(tmp_path: Path) -> Iterator[TestClient]:
    options = ServeOptions(
        settings=Settings(AGENT_ETL_MEMORY_LIMIT="16GB", AGENT_ETL_BATCH_ROWS=PAGE),
        token=TOKEN,
        base_dir=tmp_path,
        max_body_bytes=64 * 1024,
        dedup_seconds=600,
        public_read=True,
        rate_per_minute=0,  # the test polls fast while a page is held; serve's limit is not under test here
    )
    with TestClient(create_app(options), raise_server_exceptions=False) as test_client:
        yield test_client


def _read_in_metrics(text: str) -> float:
    return sum(v for (name, _), v in samples(text).items() if name == "agent_etl_rows_read_total")


@pytest.mark.parametrize(
    ("transform", "kinds"),
    [
        ("", ["extract_load"]),
        # A stage task reads the source, a transform the staged table: only the first counts as read
        # (the transform's 400 groups once doubled rows read in /metrics).
        (
            "transforms:\n  - {name: by_name, sql: 'SELECT name, count(*) AS n FROM orders GROUP BY name'}\n",
            ["stage", "transform_load"],
        ),
    ],
)
def test_api_metrics_and_monitor_show_the_same_rows_read_during_and_after_a_run(
    small_batches: TestClient, slow_api: tuple[str, FaultAPI], transform: str, kinds: list[str]
) -> None:
    client, (url, api) = small_batches, slow_api
    spec = (
        f"name: feed\nsources:\n  orders:\n    type: rest\n    url: {url}/offset\n    records: results\n"
        f"    pagination: {{type: offset, size_param: limit, total_path: count, page_size: {PAGE}}}\n"
        f"{transform}destination: {{type: duckdb, path: out.duckdb, table: orders}}\n"
    )
    assert client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH).status_code < 300
    run_id = client.post("/api/v1/runs", json={"pipeline": "feed"}, headers=AUTH).json()["run_id"]
    monitor = client.app.state.server.runtime.monitor  # type: ignore[attr-defined]

    def all_three_agree() -> int | None:
        response = client.get(f"/api/v1/runs/{run_id}")
        if response.status_code == 404:
            return None
        run = response.json()
        metrics = _read_in_metrics(client.get("/metrics").text)
        state = monitor.runs.get(run["run_id"])
        if state is None or not run["rows_read"] or metrics != run["rows_read"] or state.source_rows != metrics:
            return None
        return int(metrics)

    agreed: list[int] = []
    for offset in range(PAGE, ITEMS, PAGE):
        # Held at this page, every row before it has been read and nothing moves: the API, /metrics and the
        # monitor must settle on exactly that count (a count the progress throttle held back once stayed behind
        # until the next batch, however long the page stalled).
        deadline = time.monotonic() + 30
        while (seen := all_three_agree()) != offset and time.monotonic() < deadline:
            time.sleep(0.02)
        agreed.append(seen or 0)
        api.held[f"offset={offset}"].set()
    assert agreed == list(range(PAGE, ITEMS, PAGE)), f"counts where all three agreed, page by page: {agreed}"
    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/runs/{run_id}").json()["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)

    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded", run
    record = client.app.state.server.runtime.store.get_run(run["run_id"])  # type: ignore[attr-defined]
    assert record is not None
    assert sorted(t["kind"] for t in record["tasks"]) == kinds
    recorded = sum(t["rows_read"] for t in record["tasks"] if t["kind"] != "transform_load")
    assert recorded == ITEMS
    assert run["rows_read"] == _read_in_metrics(client.get("/metrics").text) == recorded
    assert monitor.runs[run["run_id"]].source_rows == recorded


def _event(cls: Any, **fields: Any) -> Any:
    return cls(sender="test", run_id="r1", **fields)


def test_a_transform_over_its_own_source_counts_as_read_and_one_over_staged_tables_does_not() -> None:
    state = RunState("r1")
    tasks = [
        {"id": "a", "kind": "stage", "source": "a"},
        {"id": "t", "kind": "transform_load", "source": None, "depends_on": ["a"]},
        {"id": "s", "kind": "transform_load", "source": "b"},
        {"id": "p", "kind": "pushdown", "source": "c"},
    ]
    state.apply(_event(RunStarted, pipeline="p", spec_sha256="x", tasks=tasks))
    for task_id, rows in (("a", 10), ("t", 10), ("s", 7), ("p", 5)):
        state.apply(_event(TaskStarted, task_id=task_id, agent="etl-1", attempt=1))
        state.apply(_event(TaskProgress, task_id=task_id, rows=rows, bytes=0))
    assert state.source_rows == 10 + 7 + 5
    snapshot = state.to_dict(datetime.now(UTC))
    assert snapshot["rows_read"] == 22
    assert [t["reads_source"] for t in snapshot["tasks"]] == [True, False, True, True]


def test_rows_per_second_follows_recent_progress_and_ends_at_the_average() -> None:
    task = TaskState("a", "extract_load", started=100.0)
    for second in range(1, 11):  # 1,000 rows/s for 10 s
        task.observe(second * 1000, now=100.0 + second)
    assert task.rate(now=110.0) == pytest.approx(1000)
    for second in range(11, 21):  # then 100 rows/s: the window shows it, a whole-task average would not
        task.observe(10_000 + (second - 10) * 100, now=100.0 + second)
    assert task.rate(now=120.0) == pytest.approx(100, rel=0.05)
    assert task.rate(now=120.0 + 2 * RATE_WINDOW_SECONDS) < 50  # a stall shows, not the last figure
    task.seconds = 20.0
    assert task.rows_per_second == pytest.approx(11_000 / 20)
