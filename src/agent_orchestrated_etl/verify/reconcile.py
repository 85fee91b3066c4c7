"""Reconciliation: after a commit, prove that the target holds what the source gave.

Where the target's rows correspond one to one to the source's (the
destination reads a source with no transform, nothing was quarantined, and
the target holds only this run's rows: ``write: replace``, or the run's
incremental window), the source's window and the target are compared by row
count, key set and an order-independent hash of the key and loaded columns,
each computed inside its own engine (fingerprint.py). Elsewhere (transforms,
quarantined rows, appends of whole sources, APIs, which are never read again,
and targets without md5: SQLite, files) the counts are reconciled instead:
every task's rows read are loaded or quarantined, and the destination
committed what its tasks staged. The result is a quality result of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.connectors.files.source import FileSourceSpec
from agent_orchestrated_etl.connectors.incremental import Window
from agent_orchestrated_etl.connectors.registry import source_class
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.exceptions import AgentETLError
from agent_orchestrated_etl.verify.fingerprint import Shape, Side, family, fingerprint, first_differences
from agent_orchestrated_etl.verify.options import VerifySpec
from agent_orchestrated_etl.verify.rowwise import Lineage, lineage
from agent_orchestrated_etl.verify.sides import DatabaseSide, DuckDBSide, ReaderSide, SQLiteCount, window_predicates

CHECK = "verify"
_READ_AGAIN = {"file", "sqlite"}


@dataclass(frozen=True)
class TaskCount:
    """One task of the run as verify needs it: what it read, and how many rows it loaded and quarantined."""

    id: str
    kind: str
    source: str | None
    transform: str | None
    partition: Partition | None
    rows_read: int
    rows_written: int
    rows_quarantined: int


def reconcile(
    spec: Any,
    index: int,
    label: str,
    tasks: list[TaskCount],
    committed: dict[str, Any] | None,
    options: VerifySpec,
    *,
    batch_rows: int,
) -> dict[str, Any]:
    """The verify result of destination ``index`` of a resolved pipeline ``spec`` (a quality result)."""
    dest = spec.all_destinations[index]
    observed: dict[str, Any] = {"mode": "counts", "problems": [], "differing_keys": []}
    problems: list[str] = observed["problems"]
    lin = lineage(spec, dest.input)
    problems += _count_problems(tasks, committed, rowwise=lin is not None)
    window = _window(tasks)
    reason = _no_hash_reason(dest, lin, tasks, window)
    rows_checked = (committed or {}).get("rows", sum(t.rows_written for t in tasks))
    source = target = None
    try:
        target = _target_side(dest, window, label)
        if reason is None and target is None:
            reason = (
                "only a local, unpartitioned Parquet file target is read back for a hash"
                if dest.type == "file"
                else f"a {dest.type} target has no md5 to hash its rows with"
            )
        if reason is None and lin is not None:
            source = _source_side(spec, lin.source, tasks, window, batch_rows)
            if source is None:
                reason = f"source {lin.source} is an API and is not read again; its staged counts are compared"
        if reason is None and source is not None and target is not None and lin is not None:
            observed["mode"] = "hash"
            try:
                rows_checked = _compare(source, target, dest, lin, options.columns, observed)
            except _CountsOnly as exc:
                observed["mode"], reason = "counts", str(exc)
        if reason is not None:
            observed["reason"] = reason
            if target is None and dest.type == "sqlite":
                target = SQLiteCount(dest.url, dest.table, label=f"destination {label}")
            if target is not None and dest.write == "replace" and committed is not None:
                ((rows,),) = target.query(f"SELECT count(*) FROM {target.relation}")
                observed["target_rows"] = int(rows)
                if int(rows) != committed["rows"]:
                    problems.append(f"the target holds {int(rows):,} rows, the run committed {committed['rows']:,}")
    except AgentETLError as exc:
        problems.append(f"could not verify: {exc}")
    finally:
        for side in (source, target):
            if side is not None:
                side.close()
    # A transform_load task over the workspace reads the transform's result, not the source.
    observed["read"] = sum(t.rows_read for t in tasks if t.kind != "transform_load" or t.source is not None)
    observed["loaded"] = sum(t.rows_written for t in tasks if t.kind != "stage")
    observed["quarantined"] = sum(
        t.rows_quarantined for t in tasks if t.kind != "stage"
    )  # a transform_load counts its stages' too
    return {
        "check": CHECK,
        "kind": "reconcile",
        "input": dest.input,
        "scope": label,
        "severity": options.severity,
        "threshold": 0.0,
        "rows_checked": rows_checked,
        "rows_failed": len(observed["differing_keys"]) or (1 if problems else 0),
        "observed": observed,
    }


class _CountsOnly(Exception):
    """The rows correspond, but the columns that would identify them cannot be compared."""


def _count_problems(tasks: list[TaskCount], committed: dict[str, Any] | None, *, rowwise: bool) -> list[str]:
    problems = []
    for t in tasks:
        # Without a transform (or through row-wise steps only) every row read is loaded or quarantined (a row
        # kept in the target by a check is both); a transform may filter, join or aggregate: its counts prove nothing.
        if (
            (t.transform is None or rowwise)
            and t.kind in ("extract_load", "pushdown", "stage")
            and t.rows_written + t.rows_quarantined < t.rows_read
        ):
            lost = t.rows_read - t.rows_written - t.rows_quarantined
            problems.append(
                f"task {t.id} read {t.rows_read:,} rows but loaded {t.rows_written:,} and quarantined {t.rows_quarantined:,}: {lost:,} unaccounted for"
            )
    loading = [t for t in tasks if t.kind != "stage"]
    if committed is not None and not committed.get("already_committed"):
        staged, quarantined = sum(t.rows_written for t in loading), sum(t.rows_quarantined for t in loading)
        if committed["rows"] != staged:
            problems.append(f"the destination committed {committed['rows']:,} rows, its tasks staged {staged:,}")
        if committed["quarantined_rows"] != quarantined:
            problems.append(
                f"the destination committed {committed['quarantined_rows']:,} quarantined rows, its tasks set aside {quarantined:,}"
            )
    return problems


def _window(tasks: list[TaskCount]) -> Window | None:
    for t in tasks:
        if t.partition is not None and "window" in t.partition.options:
            return Window.from_dict(t.partition.options["window"])
    return None


def _no_hash_reason(dest: Any, lin: Lineage | None, tasks: list[TaskCount], window: Window | None) -> str | None:
    """Why the target's rows cannot be compared one to one with the source's (None: they can)."""
    if lin is None:
        return f"it loads transform {dest.input}, whose rows are not the source's one to one"
    if any(t.kind == "stage" for t in tasks):
        return "its source is staged in the run workspace first"
    if any(t.rows_quarantined for t in tasks):
        return "rows were quarantined"
    if dest.write != "replace" and window is None:
        return f"write: {dest.write} of the whole source: the target also holds rows of earlier runs"
    return None


def _target_side(dest: Any, window: Window | None, label: str) -> Any:
    where = f"destination {label}"
    if dest.type == "duckdb":
        side: Any = DuckDBSide(dest.path, _quoted(dest.table, '"'), [], label=where)
    elif dest.type in ("postgres", "mysql"):
        side = DatabaseSide(dest.url, "", [], label=where)
        side.relation = ".".join(side.quote(p) for p in dest.table.split("."))
    elif dest.type == "file" and dest.format == "parquet" and not dest.partition_by and "://" not in dest.path:
        # Parquet keeps its types, so the committed files read back as they were written (through the
        # manifest); CSV and JSON Lines would be typed anew, and hive directories drop their columns.
        side = _source_side_of(FileSourceSpec(type="file", path=dest.path, format="parquet"), "target", None, where)
    else:
        return None
    if window is not None and dest.write != "replace":
        side.where = window_predicates(window, side.quote, side.dialect)
    return side


def _source_side(spec: Any, name: str, tasks: list[TaskCount], window: Window | None, batch_rows: int) -> Any:
    source_spec = spec.sources[name]
    source = source_class(source_spec.type)(name, source_spec, batch_rows=batch_rows)
    where = f"source {name}"
    if source_spec.type in _READ_AGAIN:
        return _source_side_of(
            source_spec, name, [t.partition for t in tasks if t.partition is not None], where, batch_rows
        )
    if not isinstance(source, SQLSource):
        return None
    if source_spec.type == "duckdb":
        side: Any = DuckDBSide(source_spec.path, source.relation(), [], label=where)
    elif source_spec.type in ("postgres", "mysql"):
        side = DatabaseSide(source.url, source.relation(), [], label=where)
    else:
        return None
    if window is not None:
        side.where = window_predicates(window, side.quote, side.dialect)
    return side


def _source_side_of(
    source_spec: Any, name: str, partitions: list[Partition] | None, where: str, batch_rows: int = 10_000
) -> ReaderSide:
    """A reader's batches (of ``partitions``, or of every partition it finds) aggregated by DuckDB."""
    source = source_class(source_spec.type)(name, source_spec, batch_rows=batch_rows)
    parts = partitions if partitions is not None else source.partitions()

    def batches() -> Iterator[pa.RecordBatch]:
        for partition in parts:
            for batch, _ in source.read(partition):
                yield batch

    return ReaderSide(batches, label=where)


def _quoted(table: str, mark: str) -> str:
    return ".".join(mark + part.replace(mark, mark * 2) + mark for part in table.split("."))


def _compare(
    source: Side, target: Side, dest: Any, lin: Lineage, columns: list[str] | None, observed: dict[str, Any]
) -> int:
    """Fingerprint both sides; on a difference, name the first differing keys. Returns the target's rows."""
    problems: list[str] = observed["problems"]
    source_types, target_types = source.types(), target.types()
    held = {c: s for c in target_types if (s := lin.of(c)) is not None and s in source_types}
    both = list(held)
    if changed := [c for c in dest.primary_key if c in target_types and c not in held]:
        raise _CountsOnly(f"key column {changed[0]} is changed on the way, or not in the source")
    missing = [c for c in [*dest.primary_key, *(columns or [])] if c not in held]
    if missing:
        problems.append(
            f"column {missing[0]} is not on both sides unchanged (source has {sorted(source_types)}, target {sorted(target_types)})"
        )
        return 0
    compared = columns if columns is not None else both
    key = dest.primary_key or compared
    if any(held[c] != c for c in held) or len(held) < len(source_types):
        # The source's columns under the target's names, and only those: one scan still.
        where = f" WHERE {' AND '.join(source.where)}" if source.where else ""
        source.relation = f"(SELECT {', '.join(f'{source.quote(held[c])} AS {source.quote(c)}' for c in held)} FROM {source.relation}{where}) AS _aetl_s"
        source.where = []
        source_types = {c: source_types[held[c]] for c in held}
    shape = Shape(
        key=[(c, family(target_types[c])) for c in key],
        columns=[(c, family(target_types[c])) for c in dict.fromkeys([*key, *compared])],
    )
    observed["columns"] = [c for c, _ in shape.columns]
    observed["key"] = [c for c, _ in shape.key]
    src, tgt = fingerprint(source, shape), fingerprint(target, shape)
    observed["source"], observed["target"] = src.as_dict(), tgt.as_dict()
    if src.rows != tgt.rows:
        problems.append(f"the source has {src.rows:,} rows, the target {tgt.rows:,}")
    if (src.key_sum, src.key_xor) != (tgt.key_sum, tgt.key_xor):
        problems.append("the key sets differ")
    elif (src.row_sum, src.row_xor) != (tgt.row_sum, tgt.row_xor):
        problems.append("values differ")
    if src != tgt:
        observed["differing_keys"] = [str(d) for d in first_differences(source, target, shape)]
    return tgt.rows


def verdict(observed: dict[str, Any]) -> tuple[bool, str]:
    """Passed or not, and why (for quality/verdicts.py)."""
    problems = observed["problems"]
    if problems:
        keys = observed["differing_keys"]
        return False, "; ".join(problems) + (f"; first differing keys: {', '.join(keys)}" if keys else "")
    if observed["mode"] == "hash":
        rows = observed["target"]["rows"]
        return True, f"{rows:,} rows match the source by count, key set and hash of {', '.join(observed['columns'])}"
    return (
        True,
        f"counts only ({observed['reason']}): {observed['read']:,} read, {observed['loaded']:,} loaded, {observed['quarantined']:,} quarantined",
    )
