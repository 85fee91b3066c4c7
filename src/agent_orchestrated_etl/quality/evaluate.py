"""Evaluating checks: flag columns computed in DuckDB, then a split of each batch in Python.

``flag`` compiles a relation's checks into one boolean column per row check, in
the same query as the transform, so checks cost a few vectorised expressions.
``CheckRun`` then splits each batch on its flags: passing rows go on, failing rows
become quarantine rows (check, reason, row, source position, run id), and every
check keeps the counts and the small state its verdict needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.connectors.base import QUARANTINE_SCHEMA, Position
from agent_orchestrated_etl.exceptions import StepError
from agent_orchestrated_etl.quality.checks import (
    AcceptedValuesCheck,
    Check,
    FreshnessCheck,
    InRangeCheck,
    ReferentialCheck,
    RowCountCheck,
    SchemaCheck,
    UniqueCheck,
    parse_duration,
)
from agent_orchestrated_etl.quality.verdicts import schema_problems
from agent_orchestrated_etl.redaction import redact
from agent_orchestrated_etl.transform.compile import Binder, Relation, duckdb_message
from agent_orchestrated_etl.transform.sql import FLAG_PREFIX, ROW, ident, is_hidden

_UNIQUE_ROW = "__agent_etl_unique_row"
_ONE_ROW = "__agent_etl_one_row"


def flag(
    binder: Binder, rel: Relation, checks: list[tuple[int, Check]], resolve: Callable[[str], Relation]
) -> Relation:
    """``rel`` with a FLAG column (true = the row failed) per check that compares rows; ``checks`` pairs
    spec index and check. Checks judging a row alone are only bound here: CheckRun evaluates them
    batch by batch, which spares a copy of every row through DuckDB."""
    row_checks = [(i, c) for i, c in checks if c.level != "dataset"]
    for index, check in row_checks:
        if check.level == "row":
            _bind_row_check(binder, rel, index, check)
    row_checks = [(i, c) for i, c in row_checks if c.level == "all_rows"]
    if not row_checks:
        return rel
    needs_all = any(c.level == "all_rows" for _, c in row_checks)
    if needs_all and not rel.unique_rows:
        base = f"SELECT *, row_number() OVER () AS {ident(_UNIQUE_ROW)} FROM {rel.subquery()}"
        row, drop = ident(_UNIQUE_ROW), f" EXCLUDE ({ident(_UNIQUE_ROW)})"
    else:
        base, row, drop = rel.sql, ident(ROW), ""
    flags = []
    for index, check in row_checks:
        missing = [c for c in check.columns if c not in rel.columns]
        if missing:
            raise _error(index, check, f"no column {missing[0]!r}; the input has {rel.columns}")
        if isinstance(check, UniqueCheck):
            keys = ", ".join(ident(c) for c in check.unique)
            present = " AND ".join(f"{ident(c)} IS NOT NULL" for c in check.unique)
            # Rows are found again by number, so memory holds one integer per key and spills.
            expr = f"({present}) AND {row} NOT IN (SELECT min({row}) FROM _checked WHERE {present} GROUP BY {keys})"
        elif isinstance(check, ReferentialCheck):
            name, column = check.referential.target
            target = resolve(name)
            if column not in target.columns:
                raise _error(index, check, f"no column {column!r} in {name}; it has {target.columns}")
            values = f"SELECT {ident(column)} FROM {target.subquery()} WHERE {ident(column)} IS NOT NULL"
            expr = (
                f"{ident(check.referential.column)} IS NOT NULL AND {ident(check.referential.column)} NOT IN ({values})"
            )
        else:
            expr = check.failed_sql()
        try:
            binder.bind(f"WITH _checked AS ({base}) SELECT ({expr}) AS f FROM _checked")
        except duckdb.Error as exc:
            raise _error(index, check, duckdb_message(exc)) from None
        flags.append(f"({expr}) AS {ident(FLAG_PREFIX + str(index))}")
    materialized = "MATERIALIZED " if needs_all else ""
    sql = f"WITH _checked AS {materialized}({base}) SELECT *{drop}, {', '.join(flags)} FROM _checked"
    try:
        return Relation(sql, binder.bind(sql), unique_rows=rel.unique_rows)
    except duckdb.Error as exc:
        raise _error(row_checks[0][0], row_checks[0][1], duckdb_message(exc)) from None


def _bind_row_check(binder: Binder, rel: Relation, index: int, check: Check) -> None:
    missing = [c for c in check.columns if c not in rel.columns]
    if missing:
        raise _error(index, check, f"no column {missing[0]!r}; the input has {rel.columns}")
    try:
        binder.bind(f"SELECT ({check.failed_sql()}) AS f FROM {rel.subquery()}")
    except duckdb.Error as exc:
        raise _error(index, check, duckdb_message(exc)) from None
    if isinstance(check, (InRangeCheck, AcceptedValuesCheck)):
        # Binding leaves a value's cast to the column's type to the first row; one row of NULLs
        # makes DuckDB cast it now, so `min: zero` on a number fails here, not mid-run.
        try:
            binder.evaluate(
                f"SELECT ({check.failed_sql()}) AS f FROM (SELECT 1 AS {ident(_ONE_ROW)}) LEFT JOIN {rel.subquery()} ON false"
            )
        except duckdb.Error as exc:
            column = check.columns[0]
            raise _error(
                index,
                check,
                f"a value does not fit column {column} ({rel.schema.field(column).type}): {duckdb_message(exc)}",
                hint="give values of the column's type",
            ) from None


def bind_dataset_checks(binder: Binder, rel: Relation, checks: list[tuple[int, Check]]) -> None:
    for index, check in checks:
        if isinstance(check, FreshnessCheck):
            column = check.freshness.column
            if column not in rel.columns:
                raise _error(index, check, f"no column {column!r}; the input has {rel.columns}")
            kind = rel.schema.field(column).type
            if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
                raise _error(index, check, f"{column} is {kind}; freshness needs a timestamp or a date")


def _error(index: int, check: Check, message: str, hint: str = "fix the check or the column name") -> StepError:
    return StepError(message, path=("quality", index), where=f"check {check.label}", hint=hint)


class CheckRun:
    """The checks of one point of one task: splits batches on their flags and keeps the results."""

    def __init__(
        self,
        checks: list[tuple[int, Check]],
        *,
        run_id: str,
        task_id: str,
        scope: str,
        input_name: str,
        locate: Callable[[int | None], Position | None],
        origin: str,
        cursor: Callable[[], Any],
    ) -> None:
        self.checks = checks
        self._new_cursor = cursor
        self._cursor: Any = None
        self.run_id, self.task_id = run_id, task_id
        self.locate, self.origin = locate, origin
        self.results: list[dict[str, Any]] = [
            {
                "check": c.label,
                "kind": c.kind,
                "level": c.level,
                "input": input_name,
                "scope": scope,
                "severity": c.severity,
                "threshold": c.threshold,
                "rows_checked": 0,
                "rows_failed": 0,
                "observed": _initial(c),
            }
            for _, c in checks
        ]
        self._flags = [(n, FLAG_PREFIX + str(i), c) for n, (i, c) in enumerate(checks) if c.level != "dataset"]
        self._rows_out = 0

    @property
    def flagged(self) -> bool:
        return bool(self._flags)

    def observe_schema(self, schema: pa.Schema) -> None:
        visible = pa.schema([f for f in schema if not is_hidden(f.name)])
        for result, (_, check) in zip(self.results, self.checks, strict=True):
            if isinstance(check, SchemaCheck):
                result["observed"] = {
                    "columns": {f.name: str(f.type) for f in visible},
                    "problems": schema_problems(check.schema_.columns, check.schema_.exact, visible),
                }

    def _row_flags(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Add the flags of the checks that judge a row alone, from one small query over this batch."""
        row_checks = [
            (column, check)
            for _, column, check in self._flags
            if check.level == "row" and column not in batch.schema.names
        ]
        if not row_checks:
            return batch
        if self._cursor is None:
            self._cursor = self._new_cursor()
        self._cursor.register("_agent_etl_checked", batch)
        try:
            items = [f"{ident(ROW)}"] if ROW in batch.schema.names else []
            items += [f"({check.failed_sql()}) AS {ident(column)}" for column, check in row_checks]
            flags = self._cursor.execute(f"SELECT {', '.join(items)} FROM _agent_etl_checked").to_arrow_table()
        finally:
            self._cursor.unregister("_agent_etl_checked")
        if ROW in batch.schema.names and not flags.column(ROW).equals(pa.chunked_array([batch.column(ROW)])):
            raise AssertionError("DuckDB returned a batch's check flags out of order")
        for column, _ in row_checks:
            batch = batch.append_column(column, flags.column(column).combine_chunks())
        return batch

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()

    def split(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
        """Rows to pass on (flag columns dropped, the row ordinal kept) and quarantine rows, if any failed."""
        quarantine = None
        if self._flags:
            batch = self._row_flags(batch)
            failing = None
            dropping = None
            for n, column, check in self._flags:
                flags = batch.column(column)
                self.results[n]["rows_checked"] += batch.num_rows
                self.results[n]["rows_failed"] += int(pc.sum(flags).as_py() or 0)
                failing = flags if failing is None else pc.or_(failing, flags)
                if not check.keep_in_target:
                    dropping = flags if dropping is None else pc.or_(dropping, flags)
            if pc.any(failing).as_py():
                quarantine = self.quarantine_rows(batch.filter(failing))
                if dropping is not None:
                    batch = batch.filter(pc.invert(dropping))
        kept = batch.select([n for n in batch.schema.names if not n.startswith(FLAG_PREFIX)])
        self._observe_kept(kept)
        return kept, quarantine

    def _observe_kept(self, batch: pa.RecordBatch) -> None:
        self._rows_out += batch.num_rows
        for result, (_, check) in zip(self.results, self.checks, strict=True):
            if isinstance(check, RowCountCheck):
                result["observed"]["rows"] = self._rows_out
            elif isinstance(check, FreshnessCheck) and batch.num_rows:
                newest = pc.max(batch.column(check.freshness.column)).as_py()
                if newest is not None:
                    previous = result["observed"].get("newest")
                    value = _as_utc(newest).isoformat()
                    if previous is None or value > previous:
                        result["observed"]["newest"] = value
                result["observed"]["checked_at"] = datetime.now(UTC).isoformat()

    def quarantine_rows(self, failed: pa.RecordBatch) -> pa.RecordBatch:
        """Quarantine entries of failed rows (their flag columns say which checks they failed)."""
        rows = visible(failed).to_pylist()
        flags = {column: failed.column(column).to_pylist() for _, column, _ in self._flags}
        ordinals = failed.column(ROW).to_pylist() if ROW in failed.schema.names else [None] * failed.num_rows
        records = []
        for i, row in enumerate(rows):
            failing = [check for _, column, check in self._flags if flags[column][i]]
            position = self.locate(ordinals[i])
            records.append(
                {
                    "run_id": self.run_id,
                    "task_id": self.task_id,
                    "check_name": failing[0].label,
                    "reason": redact("; ".join(check.explain(row) for check in failing)),
                    "origin": redact(str(position) if position is not None else self.origin),
                    "row_json": json.dumps(row, default=str, ensure_ascii=False),
                }
            )
        return pa.RecordBatch.from_pylist(records, schema=QUARANTINE_SCHEMA)


def _initial(check: Check) -> dict[str, Any]:
    if isinstance(check, RowCountCheck):
        return {"rows": 0, "min": check.row_count.min, "max": check.row_count.max}
    if isinstance(check, FreshnessCheck):
        return {
            "newest": None,
            "max_age_seconds": parse_duration(check.freshness.max_age),
            "checked_at": datetime.now(UTC).isoformat(),
        }
    return {}


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)  # a date counts from its midnight


def visible(batch: pa.RecordBatch) -> pa.RecordBatch:
    hidden = [i for i, name in enumerate(batch.schema.names) if is_hidden(name)]
    for index in reversed(hidden):
        batch = batch.remove_column(index)
    return batch


def rejected_rows(
    rows: list[tuple[dict[str, Any], str, Position]], *, run_id: str, task_id: str, check_name: str
) -> pa.RecordBatch:
    """Rows a reader rejected (a malformed CSV line) in the quarantine schema."""
    return pa.RecordBatch.from_pylist(
        [
            {
                "run_id": run_id,
                "task_id": task_id,
                "check_name": check_name,
                "reason": redact(reason),
                "origin": redact(str(position)),
                "row_json": json.dumps(row, default=str, ensure_ascii=False),
            }
            for row, reason, position in rows
        ],
        schema=QUARANTINE_SCHEMA,
    )
