"""SLAs and alerts end to end through serve, with a real webhook receiver; dedup and rate limits by clock."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient
from tests.api.conftest import AUTH, PEOPLE_YAML, wait_for_run
from tests.monitoring.test_metrics import samples

from agent_orchestrated_etl.agents.hub import InProcessHub
from agent_orchestrated_etl.monitoring.alerts import Alert, AlertManager, WebhookChannel


def test_sla_breaches_post_to_the_pipeline_webhook_once_per_window(client: TestClient, webhook) -> None:
    spec = PEOPLE_YAML + f"sla: {{min_rows: 1000, max_error_rate: 0.05}}\nalerts: {{webhook: '{webhook.url}/hook'}}\n"
    assert client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH).status_code == 201
    first = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    assert wait_for_run(client, first)["status"] == "succeeded"
    bodies = webhook.wait_for(2)
    by_rule = {b["json"]["rule"]: b for b in bodies}
    assert sorted(by_rule) == ["sla_max_error_rate", "sla_min_rows"]
    rows = by_rule["sla_min_rows"]["json"]
    assert by_rule["sla_min_rows"]["path"] == "/hook"
    assert by_rule["sla_min_rows"]["content_type"] == "application/json"
    assert {k: rows[k] for k in ("kind", "severity", "pipeline", "run_id", "suppressed")} == {
        "kind": "alert",
        "severity": "warning",
        "pipeline": "people",
        "run_id": first,
        "suppressed": 0,
    }
    assert rows["summary"] == f"run {first} of people wrote 90 rows, fewer than its SLA minimum of 1,000"
    assert rows["details"] == {"rows_written": 90, "min_rows": 1000}
    rate = by_rule["sla_max_error_rate"]["json"]
    assert rate["details"] == {"rows_read": 100, "rows_quarantined": 10, "error_rate": 0.1, "max_error_rate": 0.05}

    second = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    assert wait_for_run(client, second)["status"] == "succeeded"
    time.sleep(0.3)
    assert len(webhook.bodies) == 2, "the same breach within the dedup window must not be sent again"
    found = samples(client.get("/metrics").text)
    assert found[("agent_etl_alerts_total", (("outcome", "sent"), ("rule", "sla_min_rows")))] == 1
    assert found[("agent_etl_alerts_total", (("outcome", "deduplicated"), ("rule", "sla_min_rows")))] == 1
    stored = client.get("/api/v1/alerts").json()
    assert sorted(a["rule"] for a in stored) == ["sla_max_error_rate", "sla_min_rows"]
    assert sorted(a["rule"] for a in client.get(f"/api/v1/runs/{first}").json()["alerts"]) == [
        "sla_max_error_rate",
        "sla_min_rows",
    ]
    assert client.get(f"/api/v1/runs/{second}").json()["alerts"] == []


def test_a_failed_run_alerts_as_critical(client: TestClient, webhook) -> None:
    spec = PEOPLE_YAML.replace("people.csv", "gone.csv") + f"alerts: {{webhook: '{webhook.url}', slack: true}}\n"
    client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH)
    run_id = client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
    run = wait_for_run(client, run_id)
    (body,) = webhook.wait_for(1)
    assert set(body["json"]) == {"text"}
    assert (
        body["json"]["text"]
        == f":red_circle: *run_failed* · pipeline `people` · run `{run_id}`: run {run_id} of people failed: {run['error']}"
    )


def _alert(rule: str, pipeline: str = "p") -> Alert:
    return Alert(rule=rule, severity="warning", pipeline=pipeline, summary=f"{rule} on {pipeline}")


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.sent.append(alert)


async def test_dedup_window_and_rate_limit() -> None:
    now = [1000.0]
    channel = Recorder()
    manager = AlertManager(InProcessHub(), None, [channel], dedup_seconds=600, max_per_minute=2, clock=lambda: now[0])
    assert [manager.raise_alert(_alert("a")) for _ in range(3)] == ["sent", "deduplicated", "deduplicated"]
    assert manager.raise_alert(_alert("b")) == "sent"
    assert manager.raise_alert(_alert("c")) == "rate_limited"  # two already left in this minute
    now[0] += 61
    assert manager.raise_alert(_alert("c")) == "sent"
    now[0] += 600
    assert manager.raise_alert(_alert("a")) == "sent"
    await manager.flush()
    assert [(a.rule, a.suppressed) for a in channel.sent] == [("a", 0), ("b", 0), ("c", 1), ("a", 2)]


async def test_a_broken_webhook_does_not_stop_other_channels(webhook) -> None:
    webhook.status = 500
    channel = Recorder()
    manager = AlertManager(InProcessHub(), None, [WebhookChannel(webhook.url), channel])
    manager.raise_alert(_alert("x"))
    await asyncio.wait_for(manager.flush(), 5)
    assert (manager.failures, len(webhook.bodies), [a.rule for a in channel.sent]) == (1, 1, ["x"])
