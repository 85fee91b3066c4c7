"""SLAs per pipeline (``sla:`` in the spec), evaluated by the monitor during and after runs.

Rules, each an alert with its own dedup key:
- ``run_failed``: a run ended failed (critical); ``run_partial``: a non-critical destination failed;
- ``sla_max_duration``: a run is still going past ``max_duration`` (fires while it
  runs), or finished later than it;
- ``sla_min_rows``: a successful run committed fewer than ``min_rows`` rows;
- ``sla_max_error_rate``: quarantined rows over rows read exceeded ``max_error_rate``;
- ``sla_freshness``: no successful run for longer than ``freshness`` (checked
  on ticks, from the store, for pipelines registered with serve).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent_orchestrated_etl.model.messages import Message
from agent_orchestrated_etl.model.vocabulary import Severity
from agent_orchestrated_etl.monitoring.alerts import Alert, AlertChannel, AlertManager
from agent_orchestrated_etl.monitoring.live import RunState
from agent_orchestrated_etl.spec import PipelineSpec

if TYPE_CHECKING:
    from agent_orchestrated_etl.agents.monitor_agent import MonitorAgent

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '1h30m', '2d' -> timedelta; a bare number is seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text))
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 1h30m, 2d)")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


@dataclass
class _Watched:
    spec: PipelineSpec
    channels: list[AlertChannel]
    since: datetime  # registration: freshness counts from here until a first success
    freshness: str
    checked: float = float("-inf")


@dataclass
class _Expected:
    spec: PipelineSpec
    channels: list[AlertChannel]
    overdue_sent: bool = False


class SlaWatcher:
    def __init__(
        self,
        alerts: AlertManager,
        last_success: Callable[[str], datetime | None],
        *,
        freshness_every: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.alerts = alerts
        self.last_success = last_success
        self.freshness_every = freshness_every
        self.clock = clock
        self._runs: dict[str, _Expected] = {}
        self._pipelines: dict[str, _Watched] = {}

    def channels_for(self, spec: PipelineSpec) -> list[AlertChannel]:
        if spec.alerts is None or spec.alerts.webhook is None:
            return []
        return [self.alerts.webhook(spec.alerts.webhook, slack=spec.alerts.slack)]

    def expect(self, run_id: str, spec: PipelineSpec) -> None:
        """Watch a run about to start; its spec says the SLA and where alerts go."""
        self._runs[run_id] = _Expected(spec, self.channels_for(spec))

    def watch_pipeline(self, spec: PipelineSpec, since: datetime) -> None:
        if spec.sla is not None and spec.sla.freshness:
            self._pipelines[spec.name] = _Watched(spec, self.channels_for(spec), since, spec.sla.freshness)
        else:
            self._pipelines.pop(spec.name, None)

    def forget_pipeline(self, name: str) -> None:
        self._pipelines.pop(name, None)

    def observe(self, message: Message, state: RunState | None) -> None:
        if message.kind != "run_finished" or state is None:
            return
        # A workflow's pipelines (run ids "<workflow run>.<pipeline>") end before it; those left never started.
        for never_started in [r for r in self._runs if r.startswith(f"{state.run_id}.")]:
            del self._runs[never_started]
        if state.run_id not in self._runs:
            return
        expected = self._runs.pop(state.run_id)
        for alert in self._after_run(state, expected.spec, overdue_sent=expected.overdue_sent):
            self.alerts.raise_alert(alert, extra_channels=expected.channels)

    def tick(self, monitor: MonitorAgent) -> None:
        now = self.clock()
        for run_id, expected in self._runs.items():
            state = monitor.runs.get(run_id)
            sla, limit = expected.spec.sla, _max_duration(expected.spec)
            if state is None or state.finished or sla is None or limit is None or expected.overdue_sent:
                continue
            if state.seconds(now) > limit.total_seconds():
                expected.overdue_sent = True
                alert = self._alert(
                    "sla_max_duration",
                    Severity.WARNING,
                    state,
                    f"run {run_id} of {state.pipeline} has been running for {_human(state.seconds(now))}, over its SLA"
                    f" of {sla.max_duration}",
                    {
                        "limit_seconds": limit.total_seconds(),
                        "seconds": round(state.seconds(now), 1),
                        "finished": False,
                    },
                )
                self.alerts.raise_alert(alert, extra_channels=expected.channels)
        mono = time.monotonic()
        for name, watched in self._pipelines.items():
            if mono - watched.checked < self.freshness_every:
                continue
            watched.checked = mono
            limit = parse_duration(watched.freshness)
            last = self.last_success(name)
            age = (now - (last or watched.since)).total_seconds()
            if age > limit.total_seconds():
                since = (
                    f"last success {last:%Y-%m-%d %H:%M:%S} UTC"
                    if last
                    else "no successful run since it was registered"
                )
                summary = (
                    f"pipeline {name} is stale: {since}, {_human(age)} ago, over its freshness SLA of"
                    f" {watched.freshness}"
                )
                alert = Alert(
                    sender="monitor",
                    rule="sla_freshness",
                    severity=Severity.WARNING,
                    pipeline=name,
                    summary=summary,
                    details={
                        "limit_seconds": limit.total_seconds(),
                        "age_seconds": round(age, 1),
                        "last_success": last.isoformat() if last else None,
                    },
                )
                self.alerts.raise_alert(alert, extra_channels=watched.channels)

    def _after_run(self, state: RunState, spec: PipelineSpec, *, overdue_sent: bool) -> list[Alert]:
        found: list[Alert] = []
        if state.status == "failed":
            found.append(
                self._alert(
                    "run_failed",
                    Severity.CRITICAL,
                    state,
                    f"run {state.run_id} of {state.pipeline} failed: {state.error}",
                    {"error": state.error},
                )
            )
        elif state.status == "partial":
            found.append(
                self._alert(
                    "run_partial",
                    Severity.WARNING,
                    state,
                    f"run {state.run_id} of {state.pipeline} finished partly: {state.error}",
                    {"error": state.error},
                )
            )
        sla = spec.sla
        if sla is None or state.status == "cancelled":
            return found
        seconds = state.seconds(self.clock())
        limit = _max_duration(spec)
        if limit is not None and seconds > limit.total_seconds() and not overdue_sent:
            found.append(
                self._alert(
                    "sla_max_duration",
                    Severity.WARNING,
                    state,
                    f"run {state.run_id} of {state.pipeline} took {_human(seconds)}, over its SLA of"
                    f" {sla.max_duration}",
                    {"limit_seconds": limit.total_seconds(), "seconds": round(seconds, 1), "finished": True},
                )
            )
        written = sum(c["rows"] for c in state.commits)
        if sla.min_rows is not None and state.status == "succeeded" and written < sla.min_rows:
            found.append(
                self._alert(
                    "sla_min_rows",
                    Severity.WARNING,
                    state,
                    f"run {state.run_id} of {state.pipeline} wrote {written:,} rows, fewer than its SLA minimum of"
                    f" {sla.min_rows:,}",
                    {"rows_written": written, "min_rows": sla.min_rows},
                )
            )
        read = state.source_rows
        quarantined = sum(c["quarantined_rows"] for c in state.commits)
        if sla.max_error_rate is not None and read:
            rate = quarantined / read
            if rate > sla.max_error_rate:
                found.append(
                    self._alert(
                        "sla_max_error_rate",
                        Severity.WARNING,
                        state,
                        f"run {state.run_id} of {state.pipeline} quarantined {quarantined:,} of {read:,} rows"
                        f" ({rate:.2%}), over its SLA of {sla.max_error_rate:.2%}",
                        {
                            "rows_read": read,
                            "rows_quarantined": quarantined,
                            "error_rate": round(rate, 6),
                            "max_error_rate": sla.max_error_rate,
                        },
                    )
                )
        return found

    @staticmethod
    def _alert(rule: str, severity: Severity, state: RunState, summary: str, details: dict[str, Any]) -> Alert:
        return Alert(
            sender="monitor",
            rule=rule,
            severity=severity,
            pipeline=state.pipeline,
            run_id=state.run_id,
            summary=summary,
            details=details,
        )


def _max_duration(spec: PipelineSpec) -> timedelta | None:
    return parse_duration(spec.sla.max_duration) if spec.sla is not None and spec.sla.max_duration else None


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
