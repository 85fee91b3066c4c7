"""Transforms over the workspace: the relations a destination needs, built by name in DuckDB.

Staged sources are views over their partitions' tables. A transform compiles to
SQL over the relations it reads, so joins, dedupes and aggregates run inside
DuckDB, which spills past its memory limit. Python steps, and checks on a
relation other than the destination's input, materialise into workspace tables
(the checks' failing rows go to quarantine on the way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.exceptions import DataError
from agent_orchestrated_etl.quality.checks import Check
from agent_orchestrated_etl.quality.evaluate import CheckRun, bind_dataset_checks, flag
from agent_orchestrated_etl.quality.verdicts import judged
from agent_orchestrated_etl.transform import python_step
from agent_orchestrated_etl.transform.compile import Binder, Relation, StepCompiler, compile_sql, split_at_python
from agent_orchestrated_etl.transform.context import TaskContext
from agent_orchestrated_etl.transform.query import stage
from agent_orchestrated_etl.transform.sql import FLAG_PREFIX, ident
from agent_orchestrated_etl.transform.steps import TransformSpec


class WorkspaceGraph:
    """Relations of one transform_load task; ``checks_at`` gives the checks evaluated at a name here."""

    def __init__(
        self,
        task: TaskContext,
        *,
        staged: dict[str, list[str]],
        transforms: list[TransformSpec],
        checks_at: Callable[[str], list[tuple[int, Check]]],
    ) -> None:
        self.task = task
        self.workspace = task.workspace
        self.staged = staged
        self.transforms = {t.name: (i, t) for i, t in enumerate(transforms)}
        self.checks_at = checks_at
        self.binder = Binder()
        self.runs: list[CheckRun] = []
        self.rows_quarantined = 0
        self._relations: dict[str, Relation] = {}
        self._slug = re.sub(r"[^A-Za-z0-9_]", "_", task.task_id)
        self._tables: list[str] = []
        self._views: list[str] = []

    def results(self) -> list[dict[str, Any]]:
        return judged(r for run in self.runs for r in run.results)

    def relation(self, name: str, *, final: bool = False) -> Relation:
        """The relation called ``name``; ``final`` leaves its checks to the caller (they run on the way out)."""
        if name in self._relations:
            return self._relations[name]
        if name in self.staged:
            rel = self._source(name)
        else:
            index, transform = self.transforms[name]
            if transform.sql is not None:
                rel = compile_sql(self.binder, transform, index, {i: self.relation(i) for i in transform.inputs or []})
            else:
                rel = self._steps(index, transform)
        checks = self.checks_at(name)
        if checks and not final:
            rel = self._checkpoint(name, rel, checks)
        self._relations[name] = rel
        return rel

    def _source(self, name: str) -> Relation:
        # A view per task: tasks replacing one shared view at once would conflict.
        view = f"__agent_etl_{self._slug}_src_{name}"
        self._views.append(view)
        if not self.workspace.union_partitions(view, self.staged[name]):
            raise DataError(
                f"input {name} has no staged rows",
                where=f"task {self.task.task_id}",
                hint="the source was empty or its tasks did not run",
            )
        return self._table_relation(view, unique_rows=True)

    def _table_relation(self, table: str, *, unique_rows: bool) -> Relation:
        schema = self.workspace.schema(table)
        self.binder.stand_in(table, schema)
        return Relation(f"SELECT * FROM {ident(table)}", schema, unique_rows=unique_rows)

    def _steps(self, index: int, transform: TransformSpec) -> Relation:
        assert transform.input is not None
        rel = self.relation(transform.input)
        compiler = StepCompiler(self.binder, transform.name, index, resolve=self.relation)
        for part in split_at_python(list(transform.steps or [])):
            if isinstance(part, list):
                for number, step in part:
                    rel = compiler.compile(rel, number, step)
                continue
            where = f"transform {transform.name}: step {part[0] + 1} (python)"
            schema, batches = python_step.apply(part[1], self.stream(rel, where=where), where=where)
            rel = self._materialize(
                f"{transform.name}_{part[0]}",
                schema or _visible_schema(rel.schema),
                batches,
                unique_rows=rel.unique_rows,
            )
        return rel

    def _checkpoint(self, name: str, rel: Relation, checks: list[tuple[int, Check]]) -> Relation:
        flagged = self.flagged(name, rel, checks)
        run = self.runs[-1]

        def kept() -> Iterator[pa.RecordBatch]:
            for batch in self.stream(flagged, where=f"checks on {name}"):
                good, rejected = run.split(batch)
                if rejected is not None:
                    self.task.quarantine(rejected)
                    self.rows_quarantined += rejected.num_rows
                yield good

        schema = pa.schema([f for f in flagged.schema if not f.name.startswith(FLAG_PREFIX)])
        return self._materialize(f"checked_{name}", schema, kept(), unique_rows=rel.unique_rows)

    def flagged(self, name: str, rel: Relation, checks: list[tuple[int, Check]]) -> Relation:
        """``rel`` with its checks' flags; the CheckRun that splits it is the last of ``runs``."""
        flagged = flag(self.binder, rel, checks, self.relation)
        bind_dataset_checks(self.binder, rel, checks)
        run = self.task.check_run(
            checks, input_name=name, origin=f"transform {name}" if name in self.transforms else f"source {name}"
        )
        run.observe_schema(rel.schema)
        self.runs.append(run)
        return flagged

    def _materialize(
        self, label: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], *, unique_rows: bool
    ) -> Relation:
        table = f"__agent_etl_{self._slug}_{label}"
        stage(self.workspace, table, schema, batches, where=f"task {self.task.task_id}")
        self._tables.append(table)
        return self._table_relation(table, unique_rows=unique_rows)

    def stream(self, rel: Relation, *, where: str) -> Iterator[pa.RecordBatch]:
        return self.task.query(rel.sql, variables=self.binder.variables, where=where)

    def close(self) -> None:
        for run in self.runs:
            run.close()
        self.workspace.drop(*self._tables)
        self.workspace.drop_views(*self._views)
        self.binder.close()


def _visible_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if not f.name.startswith("__agent_etl_")])
