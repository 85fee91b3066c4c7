"""Alerts: what the monitor tells people, through channels, without flooding them.

An ``Alert`` is a hub message on topic ``alerts`` (so the dashboard sees it
live) and a row in the store. ``AlertManager.raise_alert`` applies two
limits before anything is sent:
- deduplication: an alert with the same key (rule, pipeline, subject) as one
  sent less than ``dedup_seconds`` ago is counted, not sent; the next one sent
  after the window says how many were suppressed;
- a rate limit: at most ``max_per_minute`` alerts leave in any 60 seconds,
  whatever their key, so a storm of distinct alerts cannot flood a channel.
Delivery runs in background tasks: a slow webhook never holds up the monitor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from pydantic import Field

from agent_orchestrated_etl.agents.hub import Hub
from agent_orchestrated_etl.model.messages import Message
from agent_orchestrated_etl.model.vocabulary import Severity
from agent_orchestrated_etl.store.alerts import AlertStore

log = logging.getLogger(__name__)

Outcome = Literal["sent", "deduplicated", "rate_limited"]


class Alert(Message):
    kind: Literal["alert"] = "alert"
    rule: str
    severity: Severity
    summary: str
    pipeline: str | None = None
    run_id: str | None = None
    subject: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    suppressed: int = 0

    @property
    def topic(self) -> str:
        return "alerts"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.pipeline or "", self.subject)


class AlertChannel(Protocol):
    name: str

    async def send(self, alert: Alert) -> None:
        """Deliver one alert; raise on failure (the manager logs and counts it)."""


class LogChannel:
    name = "log"

    async def send(self, alert: Alert) -> None:
        level = logging.ERROR if alert.severity is Severity.CRITICAL else logging.WARNING
        log.log(level, "alert %s: %s", alert.rule, alert.summary)


class WebhookChannel:
    """A JSON POST of the alert; with ``slack=True`` the body is a Slack incoming-webhook message."""

    def __init__(self, url: str, *, slack: bool = False, timeout: float = 5.0) -> None:
        self.url = url
        self.slack = slack
        self.name = f"webhook:{url}"
        self.timeout = timeout

    def payload(self, alert: Alert) -> dict[str, Any]:
        if not self.slack:
            return alert.model_dump(mode="json")
        icon = ":red_circle:" if alert.severity is Severity.CRITICAL else ":warning:"
        repeats = f" ({alert.suppressed} similar alerts suppressed)" if alert.suppressed else ""
        where = f" · pipeline `{alert.pipeline}`" if alert.pipeline else ""
        run = f" · run `{alert.run_id}`" if alert.run_id else ""
        return {"text": f"{icon} *{alert.rule}*{where}{run}: {alert.summary}{repeats}"}

    async def send(self, alert: Alert) -> None:
        import aiohttp  # the HTTP sources' client: one HTTP client in the package

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout, raise_for_status=True) as session,
            session.post(self.url, json=self.payload(alert)),
        ):
            pass


class AlertManager:
    def __init__(
        self,
        hub: Hub,
        store: AlertStore | None = None,
        channels: Iterable[AlertChannel] = (),
        *,
        dedup_seconds: float = 600.0,
        max_per_minute: int = 20,
        clock: Callable[[], float] = time.monotonic,
        on_outcome: Callable[[Alert, Outcome], None] | None = None,
    ) -> None:
        self.hub = hub
        self.store = store
        self.channels = list(channels) or [LogChannel()]
        self.dedup_seconds = dedup_seconds
        self.max_per_minute = max_per_minute
        self.clock = clock
        self.on_outcome = on_outcome
        self.failures = 0
        self._last_sent: dict[tuple[str, str, str], float] = {}
        self._suppressed: dict[tuple[str, str, str], int] = {}
        self._recent: deque[float] = deque()
        self._webhooks: dict[tuple[str, bool], WebhookChannel] = {}
        self._deliveries: set[asyncio.Task[None]] = set()

    def webhook(self, url: str, *, slack: bool = False) -> WebhookChannel:
        """One channel object per URL, so a pipeline's alerts share it."""
        return self._webhooks.setdefault((url, slack), WebhookChannel(url, slack=slack))

    def raise_alert(self, alert: Alert, *, extra_channels: Iterable[AlertChannel] = ()) -> Outcome:
        now = self.clock()
        outcome = self._admit(alert.key, now)
        if self.on_outcome is not None:
            self.on_outcome(alert, outcome)
        if outcome != "sent":
            log.debug("alert %s %s: %s", alert.rule, outcome, alert.summary)
            return outcome
        suppressed = self._suppressed.pop(alert.key, 0)
        if suppressed:
            alert = alert.model_copy(update={"suppressed": suppressed})
        self.hub.publish(alert.topic, alert)
        channels = [*self.channels, *extra_channels]
        task = asyncio.get_running_loop().create_task(self._deliver(alert, channels), name=f"alert:{alert.id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return "sent"

    def _admit(self, key: tuple[str, str, str], now: float) -> Outcome:
        last = self._last_sent.get(key)
        if last is not None and now - last < self.dedup_seconds:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return "deduplicated"
        while self._recent and now - self._recent[0] >= 60.0:
            self._recent.popleft()
        if len(self._recent) >= self.max_per_minute:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return "rate_limited"
        self._recent.append(now)
        self._last_sent[key] = now
        return "sent"

    async def _deliver(self, alert: Alert, channels: list[AlertChannel]) -> None:
        if self.store is not None:
            record = {**alert.model_dump(mode="python", exclude={"kind", "sender"}), "at": alert.at}
            await asyncio.to_thread(self.store.add, record)
        for channel in channels:
            try:
                await channel.send(alert)
            except Exception as exc:  # a broken channel must not stop the others or the monitor
                self.failures += 1
                log.warning("alert %s not delivered to %s: %s: %s", alert.id, channel.name, type(exc).__name__, exc)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait for deliveries in flight, e.g. before shutting down."""
        if self._deliveries:
            await asyncio.wait(list(self._deliveries), timeout=timeout)
