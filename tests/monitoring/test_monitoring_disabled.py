"""MONITORING_ENABLED=false: no CPU/RSS sampling, no memory alert, /metrics answers 404; pipelines still run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN, wait_for_run

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings


def _serve(data_dir: Path) -> TestClient:
    return TestClient(
        create_app(ServeOptions(settings=Settings(), token=TOKEN, base_dir=data_dir, public_read=True)),
        raise_server_exceptions=False,
    )


@pytest.mark.parametrize("enabled", [True, False])
def test_monitoring_switch(enabled: bool, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_ENABLED", str(enabled).lower())
    monkeypatch.setenv("AGENT_ETL_MEMORY_LIMIT", "1MB")  # any Python process is over it at once
    with _serve(data_dir) as client:
        time.sleep(2.5)  # the monitor ticks every second: two chances to sample and alert
        metrics = client.get("/metrics")
        agents = client.get("/api/v1/agents").json()
        alerts = [a["rule"] for a in client.get("/api/v1/alerts").json()]
    if enabled:
        assert metrics.status_code == 200 and "agent_etl_agent_rss_bytes" in metrics.text
        assert all(a["rss_bytes"] > 2**20 and a["cpu_percent"] is not None for a in agents)
        assert "memory_limit" in alerts
    else:
        assert metrics.status_code == 404
        assert metrics.json()["type"] == "urn:agent-etl:problem:monitoring-disabled"
        assert "MONITORING_ENABLED=true" in metrics.json()["detail"]
        assert agents and all(a["rss_bytes"] is None and a["cpu_percent"] is None for a in agents)
        assert "memory_limit" not in alerts


def test_pipelines_run_with_monitoring_off(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_ENABLED", "false")
    with _serve(data_dir) as client:
        assert client.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH).status_code == 201
        run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
        run = wait_for_run(client, run_id)
    assert (run["status"], run["rows_written"], [t["rows"] for t in run["tasks"]]) == ("succeeded", 90, [100])
