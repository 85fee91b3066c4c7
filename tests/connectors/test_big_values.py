"""A big text value loads up to the destination's documented limit, within AGENT_ETL_MEMORY_LIMIT=512MB.

Over the limit (a quarter of the memory budget, and never more than the
engine's own: MariaDB's max_allowed_packet, 16 MiB on these machines), the row
goes to quarantine with its line, its size and the limit; the other rows load.
Before, a 50 MiB field failed the DuckDB load with an out-of-memory error and
the hint "a column changed type between batches".
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from tests.conftest import run_sql
from tests.connectors.conftest import Harness, make_harness

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec

MIB = 1 << 20


def big_csv(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("id,v\n1,small\n2,")
        f.write("x" * size)
        f.write("\n3,after\n")
    return path


def run(tmp_path: Path, h: Harness, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AGENT_ETL_MEMORY_LIMIT", "512MB")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"name: big\nsources:\n  s: {{type: file, path: big.csv}}\ndestination: {json.dumps({'type': h.kind, **h.destination_fields})}\n"
    )
    return run_pipeline(parse_spec(spec.read_text(), file=str(spec)), Settings())


def lengths(h: Harness, tmp_path: Path) -> list[tuple]:
    sql = f"SELECT id, length(v) FROM {h.table} ORDER BY id"
    if h.kind == "duckdb":
        with duckdb.connect(h.destination_fields["path"], read_only=True) as conn:
            return conn.execute(sql).fetchall()
    if h.kind == "sqlite":
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            return conn.execute(sql).fetchall()
    if h.kind == "file":
        table = pq.read_table(next(p for p in Path(h.destination_fields["path"]).glob("*.parquet")))
        return sorted(
            (i, len(v)) for i, v in zip(table.column("id").to_pylist(), table.column("v").to_pylist(), strict=True)
        )
    return run_sql(h.destination_fields["url"], sql)


@pytest.mark.parametrize("kind", ["duckdb", "postgres", "sqlite", "file"])
def test_a_50_mib_value_loads_at_the_default_memory_limit(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_harness(kind, request, tmp_path)
    big_csv(tmp_path, 50 * MIB)
    result = run(tmp_path, h, monkeypatch)
    assert result.status == "succeeded", result.error
    assert [(c["rows"], c["quarantined_rows"]) for c in result.commits] == [(3, 0)]
    assert lengths(h, tmp_path) == [(1, 5), (2, 50 * MIB), (3, 5)]


def test_a_value_over_max_allowed_packet_is_quarantined_with_its_size(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_harness("mysql", request, tmp_path)
    path = big_csv(tmp_path, 17 * MIB)
    result = run(tmp_path, h, monkeypatch)
    assert result.status == "succeeded", result.error
    assert [(c["rows"], c["quarantined_rows"]) for c in result.commits] == [(2, 1)]
    assert lengths(h, tmp_path) == [(1, 5), (3, 5)]
    url = h.destination_fields["url"]
    assert run_sql(url, "SELECT check_name, reason, origin, row_json FROM t__quarantine") == [
        (
            "value_size",
            "column v holds 17,825,792 bytes, over this destination's limit of 16,777,216 bytes (the server's max_allowed_packet)",
            f"{path} record 2",
            '{"id": 2, "v": "<17,825,792 bytes>"}',
        )
    ]


def test_duckdb_names_a_type_change_between_batches_from_the_error_itself(tmp_path: Path) -> None:
    import pyarrow as pa

    from agent_orchestrated_etl.connectors.duckdb import DuckDBDestination, DuckDBDestinationSpec
    from agent_orchestrated_etl.exceptions import DataError

    dest = DuckDBDestination(
        DuckDBDestinationSpec(type="duckdb", path=str(tmp_path / "w.duckdb"), table="t"), memory_limit_bytes=512 * MIB
    )
    try:
        dest.begin("r", "t0")
        dest.write_batch("r", "t0", pa.record_batch({"n": pa.array([1], pa.int64())}))
        dest.write_batch("r", "t0", pa.record_batch({"n": pa.array(["one"])}))
        with pytest.raises(DataError) as caught:
            dest.finish("r", "t0")
        assert caught.value.hint == "a column changed type between batches; CAST it in a transform"
        assert "Could not convert string 'one' to INT64" in caught.value.message
    finally:
        dest.close()


def quarantined(h: Harness, tmp_path: Path) -> list[tuple]:
    sql = "SELECT check_name, reason, origin, row_json FROM t__quarantine"
    if h.kind == "duckdb":
        with duckdb.connect(h.destination_fields["path"], read_only=True) as conn:
            return conn.execute(sql).fetchall()
    if h.kind == "sqlite":
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            return conn.execute(sql).fetchall()
    if h.kind == "file":
        table = pq.read_table(next(Path(h.destination_fields["path"], "_quarantine").glob("*.parquet")))
        return [tuple(r[c] for c in ("check_name", "reason", "origin", "row_json")) for r in table.to_pylist()]
    return run_sql(h.destination_fields["url"], sql.replace("t__quarantine", f"{h.table}__quarantine"))


@pytest.mark.parametrize("kind", ["duckdb", "postgres", "sqlite", "file"])
def test_a_value_over_a_quarter_of_the_budget_is_quarantined(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_harness(kind, request, tmp_path)
    path = big_csv(tmp_path, 33 * MIB)
    monkeypatch.setenv("AGENT_ETL_MEMORY_LIMIT", "128MB")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"name: big\nsources:\n  s: {{type: file, path: big.csv}}\ndestination: {json.dumps({'type': h.kind, **h.destination_fields})}\n"
    )
    result = run_pipeline(parse_spec(spec.read_text(), file=str(spec)), Settings())
    assert result.status == "succeeded", result.error
    assert [(c["rows"], c["quarantined_rows"]) for c in result.commits] == [(2, 1)]
    assert lengths(h, tmp_path) == [(1, 5), (3, 5)]
    assert quarantined(h, tmp_path) == [
        (
            "value_size",
            "column v holds 34,603,008 bytes, over this destination's limit of 33,554,432 bytes (a quarter of AGENT_ETL_MEMORY_LIMIT)",
            f"{path} record 2",
            '{"id": 2, "v": "<34,603,008 bytes>"}',
        )
    ]
