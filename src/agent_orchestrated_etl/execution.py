"""Running one task: batches flow from a source (or the workspace) through checks into staging.

This is the hot path. It runs in a worker thread of the ETL agent that owns
the task, and only counts and progress leave it; the batches never touch the hub.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.base import Destination, Position, Source
from agent_orchestrated_etl.connectors.incremental import Tracker, Window
from agent_orchestrated_etl.connectors.registry import destination_class, source_class
from agent_orchestrated_etl.exceptions import AgentETLError, InternalError, ResourceExhaustedError
from agent_orchestrated_etl.plan import Task
from agent_orchestrated_etl.quality.checks import BatchChecker, QualityCheck
from agent_orchestrated_etl.spec import PipelineSpec
from agent_orchestrated_etl.transform.workspace import Workspace

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """The run was cancelled while this task was moving batches."""


@dataclass
class TaskOutcome:
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    bytes: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: What the incremental tracker saw (connectors/incremental.py), for the commit's new state.
    state: dict[str, Any] | None = None


class RunContext:
    """What the tasks of one run share: resolved spec, open sources, destinations and workspace."""

    def __init__(self, run_id: str, spec: PipelineSpec, settings: Settings, run_dir: Path) -> None:
        self.run_id = run_id
        self.spec = spec
        self.settings = settings
        self.run_dir = run_dir
        self.cancelled = threading.Event()
        self._stopped_tasks: set[str] = set()
        self.sources: dict[str, Source] = {
            name: source_class(s.type)(name, s, batch_rows=settings.batch_rows) for name, s in spec.sources.items()
        }
        self.destinations: list[Destination] = [
            destination_class(d.type)(d, memory_limit_bytes=settings.memory_limit_bytes) for d in spec.all_destinations
        ]
        self.tasks: dict[str, Task] = {}
        #: Incremental reports of finished tasks, by task id (see connectors/incremental.py).
        self.reports: dict[str, dict[str, Any] | None] = {}
        self._workspace: Workspace | None = None
        self._lock = threading.Lock()

    @property
    def workspace(self) -> Workspace:
        with self._lock:
            if self._workspace is None:
                self._workspace = Workspace(self.run_dir, memory_limit_bytes=self.settings.memory_limit_bytes)
            return self._workspace

    def should_stop(self, task_id: str) -> bool:
        return self.cancelled.is_set() or task_id in self._stopped_tasks

    def cancel_task(self, task_id: str) -> None:
        self._stopped_tasks.add(task_id)

    def uncancel_task(self, task_id: str) -> None:
        self._stopped_tasks.discard(task_id)

    def is_critical(self, task: Task) -> bool:
        """A task is critical unless every destination it feeds (directly or through the workspace) is not."""
        if task.destination is not None:
            return bool(self.spec.all_destinations[task.destination].critical)
        users = [t for t in self.tasks.values() if task.id in t.depends_on]
        return any(self.is_critical(t) for t in users) if users else True

    def workspace_exists(self) -> bool:
        return (self.run_dir / "workspace.duckdb").exists()

    def checks_for(self, input_name: str, *, feeds_destination: bool) -> list[QualityCheck]:
        """Checks naming this input, plus the unnamed ones on every stream into a destination."""
        return [c for c in self.spec.quality if c.input == input_name or (c.input is None and feeds_destination)]

    def close(self) -> None:
        for dest in self.destinations:
            dest.close()
        if self._workspace is not None:
            self._workspace.close()


def execute_task(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    """Run one task to the end of its staging; raises AgentETLError subclasses on failure."""
    started = time.perf_counter()
    try:
        if task.kind == "extract_load":
            outcome = _extract_load(ctx, task, progress)
        elif task.kind == "stage":
            outcome = _stage(ctx, task, progress)
        elif task.kind == "pushdown":
            outcome = _pushdown(ctx, task, progress)
        else:
            outcome = _transform_load(ctx, task, progress)
    except (AgentETLError, Cancelled):
        raise
    except (MemoryError, pa.ArrowMemoryError) as exc:
        raise ResourceExhaustedError(f"out of memory: {exc}", where=f"task {task.id}", hint="lower AGENT_ETL_BATCH_ROWS or raise AGENT_ETL_MEMORY_LIMIT") from exc
    except Exception as exc:  # anything else is our bug; name the task so it can be reported
        raise InternalError(f"{type(exc).__name__}: {exc}", where=f"task {task.id}", hint="this is a bug in agent-etl; please report it with the run id") from exc
    outcome.seconds = time.perf_counter() - started
    return outcome


def _move(ctx: RunContext, task: Task, batches: Iterator[tuple[pa.RecordBatch, Position]], checker: BatchChecker, write: Callable[[pa.RecordBatch], None], quarantine: Callable[[pa.RecordBatch], None], progress: Progress) -> TaskOutcome:
    outcome = TaskOutcome()
    for batch, position in batches:
        if ctx.should_stop(task.id):
            raise Cancelled(task.id)
        good, bad = checker.apply(batch, position)
        if good.num_rows:
            write(good)
            outcome.bytes_written += good.nbytes
        if bad is not None:
            quarantine(bad)
            outcome.rows_quarantined += bad.num_rows
        outcome.rows_read += batch.num_rows
        outcome.rows_written += good.num_rows
        outcome.bytes += batch.nbytes
        progress(batch.num_rows, batch.nbytes)
    return outcome


def _rejected_by_reader(source: Source, checker: BatchChecker, quarantine: Callable[[pa.RecordBatch], None], outcome: TaskOutcome) -> None:
    rejected = list(source.quarantined())
    if rejected:
        quarantine(checker.quarantine_rows(rejected, check_name="parse"))
        outcome.rows_quarantined += len(rejected)


def _extract_load(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    assert task.source is not None and task.partition is not None and task.destination is not None
    source = _source(ctx, task)
    dest = ctx.destinations[task.destination]
    checker = BatchChecker(ctx.checks_for(task.source, feeds_destination=True), ctx.run_id, task.id)
    dest.begin(ctx.run_id, task.id)

    def write(batch: pa.RecordBatch) -> None:
        dest.write_batch(ctx.run_id, task.id, batch)

    def quarantine(rows: pa.RecordBatch) -> None:
        dest.write_quarantine(ctx.run_id, task.id, rows)

    batches, tracker = _windowed(source, task)
    outcome = _move(ctx, task, batches, checker, write, quarantine, progress)
    _rejected_by_reader(source, checker, quarantine, outcome)
    dest.finish(ctx.run_id, task.id)
    outcome.checks = [r.as_dict() for r in checker.results]
    outcome.state = tracker.report() if tracker else None
    return outcome


def _source(ctx: RunContext, task: Task) -> Source:
    """The run's source, or a copy reading smaller batches when a recovery asked for them."""
    assert task.source is not None
    source = ctx.sources[task.source]
    if task.batch_rows is None:
        return source
    return type(source)(source.name, source.spec, batch_rows=task.batch_rows)


def _located(source: Source, task: Task) -> Iterator[tuple[pa.RecordBatch, Position]]:
    assert task.partition is not None
    try:
        yield from source.read(task.partition)
    except AgentETLError as exc:
        raise exc.at(f"task {task.id}") if not (exc.where or "").startswith("source") else exc


def _windowed(source: Source, task: Task) -> tuple[Iterator[tuple[pa.RecordBatch, Position]], Tracker | None]:
    """The task's batches, through its incremental window when the partition carries one."""
    assert task.partition is not None
    window = task.partition.options.get("window")
    if window is None:
        return _located(source, task), None
    tracker = Tracker(Window.from_dict(window), where=f"source {task.source}")
    return tracker.apply(_located(source, task)), tracker


def _stage(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    assert task.source is not None
    source = _source(ctx, task)
    workspace = ctx.workspace
    table = _workspace_table(task)
    workspace.begin(table)
    workspace.begin(f"{table}__quarantine")
    checker = BatchChecker(ctx.checks_for(task.source, feeds_destination=False), ctx.run_id, task.id)

    def write(batch: pa.RecordBatch) -> None:
        workspace.append(table, batch)

    def quarantine(rows: pa.RecordBatch) -> None:
        workspace.append(f"{table}__quarantine", rows)

    batches, tracker = _windowed(source, task)
    outcome = _move(ctx, task, batches, checker, write, quarantine, progress)
    _rejected_by_reader(source, checker, quarantine, outcome)
    workspace.finish(table)
    workspace.finish(f"{table}__quarantine")
    outcome.checks = [r.as_dict() for r in checker.results]
    outcome.state = tracker.report() if tracker else None
    return outcome


def _pushdown(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    assert task.source is not None and task.partition is not None and task.destination is not None
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    rows = dest.pull(ctx.run_id, task.id, ctx.sources[task.source], task.partition)
    progress(rows, 0)
    return TaskOutcome(rows_read=rows, rows_written=rows)


def _workspace_table(task: Task) -> str:
    return "_stage_" + re.sub(r"[^A-Za-z0-9_]", "_", task.id)


def _transform_load(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    assert task.transform is not None and task.destination is not None
    workspace = ctx.workspace
    staged_by_source: dict[str, list[str]] = {}
    for dep in (ctx.tasks[d] for d in task.depends_on):
        assert dep.source is not None
        staged_by_source.setdefault(dep.source, []).append(_workspace_table(dep))
    for name, parts in staged_by_source.items():
        workspace.union_partitions(name, parts)
    for transform in ctx.spec.transforms:
        workspace.define(transform.name, transform.sql)
        if transform.name == task.transform:
            break
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    checker = BatchChecker(ctx.checks_for(task.transform, feeds_destination=True), ctx.run_id, task.id)

    def write(batch: pa.RecordBatch) -> None:
        dest.write_batch(ctx.run_id, task.id, batch)

    def quarantine(rows: pa.RecordBatch) -> None:
        dest.write_quarantine(ctx.run_id, task.id, rows)

    # Rows the upstream stage tasks rejected belong next to this destination too.
    for parts in staged_by_source.values():
        for part in parts:
            for batch in workspace.stream_if_exists(f"{part}__quarantine", ctx.settings.batch_rows):
                quarantine(batch)
    origin = Position(origin=f"transform {task.transform}")
    batches = ((batch, origin) for batch in workspace.stream(task.transform, task.batch_rows or ctx.settings.batch_rows))
    outcome = _move(ctx, task, batches, checker, write, quarantine, progress)
    dest.finish(ctx.run_id, task.id)
    outcome.checks = [r.as_dict() for r in checker.results]
    return outcome
