"""Cron schedules with a chosen clock: due times, overlap (skip, queue) and runs missed while down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent_orchestrated_etl.monitoring.schedules import Scheduler, check_cron
from agent_orchestrated_etl.spec import ScheduleSpec

T0 = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)


class Fake:
    def __init__(self) -> None:
        self.now = T0
        self.started: list[tuple[str, datetime]] = []
        self.running: set[str] = set()
        self.fired: dict[str, datetime] = {}

    async def start(self, name: str, trigger: str) -> str:
        assert trigger == "schedule"
        self.started.append((name, self.now))
        self.running.add(name)
        return f"run-{len(self.started)}"

    def scheduler(self) -> Scheduler:
        return Scheduler(self.start, lambda name: name in self.running, self.fired.__setitem__, clock=lambda: self.now)


async def test_runs_when_due_and_skips_while_still_running() -> None:
    fake = Fake()
    scheduler = fake.scheduler()
    scheduler.set("p", "*/5 * * * *", last_fire=None)
    assert scheduler.next_due("p") == datetime(2026, 11, 25, 12, 5, tzinfo=UTC)
    await scheduler.tick(T0 + timedelta(minutes=4))
    assert fake.started == []
    fake.now = T0 + timedelta(minutes=5)
    await scheduler.tick(fake.now)
    fake.now = T0 + timedelta(minutes=10)
    await scheduler.tick(fake.now)  # the first run is still going: skipped
    assert [at.minute for _, at in fake.started] == [5]
    assert fake.fired["p"] == datetime(2026, 11, 25, 12, 10, tzinfo=UTC)
    fake.running.clear()
    await scheduler.run_finished("p")
    assert len(fake.started) == 1, "nothing was queued with overlap: skip"


async def test_queue_starts_one_run_after_the_current_one() -> None:
    fake = Fake()
    scheduler = fake.scheduler()
    scheduler.set("p", ScheduleSpec(cron="* * * * *", overlap="queue"), last_fire=None)
    for minute in (1, 2, 3):
        fake.now = T0 + timedelta(minutes=minute)
        await scheduler.tick(fake.now)
    assert len(fake.started) == 1 and scheduler.queued == {"p"}
    fake.running.clear()
    await scheduler.run_finished("p")
    assert len(fake.started) == 2 and scheduler.queued == set()


async def test_missed_runs_while_down_run_once_or_are_skipped() -> None:
    fake = Fake()
    scheduler = fake.scheduler()
    last = T0 - timedelta(hours=2)  # 24 five-minute slots ago
    scheduler.set("once", ScheduleSpec(cron="*/5 * * * *", missed="run_once"), last_fire=last)
    scheduler.set("skip", ScheduleSpec(cron="*/5 * * * *", missed="skip"), last_fire=last)
    scheduler.set("new", "*/5 * * * *", last_fire=None)
    await scheduler.tick(T0)
    assert fake.started == [("once", T0)]
    assert fake.fired == {
        "once": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        "skip": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    }


def test_cron_checks() -> None:
    assert check_cron("*/15 * * * *") is None
    assert check_cron("61 * * * *") == "'61 * * * *' is not a valid cron expression"
    assert (
        check_cron("@hourly")
        == "'@hourly' is not a five-field cron expression (minute hour day month weekday), e.g. '*/15 * * * *'"
    )


async def test_a_pipeline_that_cannot_start_does_not_stop_the_others() -> None:
    fake = Fake()

    async def start(name: str, trigger: str) -> str:
        if name == "broken":
            raise LookupError("gone")
        return await fake.start(name, trigger)

    scheduler = Scheduler(start, lambda name: False, fake.fired.__setitem__, clock=lambda: fake.now)
    scheduler.set("broken", "*/5 * * * *", last_fire=None)
    scheduler.set("fine", "*/5 * * * *", last_fire=None)
    fake.now = T0 + timedelta(minutes=5)
    await scheduler.tick(fake.now)
    assert [name for name, _ in fake.started] == ["fine"]
