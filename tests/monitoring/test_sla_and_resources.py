"""Time-based rules on the monitor's ticks: a run over its max duration, a stale pipeline, memory over the limit."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from tests.api.conftest import PEOPLE_YAML
from tests.monitoring.test_alerts import Recorder

from agent_orchestrated_etl.agents.hub import InProcessHub
from agent_orchestrated_etl.agents.monitor_agent import MonitorAgent, ProcessSample
from agent_orchestrated_etl.model.messages import RunFinished, RunStarted
from agent_orchestrated_etl.monitoring.alerts import AlertManager
from agent_orchestrated_etl.monitoring.resources import MemoryWatcher
from agent_orchestrated_etl.monitoring.sla import SlaWatcher, parse_duration
from agent_orchestrated_etl.spec import parse_spec

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_bad_durations() -> None:
    for text in ("soon", "15 minutes", "m15", ""):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(text)


def _setup(sla: str, clock: list[datetime], last_success: datetime | None = None):  # type: ignore[no-untyped-def]
    hub = InProcessHub()
    monitor = MonitorAgent("monitor", hub)
    channel = Recorder()
    alerts = AlertManager(hub, None, [channel])
    watcher = SlaWatcher(alerts, lambda name: last_success, clock=lambda: clock[0])
    spec = parse_spec(PEOPLE_YAML + sla).pipeline
    return monitor, watcher, channel, alerts, spec


async def test_a_run_over_its_max_duration_alerts_while_running_and_only_once() -> None:
    clock = [T0]
    monitor, watcher, channel, alerts, spec = _setup("sla: {max_duration: 10m}\n", clock)
    watcher.expect("r1", spec)
    monitor._fold(RunStarted(run_id="r1", pipeline="people", spec_sha256="x", tasks=[], at=T0))
    clock[0] = T0 + timedelta(minutes=9)
    watcher.tick(monitor)
    clock[0] = T0 + timedelta(minutes=11)
    watcher.tick(monitor)
    watcher.tick(monitor)
    finished = RunFinished(run_id="r1", status="succeeded", at=T0 + timedelta(minutes=12))
    monitor._fold(finished)
    watcher.observe(finished, monitor.runs["r1"])
    await alerts.flush()
    assert [(a.rule, a.details["finished"]) for a in channel.sent] == [("sla_max_duration", False)]
    assert channel.sent[0].summary == "run r1 of people has been running for 11.0m, over its SLA of 10m"


async def test_a_run_that_finished_late_alerts_after_it() -> None:
    clock = [T0 + timedelta(minutes=12)]
    monitor, watcher, channel, alerts, spec = _setup("sla: {max_duration: 10m}\n", clock)
    watcher.expect("r1", spec)
    monitor._fold(RunStarted(run_id="r1", pipeline="people", spec_sha256="x", tasks=[], at=T0))
    finished = RunFinished(run_id="r1", status="succeeded", at=T0 + timedelta(minutes=12))
    monitor._fold(finished)
    watcher.observe(finished, monitor.runs["r1"])
    await alerts.flush()
    assert [(a.rule, a.details) for a in channel.sent] == [
        ("sla_max_duration", {"limit_seconds": 600.0, "seconds": 720.0, "finished": True})
    ]


async def test_freshness_counts_from_the_last_success_and_is_checked_at_most_every_interval() -> None:
    clock = [T0]
    monitor, watcher, channel, alerts, spec = _setup(
        "sla: {freshness: 1h}\n", clock, last_success=T0 - timedelta(minutes=90)
    )
    watcher.watch_pipeline(spec, since=T0 - timedelta(days=1))
    watcher.tick(monitor)
    watcher.tick(monitor)  # within freshness_every: not even checked
    await alerts.flush()
    (alert,) = channel.sent
    assert (alert.rule, alert.pipeline, alert.details["age_seconds"]) == ("sla_freshness", "people", 5400.0)
    assert (
        alert.summary
        == "pipeline people is stale: last success 2026-11-25 10:30:00 UTC, 90.0m ago, over its freshness SLA of 1h"
    )


async def test_memory_over_the_limit_alerts_once_per_window() -> None:
    hub = InProcessHub()
    monitor = MonitorAgent("monitor", hub)
    monitor.heartbeat()
    await monitor.drain()
    channel = Recorder()
    alerts = AlertManager(hub, None, [channel])
    watcher = MemoryWatcher(alerts, limit_bytes=100 * 2**20, limit_text="100MB")
    monitor.process = ProcessSample(rss_bytes=99 * 2**20)
    watcher.tick(monitor)
    monitor.process = ProcessSample(rss_bytes=150 * 2**20)
    watcher.tick(monitor)
    watcher.tick(monitor)
    await alerts.flush()
    (alert,) = channel.sent
    assert alert.rule == "memory_limit" and alert.details["rss_bytes"] == 150 * 2**20
    assert alert.summary == (
        f"the process {os.getpid()} running agents monitor uses 150 MB (its whole RSS: the agents share it), "
        "over AGENT_ETL_MEMORY_LIMIT=100MB; lower AGENT_ETL_MAX_WORKERS or AGENT_ETL_BATCH_ROWS, or raise the limit"
    )
