"""Check every transform step and check against its input's schema, before any data moves.

Each source's schema comes from its first batch; each transform is then compiled
step by step over empty tables of those schemas (see transform/compile.py), which reports
a bad expression or an unknown column with the step and the column. A source
that cannot be read (a server down, a variable unset) leaves its transforms
checked for syntax only, with a note saying so.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import yaml

from agent_orchestrated_etl.connectors.base import Position, Source
from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, FatalError, SpecProblem, StepError
from agent_orchestrated_etl.planning.expansion import expand, several_tables
from agent_orchestrated_etl.planning.routing import checks_at
from agent_orchestrated_etl.quality.evaluate import bind_dataset_checks, flag
from agent_orchestrated_etl.spec import resolve_env
from agent_orchestrated_etl.transform import steps as s
from agent_orchestrated_etl.transform.compile import Binder, Relation, StepCompiler, compile_sql, expression_problem
from agent_orchestrated_etl.transform.sql import ROW, ident
from agent_orchestrated_etl.yaml_locations import locate_problem, node_lines


@dataclass
class Findings:
    problems: list[StepError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_loaded(loaded: Any, *, offline: bool = False) -> Findings:
    """``check_pipeline`` for a spec as loaded from its file (each pipeline of a workflow in turn)."""
    if loaded.workflow is None:
        return _check_one(loaded.pipeline, loaded.file, offline=offline)
    findings = Findings()
    for index, pipeline in enumerate(loaded.workflow.pipelines):
        found = _check_one(pipeline, loaded.file, offline=offline)
        findings.notes += [f"pipeline {pipeline.name}: {note}" for note in found.notes]
        for problem in found.problems:
            problem.path = ("pipelines", index, *problem.path)
            findings.problems.append(problem)
    return findings


def _check_one(pipeline: Any, file: str, *, offline: bool) -> Findings:
    if offline:
        findings = check_pipeline(pipeline, {})
        findings.notes.insert(0, "--offline: sources were not read; transforms were checked for syntax only")
        return findings
    try:
        spec = resolve_env(pipeline).rebased(Path(file).resolve().parent)
    except AgentETLError as exc:
        findings = check_pipeline(pipeline, {})
        findings.notes.insert(0, f"sources were not read ({exc}); transforms were checked for syntax only")
        return findings
    try:
        spec, _ = expand(spec)
    except AgentETLError as exc:  # a listed table that does not exist, a schema with no table
        name = next((n for n in several_tables(spec) if exc.where == f"source {n}"), None)
        path: tuple[str | int, ...] = ("sources", name) if name else ()
        return Findings(problems=[StepError(exc.message, path=path, where=exc.where or "", hint=exc.hint)])
    specs: dict[str, Any] = spec.sources  # the union of source specs is built at run time (spec.py)
    sources = {name: source_class(src.type)(name, src, batch_rows=1024) for name, src in specs.items()}
    return check_pipeline(spec, sources, unreadable_is_problem=True)


def preflight(spec: Any, sources: dict[str, Source]) -> None:
    """Fail a run before its first task when a transform or check does not fit its input.

    A source that is costly to read twice (an API: its first batch may be every
    page, fetched concurrently) is not sampled here; what reads it is checked
    for syntax now and bound against its rows when its task runs.
    """
    fresh = {
        name: type(source)(name, source.spec, batch_rows=1024)
        for name, source in sources.items()
        if source.reread_cost() is None
    }
    problems = check_pipeline(spec, fresh).problems
    if problems:
        first = problems[0]
        if len(problems) == 1:
            raise first
        more = f"; {len(problems) - 1} more problem(s): `agent-etl validate FILE` lists them with their lines"
        raise StepError(first.message + more, path=first.path, where=first.where or "", hint=first.hint)


def spec_problems(loaded: Any, findings: Findings) -> list[SpecProblem]:
    """The findings' problems as spec problems with their YAML line."""
    lines = node_lines(yaml.compose(loaded.text))
    problems = []
    for error in findings.problems:
        path, line = locate_problem(error.path, lines)
        message = f"{error.message} ({error.hint})" if error.hint else error.message
        problems.append(SpecProblem(loaded.file, line, path, message))
    return problems


def source_schema(source: Source) -> pa.Schema | None:
    """The schema of a source's first batch (None when it has no rows at all)."""
    for partition in source.partitions():
        # Connectors implement read() as a generator: closing it ends the read (and frees its cursor) early.
        batches = cast("Generator[tuple[pa.RecordBatch, Position]]", source.read(partition))
        with closing(batches):
            for batch, _ in batches:
                return batch.schema
    return None


def check_pipeline(spec: Any, sources: dict[str, Source], *, unreadable_is_problem: bool = False) -> Findings:
    """Bind every transform and check of ``spec`` (a resolved PipelineSpec) over its sources' schemas.

    ``unreadable_is_problem``: a source missing or refusing us is a problem (validate); a run's
    preflight leaves it to the source's task, which fails with its own record and recovery.
    """
    findings = Findings()
    binder = Binder()
    relations: dict[str, Relation | None] = {}
    try:
        for name, source in sources.items():
            relations[name] = _source_relation(binder, name, source, findings, unreadable_is_problem)
        for index, transform in enumerate(spec.transforms):
            relations[transform.name] = _transform(binder, index, transform, relations, findings)
        finals = {d.input for d in spec.all_destinations}
        for name, rel in relations.items():
            checks = checks_at(spec.quality, name, final=name in finals)
            if rel is None or not checks:
                continue
            for check in checks:  # one at a time, so each problem is reported
                try:
                    flag(binder, rel, [check], lambda other: _known(relations, other))
                    bind_dataset_checks(binder, rel, [check])
                except StepError as exc:
                    findings.problems.append(exc)
                except _Unknown as exc:
                    findings.notes.append(
                        f"check {check[1].label} reads {exc}, whose schema is unknown; it is checked at run time"
                    )
    finally:
        binder.close()
    return findings


def _source_relation(
    binder: Binder, name: str, source: Source, findings: Findings, unreadable_is_problem: bool
) -> Relation | None:
    try:
        schema = source_schema(source)
    except (ConfigurationError, FatalError) as exc:  # a missing file or table, a refused login: run fails on it too
        if not unreadable_is_problem:
            findings.notes.append(
                f"source {name} could not be read ({exc}); its transforms were checked for syntax only"
            )
            return None
        findings.problems.append(
            StepError(exc.message, path=_source_key(source, name), where=exc.where or f"source {name}", hint=exc.hint)
        )
        return None
    except AgentETLError as exc:  # a server down may be up by the run
        findings.notes.append(f"source {name} could not be read ({exc}); its transforms were checked for syntax only")
        return None
    if schema is None:
        findings.notes.append(f"source {name} has no rows; its transforms were checked for syntax only")
        return None
    table = f"__agent_etl_src_{name}"
    schema = schema.append(pa.field(ROW, pa.int64()))
    binder.stand_in(table, schema)
    return Relation(f"SELECT * FROM {ident(table)}", schema, unique_rows=True)


def _source_key(source: Source, name: str) -> tuple[str | int, ...]:
    """The YAML key a source's read error points at: where its file or table is named, if it has one."""
    for key in ("table", "path", "url"):
        if getattr(source.spec, key, None) is not None:
            return ("sources", name, key)
    return ("sources", name)


def _known(relations: dict[str, Relation | None], name: str) -> Relation:
    rel = relations.get(name)
    if rel is None:
        raise _Unknown(name)
    return rel


class _Unknown(Exception):
    """An input whose schema is not known; whatever reads it can only be parsed."""


def _transform(
    binder: Binder, index: int, transform: s.TransformSpec, relations: dict[str, Relation | None], findings: Findings
) -> Relation | None:
    try:
        if transform.sql is not None:
            inputs = {name: _known(relations, name) for name in transform.inputs or []}
            return compile_sql(binder, transform, index, inputs)
        rel = _known(relations, transform.input or "")
        compiler = StepCompiler(binder, transform.name, index, resolve=lambda name: _known(relations, name))
        for number, step in enumerate(transform.steps or []):
            if isinstance(step, s.PythonStep):
                findings.notes.append(
                    f"transform {transform.name}: steps after the python step {step.python} are checked at run time"
                )
                return None
            rel = compiler.compile(rel, number, step)
        return rel
    except StepError as exc:
        findings.problems.append(exc)
    except _Unknown as exc:
        findings.notes.append(
            f"transform {transform.name} reads {exc}, which could not be checked; it was checked for syntax only"
        )
        findings.problems.extend(_syntax(binder, index, transform))
    return None


def _syntax(binder: Binder, index: int, transform: s.TransformSpec) -> list[StepError]:
    """Parse errors in a transform whose input schema is unknown."""
    texts: list[tuple[tuple[str | int, ...], str]] = []  # queries
    exprs: list[tuple[tuple[str | int, ...], str]] = []  # each one expression, parsed alone (compile.py's _expr)
    if transform.sql is not None:
        texts.append((("sql",), transform.sql))
    for number, step in enumerate(transform.steps or []):
        path = ("steps", number, step.op)
        if isinstance(step, s.FilterStep):
            exprs.append((path, step.filter))
        elif isinstance(step, s.DeriveStep):
            exprs += [((*path, column), expr) for column, expr in step.derive.items()]
        elif isinstance(step, s.AggregateStep):
            exprs += [((*path, column), expr) for column, expr in step.aggregate.measures.items()]
        elif isinstance(step, s.SortStep):
            texts += [((*path, item), f"SELECT 1 ORDER BY {item}") for item in step.sort]
    errors = []
    where = f"transform {transform.name}"
    for key, sql in texts:
        try:
            binder.parse(sql)
        except duckdb.ParserException as exc:
            errors.append(StepError(str(exc).splitlines()[0], path=("transforms", index, *key), where=where))
    for key, expr in exprs:
        if (problem := expression_problem(expr)) is not None:
            errors.append(StepError(problem, path=("transforms", index, *key), where=where))
    return errors
