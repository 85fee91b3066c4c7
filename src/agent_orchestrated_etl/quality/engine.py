"""Row checks evaluated inside DuckDB over a table already staged there, instead of batch by batch in Python.

When a destination is DuckDB, its raw rows are staged first (by DuckDB's own copy
where the source allows it), then one query computes every check's flag over the
staged table, a second fetches only the failing rows (for their quarantine
entries, written by ``CheckRun`` exactly as on the Arrow path), and one DELETE
takes out the rows no check keeps. Passing rows never leave the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.quality.checks import Check, UniqueCheck
from agent_orchestrated_etl.quality.evaluate import CheckRun
from agent_orchestrated_etl.transform.sql import FLAG_PREFIX, ROW, ident

#: Check kinds the engine evaluates; the others (dataset checks, referential) keep their batch path.
ENGINE_KINDS = frozenset({"not_null", "in_range", "regex", "accepted_values", "sql", "unique"})


def engine_blocker(checks: list[Check], partitions: int) -> str | None:
    """Why these checks cannot run as SQL over one task's staged table (None: they can)."""
    for check in checks:
        if check.kind not in ENGINE_KINDS:
            return f"check {check.label} ({check.kind}) is judged on the batches"
        if check.level == "all_rows" and partitions > 1:
            # Each partition stages on its own; a duplicate across two of them would go unseen.
            return f"check {check.label} compares rows across {partitions} partitions"
    return None


def check_staged(
    cursor: Any,
    table: str,
    checks: list[tuple[int, Check]],
    *,
    run_id: str,
    task_id: str,
    scope: str,
    input_name: str,
    locate: Callable[[int | None], Position | None],
    origin: str,
    quarantine: Callable[[pa.RecordBatch], None],
    batch_rows: int,
    ordinal: str | None,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Evaluate ``checks`` over staged ``table``; returns (rows kept, rows quarantined, check results).

    ``ordinal`` names the table's column of row ordinals (``locate`` maps them to
    source positions); None uses DuckDB's ``rowid``, the row's place in the staged
    copy, which keeps the source's order when the copy did. "Earlier row" for
    ``unique`` means the smaller ordinal, as on the Arrow path.
    """
    run = CheckRun(
        checks,
        run_id=run_id,
        task_id=task_id,
        scope=scope,
        input_name=input_name,
        locate=locate,
        origin=origin,
        cursor=lambda: cursor,
    )
    name = ident(table)
    row = ident(ordinal) if ordinal is not None else "rowid"
    exprs: list[tuple[str, Check]] = []
    for _, check in checks:
        if isinstance(check, UniqueCheck):
            keys = ", ".join(ident(c) for c in check.unique)
            present = " AND ".join(f"{ident(c)} IS NOT NULL" for c in check.unique)
            # One integer per key is grouped (and spills), as on the Arrow path.
            expr = f"(({present}) AND {row} NOT IN (SELECT min({row}) FROM {name} WHERE {present} GROUP BY {keys}))"
        else:
            expr = f"({check.failed_sql()})"
        exprs.append((expr, check))
    flags = ", ".join(
        f"{expr} AS {ident(FLAG_PREFIX + str(i))}" for (expr, _), (i, _) in zip(exprs, checks, strict=True)
    )
    numbered = "" if ordinal is not None else f", rowid AS {ident(ROW)}"
    flagged = f"SELECT *{numbered}, {flags} FROM {name}"
    counts = ", ".join(f"count_if({ident(FLAG_PREFIX + str(i))})" for i, _ in checks)
    total, *failed = cursor.execute(f"SELECT count(*), {counts} FROM ({flagged})").fetchone()
    for result, count in zip(run.results, failed, strict=True):
        result["rows_checked"] = int(total)
        result["rows_failed"] = int(count or 0)
    quarantined = 0
    if any(failed):
        any_flag = " OR ".join(ident(FLAG_PREFIX + str(i)) for i, _ in checks)
        reader = cursor.execute(f"SELECT * FROM ({flagged}) WHERE {any_flag} ORDER BY {ident(ROW)}")
        # Only failing rows come to Python, for their reasons, a batch at a time.
        for batch in reader.to_arrow_reader(batch_rows):
            quarantine(run.quarantine_rows(batch))
            quarantined += batch.num_rows
    dropping = [expr for expr, check in exprs if not check.keep_in_target]
    deleted = 0
    if dropping and any(count for (_, check), count in zip(exprs, failed, strict=True) if not check.keep_in_target):
        (deleted,) = cursor.execute(f"DELETE FROM {name} WHERE {' OR '.join(dropping)}").fetchone()
    if ordinal is not None:
        cursor.execute(f"ALTER TABLE {name} DROP COLUMN {row}")
    return int(total) - int(deleted), quarantined, run.results
