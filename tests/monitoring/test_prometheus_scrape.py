"""A real Prometheus scrapes serve, and a query returns the rows the run wrote."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
from tests.api.conftest import AUTH, TOKEN
from tests.api.serve_process import free_port, serve, write_items
from tests.system_packages import debian_tool


def test_prometheus_scrapes_rows_written(tmp_path: Path) -> None:
    prometheus = debian_tool("/usr/bin/prometheus", "prometheus")
    spec = write_items(tmp_path, 12_345)
    with serve(tmp_path, spec) as url:
        run_id = httpx.post(f"{url}/api/v1/runs", json={"pipeline": "items"}, headers=AUTH).json()["run_id"]
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{url}/api/v1/runs/{run_id}", headers=AUTH).json()["status"] == "running"
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        target = url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: agent-etl\n    authorization:"
            f" {{credentials: {TOKEN}}}\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        port = free_port()
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115
        )
        try:
            query = 'sum(agent_etl_rows_written_total{job="agent-etl", pipeline="items"})'
            value = None
            deadline = time.monotonic() + 30
            while value is None and time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    result = httpx.get(
                        f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=2
                    ).json()["data"]["result"]
                except (httpx.TransportError, KeyError, ValueError):
                    continue
                value = result[0]["value"][1] if result else None
        finally:
            process.terminate()
            process.wait(timeout=20)
    assert value == "12345", (tmp_path / "prometheus.log").read_text()[-2000:]
