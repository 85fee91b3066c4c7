"""Cron schedules for pipelines registered with ``agent-etl serve`` (croniter).

Policies, per pipeline (``schedule: {cron, overlap, missed}``; times are UTC):
- overlap: when a run of the pipeline is still going at a due time, ``skip``
  drops that time; ``queue`` starts one run as soon as the current one ends
  (several due times while it runs still make one queued run);
- missed: due times that passed while serve was down are measured from the
  last time the scheduler acted on (kept in the store); ``run_once`` starts one
  run at start-up for all of them, ``skip`` logs them and waits for the next.
A pipeline newly registered has missed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent_orchestrated_etl.exceptions import MissingDependencyError
from agent_orchestrated_etl.spec import ScheduleSpec

log = logging.getLogger(__name__)

# Sleep at most this long between checks, so a changed clock or a missed wake-up costs little.
MAX_SLEEP_SECONDS = 60.0
MISSED_COUNT_CAP = 10_000


def _croniter():
    try:
        from croniter import croniter
    except ImportError:
        raise MissingDependencyError("schedules", "server") from None
    return croniter


def as_schedule(value: str | ScheduleSpec) -> ScheduleSpec:
    return ScheduleSpec(cron=value) if isinstance(value, str) else value


def check_cron(expression: str) -> str | None:
    """None when the expression is valid, else what is wrong with it."""
    croniter = _croniter()
    if len(expression.split()) != 5:
        return (
            f"{expression!r} is not a five-field cron expression (minute hour day month weekday), e.g. '*/15 * * * *'"
        )
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def next_time(cron: str, after: datetime) -> datetime:
    return _croniter()(cron, after).get_next(datetime)


@dataclass
class _Entry:
    name: str
    schedule: ScheduleSpec
    next_due: datetime


class Scheduler:
    def __init__(
        self,
        start: Callable[[str, str], Awaitable[object]],
        is_running: Callable[[str], bool],
        mark_fired: Callable[[str, datetime], None],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.start = start
        self.is_running = is_running
        self.mark_fired = mark_fired
        self.clock = clock
        self.entries: dict[str, _Entry] = {}
        self.queued: set[str] = set()
        self._due_now: list[tuple[str, datetime]] = []
        self._changed = asyncio.Event()

    def set(self, name: str, schedule: str | ScheduleSpec, last_fire: datetime | None) -> None:
        """Add or replace a pipeline's schedule, applying the missed-runs policy from ``last_fire``."""
        spec = as_schedule(schedule)
        now = self.clock()
        croniter = _croniter()
        self.entries[name] = _Entry(name, spec, next_time(spec.cron, now))
        if last_fire is not None:
            previous = croniter(spec.cron, now).get_prev(datetime)
            if previous > last_fire:
                missed = self._count_missed(spec.cron, last_fire, now)
                if spec.missed == "run_once":
                    log.info(
                        "pipeline %s missed %d scheduled run(s) while serve was down; running once now", name, missed
                    )
                    self._due_now.append((name, previous))
                else:
                    log.info(
                        "pipeline %s missed %d scheduled run(s) while serve was down; skipping them (missed: skip)",
                        name,
                        missed,
                    )
                self.mark_fired(name, previous)
        self._changed.set()

    def remove(self, name: str) -> None:
        self.entries.pop(name, None)
        self.queued.discard(name)
        self._changed.set()

    def next_due(self, name: str) -> datetime | None:
        entry = self.entries.get(name)
        return entry.next_due if entry else None

    async def run_finished(self, name: str) -> None:
        """Called when a run of the pipeline ends: start the queued one, if any."""
        if name in self.queued and name in self.entries and not self.is_running(name):
            self.queued.discard(name)
            log.info("pipeline %s: starting the run queued behind the one that just ended", name)
            await self.start(name, "schedule")

    async def run(self) -> None:
        """Fire due schedules until cancelled."""
        while True:
            now = self.clock()
            await self.tick(now)
            waits = [(e.next_due - now).total_seconds() for e in self.entries.values()]
            timeout = max(0.0, min([MAX_SLEEP_SECONDS, *waits]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
            self._changed.clear()

    async def tick(self, now: datetime) -> None:
        """Fire what is due at ``now``; tests call it with a chosen clock."""
        while self._due_now:
            await self._fire(*self._due_now.pop(0))
        for entry in list(self.entries.values()):
            if entry.next_due <= now:
                due = entry.next_due
                # A due time long past (a suspended machine) fires once, not once per missed slot.
                entry.next_due = next_time(entry.schedule.cron, now)
                await self._fire(entry.name, due)

    async def _fire(self, name: str, due: datetime) -> None:
        entry = self.entries.get(name)
        if entry is None:
            return
        self.mark_fired(name, due)
        if self.is_running(name):
            if entry.schedule.overlap == "queue":
                self.queued.add(name)
                log.info("pipeline %s is due at %s but still running; queued one run after it", name, f"{due:%H:%M}")
            else:
                log.info("pipeline %s is due at %s but still running; skipped (overlap: skip)", name, f"{due:%H:%M}")
            return
        try:
            await self.start(name, "schedule")
        except Exception:  # one pipeline that cannot start must not stop the others' schedules
            log.exception("pipeline %s: the scheduled run at %s could not start", name, f"{due:%Y-%m-%d %H:%M}")

    @staticmethod
    def _count_missed(cron: str, since: datetime, now: datetime) -> int:
        it = _croniter()(cron, since)
        count = 0
        while count < MISSED_COUNT_CAP and it.get_next(datetime) <= now:
            count += 1
        return count
