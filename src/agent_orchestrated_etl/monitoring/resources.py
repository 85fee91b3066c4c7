"""The resource alert: the process running the agents over AGENT_ETL_MEMORY_LIMIT.

Agents of the embedded runtime are actors in one OS process, so memory per
agent cannot be told apart: the monitor samples the whole process's RSS every
tick, and one alert names the process and every agent in it. The dedup window
of the alert manager keeps a process that stays over the limit from alerting
on every tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_orchestrated_etl.model.messages import Message
from agent_orchestrated_etl.model.vocabulary import Severity
from agent_orchestrated_etl.monitoring.alerts import Alert, AlertManager
from agent_orchestrated_etl.monitoring.live import RunState

if TYPE_CHECKING:
    from agent_orchestrated_etl.agents.monitor_agent import MonitorAgent


class MemoryWatcher:
    def __init__(self, alerts: AlertManager, limit_bytes: int, limit_text: str) -> None:
        self.alerts = alerts
        self.limit_bytes = limit_bytes
        self.limit_text = limit_text

    def observe(self, message: Message, state: RunState | None) -> None:
        """Memory is sampled on ticks, not read from events."""

    def tick(self, monitor: MonitorAgent) -> None:
        if monitor.process is None or monitor.process.rss_bytes <= self.limit_bytes:
            return
        rss = monitor.process.rss_bytes
        agents = sorted(monitor.agents)
        pid = next((a.pid for a in monitor.agents.values()), None)
        summary = (
            f"the process {pid} running agents {', '.join(agents)} uses {rss / 2**20:,.0f} MB (its whole RSS: the agents share it), "
            f"over AGENT_ETL_MEMORY_LIMIT={self.limit_text}; lower AGENT_ETL_MAX_WORKERS or AGENT_ETL_BATCH_ROWS, or raise the limit"
        )
        alert = Alert(
            sender=monitor.name,
            rule="memory_limit",
            severity=Severity.WARNING,
            subject=f"pid {pid}",
            summary=summary,
            details={"rss_bytes": rss, "limit_bytes": self.limit_bytes, "agents": agents, "pid": pid},
        )
        self.alerts.raise_alert(alert)
