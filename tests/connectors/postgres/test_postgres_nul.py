"""A NUL byte in a text value: PostgreSQL cannot store it, so that row is quarantined with its position; the file loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec

CHECK = "quality:\n  - {not_null: [id], input: people}\n"


@pytest.mark.parametrize("checks", ["", CHECK], ids=["plain", "with-a-check"])
def test_a_nul_byte_quarantines_its_row_and_the_rest_of_the_file_loads(
    pg_schema: tuple[str, str], tmp_path: Path, checks: str
) -> None:
    url, schema = pg_schema
    rows = [f"{i},name {i}" for i in range(1, 11)]
    rows[3] = "4,bad\x00name"  # record 4, line 5
    rows[7] = "8,\x00"
    (tmp_path / "people.csv").write_bytes(("id,name\n" + "\n".join(rows) + "\n").encode())
    text = f"""
name: people
sources:
  people: {{type: file, path: "{tmp_path / "people.csv"}", format: csv}}
destination: {{type: postgres, url: "{url}", table: {schema}.people, write: replace}}
{checks}"""
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert result.ok, result.error
    assert (result.rows_written, result.rows_quarantined) == (8, 2)
    assert run_sql(url, f"SELECT id, name FROM {schema}.people ORDER BY id") == [
        (i, f"name {i}") for i in (1, 2, 3, 5, 6, 7, 9, 10)
    ]
    quarantined = run_sql(
        url, f"SELECT check_name, reason, origin, row_json FROM {schema}.people__quarantine ORDER BY origin"
    )
    reason = "column name holds a NUL byte (\\x00), which PostgreSQL text cannot store"
    assert [(c, r, o, json.loads(j)) for c, r, o, j in quarantined] == [
        ("destination", reason, f"{tmp_path}/people.csv record 4", {"id": 4, "name": "bad\x00name"}),
        ("destination", reason, f"{tmp_path}/people.csv record 8", {"id": 8, "name": "\x00"}),
    ]
