"""A linear chain of streaming transforms and checks over one task's batches.

Consecutive SQL steps, of one transform or of several in a row, compile into one
DuckDB query that reads the task's batches as an Arrow stream, so the chain runs
at the engine's speed with one pass over the data. The query is cut where Python
must act: at a ``python:`` step, and where a point has checks (the flagged rows
are split off to quarantine before the next transform sees the data).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.quality.checks import Check
from agent_orchestrated_etl.quality.evaluate import CheckRun, bind_dataset_checks, flag
from agent_orchestrated_etl.quality.verdicts import judged
from agent_orchestrated_etl.transform import python_step
from agent_orchestrated_etl.transform.compile import Binder, Relation, StepCompiler, split_at_python
from agent_orchestrated_etl.transform.context import TaskContext
from agent_orchestrated_etl.transform.sql import FLAG_PREFIX, ROW
from agent_orchestrated_etl.transform.steps import TransformSpec

IN = "__agent_etl_in"


@dataclass
class Point:
    """A place in the chain where data has a name: the source, then each transform in turn."""

    name: str
    transform: TransformSpec | None
    index: int  # of the transform in the spec, for error paths
    checks: list[tuple[int, Check]]


class StreamChain:
    def __init__(self, task: TaskContext, points: list[Point]) -> None:
        self.task = task
        self.points = points
        self.binder = Binder()
        self.runs: list[CheckRun] = []
        self.rows_quarantined = 0
        self._in_schema = pa.schema([])

    def results(self) -> list[dict[str, Any]]:
        return judged(r for run in self.runs for r in run.results)

    def run(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The chain's output batches, flag columns dropped (the row ordinal stays)."""
        rel = self._restart(schema, unique_rows=ROW in schema.names)
        stream: Iterator[pa.RecordBatch] = batches
        where = f"source {self.points[0].name}"
        for position, point in enumerate(self.points):
            if point.transform is not None:
                where = f"transform {point.name}"
                compiler = StepCompiler(self.binder, point.name, point.index, resolve=_no_other_inputs)
                for part in split_at_python(list(point.transform.steps or [])):
                    if isinstance(part, list):
                        for number, step in part:
                            rel = compiler.compile(rel, number, step)
                        continue
                    out_schema, stream = python_step.apply(
                        part[1], self._execute(rel, stream, where), where=f"{where}: step {part[0] + 1} (python)"
                    )
                    if out_schema is None:  # the function returned no rows at all
                        self.no_rows(self.points[position:], where)
                        return
                    rel = self._restart(out_schema, rel.unique_rows)
            if point.checks:
                rel, stream = self._check(point, rel, stream, where)
        yield from self._execute(rel, stream, where)

    def _restart(self, schema: pa.Schema, unique_rows: bool) -> Relation:
        """A fresh query over the stream so far."""
        self._in_schema = schema
        self.binder.stand_in(IN, schema)
        return Relation(f"SELECT * FROM {IN}", schema, unique_rows=unique_rows)

    def _execute(self, rel: Relation, stream: Iterator[pa.RecordBatch], where: str) -> Iterator[pa.RecordBatch]:
        if rel.sql == f"SELECT * FROM {IN}":
            return stream
        inputs = {IN: (self._in_schema, stream)}
        return self.task.query(rel.sql, inputs=inputs, variables=self.binder.variables, where=where)

    def _check(
        self, point: Point, rel: Relation, stream: Iterator[pa.RecordBatch], where: str
    ) -> tuple[Relation, Iterator[pa.RecordBatch]]:
        flagged = flag(self.binder, rel, point.checks, _no_other_inputs)
        bind_dataset_checks(self.binder, rel, point.checks)
        run = self._run_for(point, where)
        run.observe_schema(rel.schema)
        executed = self._execute(flagged, stream, where)

        def split() -> Iterator[pa.RecordBatch]:
            for batch in executed:
                kept, rejected = run.split(batch)
                if rejected is not None:
                    self.task.quarantine(rejected)
                    self.rows_quarantined += rejected.num_rows
                if kept.num_rows:
                    yield kept

        out_schema = pa.schema([f for f in flagged.schema if not f.name.startswith(FLAG_PREFIX)])
        return self._restart(out_schema, rel.unique_rows), split()

    def _run_for(self, point: Point, where: str) -> CheckRun:
        run = self.task.check_run(point.checks, input_name=point.name, origin=where)
        self.runs.append(run)
        return run

    def no_rows(self, points: list[Point], where: str) -> None:
        for point in points:
            if point.checks:
                self._run_for(point, where)

    def close(self) -> None:
        for run in self.runs:
            run.close()
        self.binder.close()


def _no_other_inputs(name: str) -> Relation:
    raise AssertionError(f"a streaming chain cannot read {name}; the planner sends joins to the workspace")
