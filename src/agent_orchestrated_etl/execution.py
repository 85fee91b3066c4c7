"""Running one task: batches flow from a source (or the workspace) through checks into staging.

This is the hot path. It runs in a worker thread of the ETL agent that owns
the task, and only counts and progress leave it; the batches never touch the hub.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.base import Destination, Partition, Position, Source
from agent_orchestrated_etl.connectors.duckdb.destination import DuckDBDestination
from agent_orchestrated_etl.connectors.incremental import Tracker, Window
from agent_orchestrated_etl.connectors.registry import destination_class, source_class
from agent_orchestrated_etl.exceptions import AgentETLError, InternalError, ResourceExhaustedError, from_os_error
from agent_orchestrated_etl.model.outcome import TaskOutcome
from agent_orchestrated_etl.planning.expansion import expand
from agent_orchestrated_etl.planning.plan import destination_label
from agent_orchestrated_etl.planning.routing import checks_at
from agent_orchestrated_etl.planning.tasks import PlannedDecision, Task
from agent_orchestrated_etl.quality.checks import Check
from agent_orchestrated_etl.quality.engine import check_staged
from agent_orchestrated_etl.quality.evaluate import rejected_rows, visible
from agent_orchestrated_etl.quality.verdicts import judged
from agent_orchestrated_etl.spec import PipelineSpec
from agent_orchestrated_etl.transform.chain import Point, StreamChain
from agent_orchestrated_etl.transform.context import TaskContext
from agent_orchestrated_etl.transform.graph import WorkspaceGraph
from agent_orchestrated_etl.transform.query import stage
from agent_orchestrated_etl.transform.rows import Numbering, Origins
from agent_orchestrated_etl.transform.sql import ROW
from agent_orchestrated_etl.transform.workspace import Workspace

Progress = Callable[..., None]  # (rows, bytes) read since the last call, and optionally a note: what the task waits for


class Cancelled(Exception):
    """The run was cancelled while this task was moving batches."""


class RunContext:
    """What the tasks of one run share: resolved spec, open sources, destinations and workspace."""

    def __init__(self, run_id: str, spec: PipelineSpec, settings: Settings, run_dir: Path) -> None:
        self.run_id = run_id
        self.settings = settings
        self.run_dir = run_dir
        self.cancelled = threading.Event()
        self._stopped_tasks: set[str] = set()
        self._open(spec)
        self.tasks: dict[str, Task] = {}
        #: Incremental reports of finished tasks, by task id (see connectors/incremental.py).
        self.reports: dict[str, dict[str, Any] | None] = {}
        #: Positions of the rows staged in the workspace, by their ordinals.
        self.origins = Origins()
        self._workspace: Workspace | None = None
        self._lock = threading.Lock()

    def _open(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.sources: dict[str, Source] = {
            name: source_class(s.type)(name, s, batch_rows=self.settings.batch_rows) for name, s in spec.sources.items()
        }
        self.destinations: list[Destination] = [
            destination_class(d.type)(d, memory_limit_bytes=self.settings.memory_limit_bytes)
            for d in spec.all_destinations
        ]

    def expand(self, planned: dict[str, list[str]] | None = None) -> list[PlannedDecision]:
        """Give each table of a multi-table source its own source and destinations (planning/expansion.py).

        Called before planning (and before discarding a run's staging), or with the
        tables of a resumed run's first plan; returns the decisions it made.
        """
        spec, decisions = expand(self.spec, planned)
        if decisions:
            for dest in self.destinations:
                dest.close()
            self._open(spec)
        return decisions

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

    def reader(self, task: Task | None, name: str | None = None) -> Source:
        """A Source of the task's own: a source keeps per-read state (the rows its reader
        rejected), which tasks reading it at once must not share. It reads smaller
        batches when a recovery asked for them. No task: a tool's read of source ``name``."""
        name = name or (task.source if task else None) or ""
        spec = self.spec.sources[name]
        return source_class(spec.type)(name, spec, batch_rows=(task and task.batch_rows) or self.settings.batch_rows)

    def checks_for(self, name: str, *, final: bool) -> list[tuple[int, Check]]:
        """Checks evaluated where data is called ``name``; ``final`` adds the unnamed ones (a destination's input)."""
        return checks_at(self.spec.quality, name, final=final)

    def task_context(
        self,
        task: Task,
        workspace: Workspace,
        locate: Callable[[int | None], Position | None],
        quarantine: Callable[[pa.RecordBatch], None],
    ) -> TaskContext:
        """What a transform chain or graph needs of ``task``; its check results belong to its destination, or the workspace."""
        scope = destination_label(self.spec, task.destination) if task.destination is not None else "workspace"
        return TaskContext(
            workspace, self.run_id, task.id, scope, task.batch_rows or self.settings.batch_rows, locate, quarantine
        )

    def close(self) -> None:
        for dest in self.destinations:
            dest.close()
        if self._workspace is not None:
            self._workspace.close()


def execute_task(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    """Run one task to the end of its staging; raises AgentETLError subclasses on failure."""
    started = time.perf_counter()
    try:
        if task.set_aside is not None:
            outcome = _set_aside(ctx, task)
        elif task.kind == "extract_load":
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
        raise ResourceExhaustedError(
            f"out of memory: {exc}",
            where=f"task {task.id}",
            hint="lower AGENT_ETL_BATCH_ROWS or raise AGENT_ETL_MEMORY_LIMIT",
        ) from exc
    except Exception as exc:  # anything else is our bug; name the task so it can be reported
        # A write or read no connector wrapped that the user fixes: permissions, a read-only or full disk.
        if isinstance(exc, OSError) and (mapped := from_os_error(exc, where=f"task {task.id}")) is not None:
            raise mapped from exc
        raise InternalError(
            f"{type(exc).__name__}: {exc}",
            where=f"task {task.id}",
            hint="this is a bug in agent-etl; please report it with the run id",
        ) from exc
    outcome.seconds = time.perf_counter() - started
    return outcome


def _extract_load(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    """One partition of a source, through streaming transforms and checks, into a destination."""
    assert task.source is not None and task.partition is not None and task.destination is not None
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    outcome = TaskOutcome()
    points = _points(ctx, task.source, task.transform)
    origins = Origins()
    source, rejected = ctx.reader(task), list[Any]()
    # Numbered always: a row the destination cannot store (a value over its limit, a NUL in
    # PostgreSQL text) is quarantined with its origin.
    batches = _read(
        ctx, task, source, [task.partition], Numbering(origins), outcome, progress, numbered=True, rejected=rejected
    )
    if task.engine_checks:
        _stage_then_check(ctx, task, dest, points, batches, origins, outcome)
    elif task.transform is None and not any(p.checks for p in points):
        for batch in batches:
            _write(ctx, task, dest, batch, outcome, origins.locate)
    else:
        _through_chain(ctx, task, dest, points, batches, origins, outcome)
    _rejected_by_reader(ctx, task, rejected, lambda rows: dest.write_quarantine(ctx.run_id, task.id, rows), outcome)
    dest.finish(ctx.run_id, task.id)
    return outcome


def _set_aside(ctx: RunContext, task: Task) -> TaskOutcome:
    """A partition the orchestrator gave up reading: one quarantine entry names it and why.

    Its rows cannot be quarantined one by one (they cannot be read), so the
    entry holds the partition's bounds, enough to find the rows in the source.
    """
    assert task.partition is not None and task.destination is not None
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    bounds = {
        "source": task.source,
        "partition": task.partition.key,
        **({"range": task.partition.options["range"]} if "range" in task.partition.options else {}),
    }
    entry = (bounds, task.set_aside or "", Position(origin=task.partition.description))
    dest.write_quarantine(
        ctx.run_id, task.id, rejected_rows([entry], run_id=ctx.run_id, task_id=task.id, check_name="unreadable")
    )
    dest.finish(ctx.run_id, task.id)
    return TaskOutcome(rows_quarantined=1)


def _points(ctx: RunContext, source: str, target: str | None) -> list[Point]:
    """The named places from a source to ``target`` along a chain of single-input transforms."""
    transforms = {t.name: (i, t) for i, t in enumerate(ctx.spec.transforms)}
    names = [target or source]
    while names[0] != source:
        names.insert(0, transforms[names[0]][1].input or "")
    last = names[-1]
    return [
        Point(
            name,
            transforms[name][1] if name in transforms else None,
            transforms[name][0] if name in transforms else -1,
            ctx.checks_for(name, final=name == last),
        )
        for name in names
    ]


def _read(
    ctx: RunContext,
    task: Task,
    source: Source,
    partitions: list[Partition],
    numbering: Numbering,
    outcome: TaskOutcome,
    progress: Progress,
    *,
    numbered: bool,
    rejected: list[Any],
) -> Iterator[pa.RecordBatch]:
    """The source's batches (through the incremental window, when the partitions carry one),
    counted, with a row ordinal column when something may quarantine rows."""
    window = partitions[0].options.get("window") if partitions else None
    tracker = Tracker(Window.from_dict(window), where=f"source {source.name}") if window is not None else None

    source.notice = lambda note: progress(0, 0, note)

    def located() -> Iterator[tuple[pa.RecordBatch, Position]]:
        for partition in partitions:
            try:
                read = source.read(partition)
                for batch, position in tracker.apply(read) if tracker else read:
                    if ctx.should_stop(task.id):
                        raise Cancelled(task.id)
                    outcome.rows_read += batch.num_rows
                    outcome.bytes += batch.nbytes
                    progress(batch.num_rows, batch.nbytes)
                    yield batch, position
            except AgentETLError as exc:
                if not (exc.where or "").startswith("source"):
                    exc.at(f"task {task.id}")
                raise
            # A source may keep rejected rows per thread, and DuckDB may be the one pulling
            # these batches, on its threads: collect them here, in the thread that read them.
            rejected.extend(source.quarantined())

    def reported() -> Iterator[tuple[pa.RecordBatch, Position]]:
        yield from located()
        outcome.state = tracker.report() if tracker else None

    if numbered:
        return numbering.number(reported())
    return (batch for batch, _ in reported())


def _peek(batches: Iterator[pa.RecordBatch]) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    first = next(batches, None)
    if first is None:
        return None, iter(())

    def again() -> Iterator[pa.RecordBatch]:
        yield first
        yield from batches

    return first.schema, again()


def _through_chain(
    ctx: RunContext,
    task: Task,
    dest: Destination,
    points: list[Point],
    batches: Iterator[pa.RecordBatch],
    origins: Origins,
    outcome: TaskOutcome,
) -> None:
    def quarantine(rows: pa.RecordBatch) -> None:
        dest.write_quarantine(ctx.run_id, task.id, rows)

    chain = StreamChain(ctx.task_context(task, ctx.workspace, origins.locate, quarantine), points)
    try:
        schema, batches = _peek(batches)
        if schema is not None:
            for batch in chain.run(schema, batches):
                _write(ctx, task, dest, batch, outcome, origins.locate)
        else:
            chain.no_rows(points, f"task {task.id}")
        outcome.rows_quarantined += chain.rows_quarantined
        outcome.checks = chain.results()
    finally:
        chain.close()


def _write(
    ctx: RunContext,
    task: Task,
    dest: Destination,
    numbered: pa.RecordBatch,
    outcome: TaskOutcome,
    locate: Callable[[int | None], Position | None],
    *,
    keep_row: bool = False,
) -> None:
    """Write a batch (with its ROW column, if any); rows the destination cannot store go to quarantine with their position.

    ``keep_row`` stages the ROW column too, for checks evaluated over the staged rows.
    """
    numbered = _within_limit(ctx, task, dest, numbered, outcome, locate)
    batch = visible(numbered)
    reasons = dest.unstorable(batch) if batch.num_rows else None
    if reasons is not None:
        keep = pa.array([r is None for r in reasons])
        ordinals = numbered.column(ROW).to_pylist() if ROW in numbered.schema.names else [None] * batch.num_rows
        refused = [
            (row, reason, locate(ordinal) or Position(origin=f"task {task.id}"))
            for row, reason, ordinal in zip(batch.to_pylist(), reasons, ordinals, strict=True)
            if reason is not None
        ]
        dest.write_quarantine(
            ctx.run_id, task.id, rejected_rows(refused, run_id=ctx.run_id, task_id=task.id, check_name="destination")
        )
        outcome.rows_quarantined += len(refused)
        batch, numbered = batch.filter(keep), numbered.filter(keep)
    if batch.num_rows:
        dest.write_batch(ctx.run_id, task.id, numbered if keep_row else batch)
        outcome.rows_written += batch.num_rows
        outcome.bytes_written += batch.nbytes


def _within_limit(
    ctx: RunContext,
    task: Task,
    dest: Destination,
    batch: pa.RecordBatch,
    outcome: TaskOutcome,
    locate: Callable[[int | None], Position | None] | None,
) -> pa.RecordBatch:
    """The batch less its rows with a text or binary value over the destination's limit, which go to quarantine."""
    limit, why = dest.value_limit()
    sizes: dict[str, pa.Array] = {}
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if (
            pa.types.is_string(field.type)
            or pa.types.is_large_string(field.type)
            or pa.types.is_binary(field.type)
            or pa.types.is_large_binary(field.type)
        ):
            lengths = pc.binary_length(column)
            if (pc.max(lengths).as_py() or 0) > limit:
                sizes[field.name] = lengths
    if not sizes:
        return batch
    over = pc.fill_null(functools.reduce(pc.or_, (pc.greater(lengths, limit) for lengths in sizes.values())), False)
    rejected = batch.filter(over)
    ordinals = rejected.column(ROW).to_pylist() if ROW in rejected.schema.names else [None] * rejected.num_rows
    big = {name: pc.filter(lengths, over).to_pylist() for name, lengths in sizes.items()}
    # The big values stay out of the entry (it would not fit the destination either): their size stands in.
    rows = visible(rejected.drop_columns(list(sizes))).to_pylist()
    entries = []
    for i, row in enumerate(rows):
        too_big = {name: size[i] for name, size in big.items() if size[i] is not None and size[i] > limit}
        row.update({name: f"<{size:,} bytes>" for name, size in too_big.items()})
        reason = "; ".join(
            f"column {name} holds {size:,} bytes, over this destination's limit of {limit:,} bytes ({why})"
            for name, size in too_big.items()
        )
        position = locate(ordinals[i]) if locate is not None else None
        entries.append((row, reason, position or Position(f"task {task.id}")))
    dest.write_quarantine(
        ctx.run_id, task.id, rejected_rows(entries, run_id=ctx.run_id, task_id=task.id, check_name="value_size")
    )
    outcome.rows_quarantined += len(entries)
    return batch.filter(pc.invert(over))


def _rejected_by_reader(
    ctx: RunContext, task: Task, rejected: list[Any], quarantine: Callable[[pa.RecordBatch], None], outcome: TaskOutcome
) -> None:
    if rejected:
        quarantine(rejected_rows(rejected, run_id=ctx.run_id, task_id=task.id, check_name="parse"))
        outcome.rows_quarantined += len(rejected)


def _stage(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    """One partition of a source, through its row checks, into a workspace table."""
    assert task.source is not None and task.partition is not None
    workspace = ctx.workspace
    table = _workspace_table(task)
    workspace.drop(table, f"{table}__quarantine")
    outcome = TaskOutcome()
    # Row checks run here, per partition; checks comparing rows run where all partitions meet.
    checks = [(i, c) for i, c in ctx.checks_for(task.source, final=False) if c.level != "all_rows"]
    point = Point(task.source, None, -1, checks)
    stage_tasks = sorted(t.id for t in ctx.tasks.values() if t.kind == "stage")
    numbering = Numbering(ctx.origins, partition=stage_tasks.index(task.id) if task.id in stage_tasks else 0)
    source, rejected = ctx.reader(task), list[Any]()
    batches = _read(ctx, task, source, [task.partition], numbering, outcome, progress, numbered=True, rejected=rejected)

    def quarantine(rows: pa.RecordBatch) -> None:
        workspace.append(f"{table}__quarantine", rows)

    chain = StreamChain(ctx.task_context(task, workspace, ctx.origins.locate, quarantine), [point])
    try:
        schema, batches = _peek(batches)
        if schema is not None:
            out_schema, out = _peek(chain.run(schema, batches))
            if out_schema is not None:
                outcome.rows_written = stage(workspace, table, out_schema, out, where=f"task {task.id}")
        outcome.rows_quarantined = chain.rows_quarantined
        outcome.checks = chain.results()
    finally:
        chain.close()
    _rejected_by_reader(ctx, task, rejected, quarantine, outcome)
    return outcome


def _pushdown(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    assert task.source is not None and task.partition is not None and task.destination is not None
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    source = ctx.sources[task.source]
    if not task.engine_checks:
        rows = dest.pull(ctx.run_id, task.id, source, task.partition, progress)
        return TaskOutcome(rows_read=rows, rows_written=rows)
    assert isinstance(dest, DuckDBDestination), "the planner checks in the engine only for DuckDB"
    # In source order, so "an earlier row" of a unique check and a row's number mean what they do on the Arrow path.
    rows = dest.pull(ctx.run_id, task.id, source, task.partition, progress, keep_order=True)
    outcome = TaskOutcome(rows_read=rows)
    points = _points(ctx, task.source, None)
    origin = task.partition.description

    def locate(ordinal: int | None) -> Position | None:
        return None if ordinal is None else Position(origin, row=ordinal + 1)

    if rows:
        _engine_checks(ctx, task, dest, points, locate, ordinal=None, outcome=outcome)
    else:
        _through_chain(ctx, task, dest, points, iter(()), Origins(), outcome)
    return outcome


def _workspace_table(task: Task) -> str:
    return "_stage_" + re.sub(r"[^A-Za-z0-9_]", "_", task.id)


def _transform_load(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    assert task.transform is not None and task.destination is not None
    if task.source is not None:
        return _single(ctx, task, progress)
    workspace = ctx.workspace
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    outcome = TaskOutcome()
    staged: dict[str, list[str]] = {}
    for dep in (ctx.tasks[d] for d in task.depends_on):
        assert dep.source is not None
        staged.setdefault(dep.source, []).append(_workspace_table(dep))

    def quarantine(rows: pa.RecordBatch) -> None:
        dest.write_quarantine(ctx.run_id, task.id, rows)

    # Rows the upstream stage tasks rejected belong next to this destination too.
    for parts in staged.values():
        for part in parts:
            for batch in workspace.stream_if_exists(f"{part}__quarantine", ctx.settings.batch_rows):
                quarantine(batch)
                outcome.rows_quarantined += batch.num_rows

    def checks_here(name: str) -> list[tuple[int, Check]]:
        # Stage tasks ran the sources' row checks already.
        return [(i, c) for i, c in ctx.checks_for(name, final=False) if name not in staged or c.level == "all_rows"]

    graph = WorkspaceGraph(
        ctx.task_context(task, workspace, ctx.origins.locate, quarantine),
        staged=staged,
        transforms=ctx.spec.transforms,
        checks_at=checks_here,
    )
    try:
        target = task.transform
        rel = graph.relation(target, final=True)
        final = [
            (i, c)
            for i, c in ctx.checks_for(target, final=True)
            if target not in staged or c.level == "all_rows" or c.input is None
        ]
        where = f"transform {target}"
        if final:
            rel = graph.flagged(target, rel, final)
            run = graph.runs[-1]
        for batch in graph.stream(rel, where=where):
            if ctx.should_stop(task.id):
                raise Cancelled(task.id)
            outcome.rows_read += batch.num_rows
            progress(batch.num_rows, batch.nbytes)
            if final:
                batch, rejected = run.split(batch)
                if rejected is not None:
                    quarantine(rejected)
                    graph.rows_quarantined += rejected.num_rows
            _write(ctx, task, dest, batch, outcome, ctx.origins.locate)
        outcome.rows_quarantined += graph.rows_quarantined
        outcome.checks = graph.results()
    finally:
        graph.close()
    dest.finish(ctx.run_id, task.id)
    return outcome


def _single(ctx: RunContext, task: Task, progress: Progress) -> TaskOutcome:
    """A blocking chain over one source: every partition streams into one DuckDB query, which spills."""
    assert task.source is not None and task.destination is not None
    dest = ctx.destinations[task.destination]
    dest.begin(ctx.run_id, task.id)
    outcome = TaskOutcome()
    origins = Origins()
    source, rejected = ctx.reader(task), list[Any]()
    batches = _read(
        ctx,
        task,
        source,
        list(task.partitions),
        Numbering(origins),
        outcome,
        progress,
        numbered=True,
        rejected=rejected,
    )
    points = _points(ctx, task.source, task.transform)
    if task.engine_checks:
        _stage_then_check(ctx, task, dest, points, batches, origins, outcome)
    else:
        _through_chain(ctx, task, dest, points, batches, origins, outcome)
    _rejected_by_reader(ctx, task, rejected, lambda rows: dest.write_quarantine(ctx.run_id, task.id, rows), outcome)
    dest.finish(ctx.run_id, task.id)
    return outcome


def _stage_then_check(
    ctx: RunContext,
    task: Task,
    dest: Destination,
    points: list[Point],
    batches: Iterator[pa.RecordBatch],
    origins: Origins,
    outcome: TaskOutcome,
) -> None:
    """Stage the raw rows with their ordinals in the DuckDB destination, then evaluate the checks there as SQL."""
    assert isinstance(dest, DuckDBDestination), "the planner checks in the engine only for DuckDB"
    for batch in batches:
        _write(ctx, task, dest, batch, outcome, origins.locate, keep_row=True)
    if not outcome.rows_written:
        # Nothing staged: the checks still report, over no rows, as the Arrow path's do.
        _through_chain(ctx, task, dest, points, iter(()), origins, outcome)
        return
    _engine_checks(ctx, task, dest, points, origins.locate, ordinal=ROW, outcome=outcome)


def _engine_checks(
    ctx: RunContext,
    task: Task,
    dest: DuckDBDestination,
    points: list[Point],
    locate: Callable[[int | None], Position | None],
    *,
    ordinal: str | None,
    outcome: TaskOutcome,
) -> None:
    staging = dest.staging(ctx.run_id, task.id)
    dest.finish(ctx.run_id, task.id)  # the buffered batches into the staging table, before SQL reads it
    checks = [c for p in points for c in p.checks]
    cursor = dest.engine_cursor()
    try:
        kept, quarantined, results = check_staged(
            cursor,
            staging,
            checks,
            run_id=ctx.run_id,
            task_id=task.id,
            scope=destination_label(ctx.spec, task.destination) if task.destination is not None else "workspace",
            input_name=points[-1].name,
            locate=locate,
            origin=f"task {task.id}",
            quarantine=lambda rows: dest.write_quarantine(ctx.run_id, task.id, rows),
            batch_rows=task.batch_rows or ctx.settings.batch_rows,
            ordinal=ordinal,
        )
    finally:
        cursor.close()
    dest.finish(ctx.run_id, task.id)  # the quarantine entries
    staged = outcome.rows_written  # every raw row went into staging; the checks then took some out
    if staged:  # the bytes of the rows that stay, as the Arrow path counts only those
        outcome.bytes_written = outcome.bytes_written * kept // staged
    outcome.rows_written = kept
    outcome.rows_quarantined += quarantined
    outcome.checks = judged(results)  # each with its verdict on this task's rows, as on the Arrow path
