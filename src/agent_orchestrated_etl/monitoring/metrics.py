"""Prometheus metrics, folded from hub events by a monitor watcher and served at ``/metrics``.

Label values come from the spec (pipeline, task, destination names), from the
exception tree (error classes) or from a short fixed list (statuses), never
from run ids, so the number of series stays bounded by what users configure.
A task label drops the partition index (``orders[3]>orders`` -> ``orders>orders``):
a file glob of ten thousand files is still one series.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agent_orchestrated_etl.exceptions import MissingDependencyError
from agent_orchestrated_etl.model.messages import Message
from agent_orchestrated_etl.monitoring.live import RunState

if TYPE_CHECKING:
    from agent_orchestrated_etl.agents.hub import Hub
    from agent_orchestrated_etl.agents.monitor_agent import MonitorAgent

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover - exercised only without the server extra
    raise MissingDependencyError("Prometheus metrics", "server") from None

_PARTITION = re.compile(r"\[\d+\]")
_RUN_TOPIC = re.compile(r"^run\.[^*?\[]+$")
BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def task_label(task_id: str) -> str:
    return _PARTITION.sub("", task_id)


class Metrics:
    """Counters and histograms updated per event; gauges read at scrape time."""

    def __init__(self, monitor: MonitorAgent, hub: Hub) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        per_task = ["pipeline", "task"]
        self.rows_read = Counter("agent_etl_rows_read", "Rows read from sources.", per_task, registry=r)
        self.bytes_read = Counter(
            "agent_etl_bytes_read", "Bytes read from sources (Arrow in-memory size).", per_task, registry=r
        )
        self.rows_written = Counter(
            "agent_etl_rows_written",
            "Rows tasks wrote to staging or the workspace (published when the destination commits).",
            per_task,
            registry=r,
        )
        self.bytes_written = Counter(
            "agent_etl_bytes_written", "Bytes tasks wrote (Arrow in-memory size).", per_task, registry=r
        )
        self.rows_committed = Counter(
            "agent_etl_rows_committed",
            "Rows published by destination commits.",
            ["pipeline", "destination"],
            registry=r,
        )
        self.rows_quarantined = Counter(
            "agent_etl_rows_quarantined",
            "Rows set aside in quarantine at commit.",
            ["pipeline", "destination"],
            registry=r,
        )
        self.task_seconds = Histogram(
            "agent_etl_task_duration_seconds",
            "Duration of successful task attempts.",
            ["pipeline", "kind"],
            registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
        )
        self.task_errors = Counter(
            "agent_etl_task_errors",
            "Failed task attempts by error class.",
            ["pipeline", "error_class", "remedy"],
            registry=r,
        )
        self.task_retries = Counter(
            "agent_etl_task_retries",
            "Task attempts started after a failure, by the class of that failure.",
            ["pipeline", "error_class"],
            registry=r,
        )
        self.runs = Counter("agent_etl_runs", "Finished runs by status.", ["pipeline", "status"], registry=r)
        self.breaker = Gauge(
            "agent_etl_circuit_breaker_state",
            "Circuit breaker per external system: 0 closed, 1 half-open, 2 open.",
            ["system"],
            registry=r,
        )
        self.alerts = Counter(
            "agent_etl_alerts", "Alerts raised, by what happened to them.", ["rule", "outcome"], registry=r
        )
        self.ws_resyncs = Counter(
            "agent_etl_websocket_resyncs",
            "WebSocket clients that fell behind and were sent a fresh snapshot.",
            registry=r,
        )
        self.ws_dropped = Counter(
            "agent_etl_websocket_slow_disconnects", "WebSocket clients closed because they stopped reading.", registry=r
        )
        self.ws_clients = Gauge("agent_etl_websocket_clients", "Connected WebSocket clients.", registry=r)
        r.register(_ScrapeTime(monitor, hub))
        # Cumulative counts seen per running task attempt, to turn progress into counter increments.
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        self._last_error: dict[tuple[str, str], str] = {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, message: Message, state: RunState | None) -> None:
        kind = message.kind
        if kind == "breaker_changed":
            data: Any = message
            self.breaker.labels(data.system).set(BREAKER_STATES.get(str(data.state).lower(), 2))
            return
        if state is None:
            return
        data = message
        pipeline = state.pipeline
        if kind == "task_started":
            key = (data.run_id, data.task_id)
            self._seen[key] = (0, 0)
            if data.attempt > 1:
                self.task_retries.labels(pipeline, self._last_error.pop(key, "unknown")).inc()
        elif kind in ("task_progress", "task_finished"):
            rows, nbytes = (data.rows, data.bytes) if kind == "task_progress" else (data.rows_read, data.bytes)
            task = state.tasks.get(data.task_id)
            # Rows read from sources only, by the rule the dashboard and the API count by (a
            # transform over staged tables reads rows its stage tasks counted already).
            if task is None or task.reads_source:
                self._count_read(pipeline, data.run_id, data.task_id, rows, nbytes)
            if kind == "task_finished":
                label = task_label(data.task_id)
                self._seen.pop((data.run_id, data.task_id), None)
                self.rows_written.labels(pipeline, label).inc(data.rows_written)
                self.bytes_written.labels(pipeline, label).inc(data.bytes_written)
                self.task_seconds.labels(
                    pipeline, state.tasks[data.task_id].kind if data.task_id in state.tasks else "unknown"
                ).observe(data.seconds)
        elif kind == "task_failed":
            self._seen.pop((data.run_id, data.task_id), None)
            if data.remedy != "cancelled":
                self.task_errors.labels(pipeline, data.error_type, data.remedy).inc()
                self._last_error[(data.run_id, data.task_id)] = data.error_type
        elif kind == "destination_committed" and not data.already_committed:
            self.rows_committed.labels(pipeline, data.destination).inc(data.rows)
            self.rows_quarantined.labels(pipeline, data.destination).inc(data.quarantined_rows)
        elif kind == "run_finished":
            self.runs.labels(pipeline or "unknown", data.status).inc()
            for key in [k for k in self._last_error if k[0] == data.run_id]:
                del self._last_error[key]

    def _count_read(self, pipeline: str, run_id: str, task_id: str, rows: int, nbytes: int) -> None:
        seen_rows, seen_bytes = self._seen.get((run_id, task_id), (0, 0))
        label = task_label(task_id)
        if rows > seen_rows:
            self.rows_read.labels(pipeline, label).inc(rows - seen_rows)
        if nbytes > seen_bytes:
            self.bytes_read.labels(pipeline, label).inc(nbytes - seen_bytes)
        self._seen[(run_id, task_id)] = (max(rows, seen_rows), max(nbytes, seen_bytes))

    def tick(self, monitor: MonitorAgent) -> None:
        """Counters move with events and gauges are read at scrape time: nothing to do on a tick."""


class _ScrapeTime:
    """Gauges that are cheaper to read when Prometheus asks than to keep up to date."""

    def __init__(self, monitor: MonitorAgent, hub: Hub) -> None:
        self.monitor = monitor
        self.hub = hub

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_progress = GaugeMetricFamily(
            "agent_etl_runs_in_progress", "Runs started and not finished.", labels=["pipeline"]
        )
        counts: dict[str, int] = {}
        for state in self.monitor.runs.values():
            if not state.finished:
                counts[state.pipeline] = counts.get(state.pipeline, 0) + 1
        for pipeline, count in sorted(counts.items()):
            in_progress.add_metric([pipeline], count)
        yield in_progress

        statuses = self.monitor.agent_statuses()
        gauges = {
            "load": GaugeMetricFamily("agent_etl_agent_load", "Tasks an agent holds.", labels=["agent", "role"]),
            "capacity": GaugeMetricFamily(
                "agent_etl_agent_capacity", "Tasks an agent can hold at once.", labels=["agent", "role"]
            ),
            "heartbeat_age_seconds": GaugeMetricFamily(
                "agent_etl_agent_heartbeat_age_seconds",
                "Seconds since the agent's last heartbeat.",
                labels=["agent", "role"],
            ),
            "cpu_percent": GaugeMetricFamily(
                "agent_etl_agent_cpu_percent",
                "CPU use of the agent's process (agents in one process share it), percent of one core.",
                labels=["agent", "role"],
            ),
            "rss_bytes": GaugeMetricFamily(
                "agent_etl_agent_rss_bytes",
                "Resident memory of the agent's process (agents in one process share it).",
                labels=["agent", "role"],
            ),
        }
        for agent in statuses:
            for field, gauge in gauges.items():
                gauge.add_metric([agent["name"], agent["role"]], agent[field])
        yield from gauges.values()

        depths = GaugeMetricFamily(
            "agent_etl_hub_queue_depth",
            "Messages waiting in hub queues (mailboxes by agent, subscriptions by topic pattern).",
            labels=["queue"],
        )
        for queue, depth in sorted(queue_depths(self.hub).items()):
            depths.add_metric([queue], depth)
        yield depths


def queue_depths(hub: Hub) -> dict[str, int]:
    """The hub's queue depths, summed per pattern with run ids folded away (``subscription:run.20261125T1500-ab12cd#3`` -> ``subscription:run.<id>``)."""
    folded: dict[str, int] = {}
    for name, depth in hub.queue_depths().items():
        kind, _, rest = name.partition(":")
        pattern = rest.rsplit("#", 1)[0]
        label = f"{kind}:{'run.<id>' if _RUN_TOPIC.match(pattern) else pattern}"
        folded[label] = folded.get(label, 0) + depth
    return folded
