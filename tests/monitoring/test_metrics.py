"""/metrics after a run: exact counts per pipeline and task, bounded labels, and promtool's approval."""

from __future__ import annotations

import subprocess

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.api.conftest import AUTH, PEOPLE_YAML, wait_for_run
from tests.system_packages import debian_tool

from agent_orchestrated_etl.monitoring.metrics import queue_depths, task_label


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_after_a_run(client: TestClient) -> None:
    client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH)
    run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    assert wait_for_run(client, run_id)["status"] == "succeeded"
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    task = (("pipeline", "people"), ("task", "people>people"))
    assert found[("agent_etl_rows_read_total", task)] == 100
    assert found[("agent_etl_rows_written_total", task)] == 90
    assert found[("agent_etl_bytes_read_total", task)] > found[("agent_etl_bytes_written_total", task)] > 0
    destination = (("destination", "people"), ("pipeline", "people"))
    assert found[("agent_etl_rows_committed_total", destination)] == 90
    assert found[("agent_etl_rows_quarantined_total", destination)] == 10
    assert found[("agent_etl_runs_total", (("pipeline", "people"), ("status", "succeeded")))] == 1
    assert found[("agent_etl_task_duration_seconds_count", (("kind", "extract_load"), ("pipeline", "people")))] == 1
    assert found[("agent_etl_agent_capacity", (("agent", "etl-1"), ("role", "etl")))] == 2
    assert found[("agent_etl_agent_rss_bytes", (("agent", "etl-1"), ("role", "etl")))] > 10 * 2**20
    assert ("agent_etl_hub_queue_depth", (("queue", "mailbox:etl-1"),)) in found
    labels = {value for _, pairs in found for _, value in pairs}
    assert not any(run_id in value for value in labels), "a run id leaked into a label"

    promtool = debian_tool("/usr/bin/promtool", "prometheus")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=response.text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_labels_fold_away_partitions_and_run_ids() -> None:
    assert task_label("orders[12]>orders") == "orders>orders"
    assert task_label("order_lines>order_lines") == "order_lines>order_lines"

    class Hub:
        def queue_depths(self) -> dict[str, int]:
            return {
                "mailbox:etl-1": 2,
                "subscription:run.*#0": 1,
                "subscription:run.20261125T150000-ab12cd#1": 3,
                "subscription:run.20261125T150001-ef34ab#2": 4,
            }

    assert queue_depths(Hub()) == {"mailbox:etl-1": 2, "subscription:run.*": 1, "subscription:run.<id>": 7}  # type: ignore[arg-type]


def test_circuit_breaker_changes_set_the_gauge(etl_home) -> None:
    from typing import Literal

    from agent_orchestrated_etl.agents.hub import InProcessHub
    from agent_orchestrated_etl.agents.monitor_agent import MonitorAgent
    from agent_orchestrated_etl.model.messages import Message
    from agent_orchestrated_etl.monitoring.metrics import Metrics

    class BreakerChanged(Message):  # the shape the monitor reads; the orchestrator's breakers publish it
        kind: Literal["breaker_changed"] = "breaker_changed"
        system: str
        state: str

    hub = InProcessHub()
    metrics = Metrics(MonitorAgent("monitor", hub), hub)
    for state in ("open", "half_open"):
        metrics.observe(BreakerChanged(system="postgres://db:5432", state=state), None)
    metrics.observe(BreakerChanged(system="https://api.example", state="open"), None)
    found = samples(metrics.render().decode())
    assert found[("agent_etl_circuit_breaker_state", (("system", "postgres://db:5432"),))] == 1
    assert found[("agent_etl_circuit_breaker_state", (("system", "https://api.example"),))] == 2
