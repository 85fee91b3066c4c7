"""Checks evaluated as SQL over the rows staged in DuckDB quarantine exactly what the Arrow path's checks do."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import parse_spec

ROWS: list[dict[str, Any]] = [
    {"id": 1, "email": "ann@example.com", "age": 34, "country": "NL"},
    {"id": 2, "email": "not-an-email", "age": -1, "country": "FR"},
    {"id": 3, "email": None, "age": 150, "country": "NL"},
    {"id": 3, "email": "cy@x.org", "age": 40, "country": "XX"},
    {"id": 4, "email": "dee@x.io", "age": None, "country": "DE"},
    {"id": None, "email": "eve@y.net", "age": 18, "country": None},
    {"id": 5, "email": "fay@z.com", "age": 61, "country": "FR"},
    {"id": 5, "email": "gus@z.com", "age": 62, "country": "FR"},
    {"id": 5, "email": None, "age": 200, "country": "ZZ"},
]

# Severity warn: the runs commit, so both paths' loaded and quarantined rows can be compared.
CHECKS = {
    "not_null": ["not_null: [id, email]"],
    "unique": ["unique: [id]"],
    "accepted_values": ["accepted_values: {column: country, values: [NL, FR, DE]}"],
    "in_range": ["in_range: {column: age, min: 0, max: 120}"],
    "regex": ["regex: {column: email, pattern: '^[^@]+@[^@]+[.][a-z]+$'}"],
    "sql": ["sql: \"age < 100 OR country = 'NL'\""],
    "kept": ["in_range: {column: age, min: 0, max: 120}, keep_in_target: true"],
    "several": ["not_null: [email]", "unique: [id]", "in_range: {column: age, max: 100}"],
}


def _source(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    table = pa.Table.from_pylist(
        ROWS,
        schema=pa.schema([("id", pa.int64()), ("email", pa.string()), ("age", pa.int64()), ("country", pa.string())]),
    )
    if kind == "parquet":
        pq.write_table(table, tmp_path / "people.parquet")
        return f'{{type: file, path: "{tmp_path / "people.parquet"}"}}'
    if kind == "csv":
        lines = ["id,email,age,country"] + [
            ",".join("" if r[c] is None else str(r[c]) for c in ("id", "email", "age", "country")) for r in ROWS
        ]
        (tmp_path / "people.csv").write_text("\n".join(lines) + "\n")
        return f'{{type: file, path: "{tmp_path / "people.csv"}"}}'
    url = request.getfixturevalue("postgres_url")
    schema = f"aetl_{uuid.uuid4().hex[:10]}"
    run_sql(url, f"CREATE SCHEMA {schema}")
    request.addfinalizer(lambda: run_sql(url, f"DROP SCHEMA {schema} CASCADE"))
    values = ", ".join(
        "(" + ", ".join("NULL" if r[c] is None else repr(r[c]) for c in ("id", "email", "age", "country")) + ")"
        for r in ROWS
    )
    run_sql(
        url,
        f"CREATE TABLE {schema}.people (id bigint, email text, age bigint, country text)",
        f"INSERT INTO {schema}.people VALUES {values}",
    )
    return f'{{type: postgres, url: "{url}", table: {schema}.people}}'


def _run(source: str, checks: list[str], out: Path) -> RunResult:
    quality = "".join(f"\n  - {{{c}, severity: warn}}" for c in checks)
    text = f"""
name: people_copy
sources:
  people: {source}
destination: {{type: duckdb, path: "{out}", table: people, write: replace}}
quality:{quality}
"""
    return run_pipeline(parse_spec(text, file="p.yaml"), Settings())


def _loaded(out: Path) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, dict[str, Any]]], list[str]]:
    with duckdb.connect(str(out), read_only=True) as con:
        rows = con.execute("SELECT * FROM people ORDER BY ALL").fetchall()
        quarantine = con.execute("SELECT check_name, reason, row_json, origin FROM people__quarantine").fetchall()
    entries = [(check, reason, json.loads(row)) for check, reason, row, _ in quarantine]
    return rows, sorted(entries, key=repr), [origin for *_, origin in quarantine]


@pytest.mark.parametrize("source_kind", ["parquet", "csv", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_engine_checks_quarantine_what_the_arrow_path_does(
    source_kind: str, check: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(source_kind, tmp_path, request)
    engine = _run(source, CHECKS[check], tmp_path / "engine.duckdb")
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", "false")
    arrow = _run(source, CHECKS[check], tmp_path / "arrow.duckdb")

    assert any("evaluate" in d["choice"] and "checks" in d["choice"] for d in engine.decisions), engine.decisions
    assert not any("evaluate" in d["choice"] and "checks" in d["choice"] for d in arrow.decisions), arrow.decisions
    engine_rows, engine_quarantine, engine_origins = _loaded(tmp_path / "engine.duckdb")
    arrow_rows, arrow_quarantine, arrow_origins = _loaded(tmp_path / "arrow.duckdb")
    assert engine_quarantine, "every check here fails some row"
    assert engine_quarantine == arrow_quarantine
    assert engine_rows == arrow_rows
    assert (engine.rows_written, engine.rows_quarantined) == (arrow.rows_written, arrow.rows_quarantined)
    assert engine.ok and arrow.ok
    assert [(c["check"], c["rows_checked"], c["rows_failed"]) for c in engine.quality] == [
        (c["check"], c["rows_checked"], c["rows_failed"]) for c in arrow.quality
    ]
    # Files keep the Arrow path's positions (a CSV line, a Parquet record); a PostgreSQL table copied
    # by DuckDB names the row's number in the ordered copy, as its Arrow read numbers rows in read order.
    if source_kind == "postgres":
        assert all(" record " in o for o in engine_origins), engine_origins
    else:
        assert sorted(engine_origins) == sorted(arrow_origins)
