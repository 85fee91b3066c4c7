"""`agent-etl validate` reports, with its line, every problem `run` would meet, without moving data."""

import json
import sqlite3
from pathlib import Path

import pytest
from tests.test_run_failures import agent_etl

MISSING_FILE = """\
name: p
sources:
  people: {type: file, path: missing.csv}
destination: {type: duckdb, path: out.duckdb, table: people}
"""
MISSING_TABLE = """\
name: p
sources:
  people: {type: sqlite, path: db.sqlite, table: nope}
destination: {type: duckdb, path: out.duckdb, table: people}
"""
UNSET = """\
name: p
sources:
  people:
    type: file
    path: "${env:AGENT_ETL_TEST_NOPE}/people.csv"
destination: {type: duckdb, path: out.duckdb, table: people}
"""
CHECK = """\
name: p
sources:
  people: {type: file, path: people.csv}
quality:
  - in_range: {column: age, min: BOUND}
destination: {type: duckdb, path: out.duckdb, table: people}
"""


def validate(tmp_path: Path, spec: str, *options: str) -> tuple[int, list[str]]:
    (tmp_path / "p.yaml").write_text(spec)
    result = agent_etl("validate", *options, "p.yaml", cwd=tmp_path)
    assert result.stdout == "" or "--json" in options
    return result.returncode, [line for line in result.stderr.splitlines() if not line.startswith("note:")]


def test_a_missing_file_or_table_is_a_problem_with_its_line(tmp_path: Path) -> None:
    assert validate(tmp_path, MISSING_FILE) == (
        2,
        [
            f"p.yaml:3: sources.people.path: file not found: {tmp_path}/missing.csv (check `path:` in the spec)",
            "1 problem(s) found",
        ],
    )
    sqlite3.connect(tmp_path / "db.sqlite").execute("CREATE TABLE people (id INTEGER)").connection.commit()
    code, lines = validate(tmp_path, MISSING_TABLE)
    assert code == 2 and lines[-1] == "1 problem(s) found"
    assert lines[0].startswith("p.yaml:3: sources.people.table: ") and "no such table: nope" in lines[0]
    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    document = json.loads(agent_etl("validate", "--json", "p.yaml", cwd=tmp_path).stdout)
    assert (document["valid"], document["problems"]) == (
        False,
        [
            {
                "file": "p.yaml",
                "line": 3,
                "path": "sources.people.path",
                "message": f"file not found: {tmp_path}/missing.csv (check `path:` in the spec)",
            }
        ],
    )


@pytest.mark.parametrize("options", [(), ("--offline",)])
def test_an_unset_variable_is_a_problem_with_its_line_in_validate_and_run(
    tmp_path: Path, options: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_ETL_TEST_NOPE", raising=False)
    line = "p.yaml:5: sources.people.path: environment variable AGENT_ETL_TEST_NOPE is not set (export AGENT_ETL_TEST_NOPE=... before the run)"
    assert validate(tmp_path, UNSET, *options) == (2, [line, "1 problem(s) found"])
    ran = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert (ran.returncode, ran.stderr.splitlines()) == (2, [f"error: {line}"])


@pytest.mark.parametrize("options", [(), ("--offline",)])
def test_a_bound_that_is_no_number_date_or_timestamp_is_a_problem_with_its_line(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    (tmp_path / "people.csv").write_text("id,age\n1,30\n2,-1\n")
    line = "p.yaml:5: quality[0].in_range: min: 'zero' is not a number, a date or a timestamp (in_range compares those; for text use accepted_values or regex)"
    assert validate(tmp_path, CHECK.replace("BOUND", "zero"), *options) == (2, [line, "1 problem(s) found"])
    ran = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert (ran.returncode, ran.stderr.splitlines()) == (2, [f"error: {line}"])


def test_a_bound_of_another_type_than_its_column_is_a_problem_not_a_bug(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,age\n1,30\n2,-1\n")
    spec = CHECK.replace("BOUND", '"2024-01-01"')
    message = "a value does not fit column age (int64): Conversion Error: Could not convert string '2024-01-01' to INT64 (give values of the column's type)"
    assert validate(tmp_path, spec) == (2, [f"p.yaml:5: quality[0]: {message}", "1 problem(s) found"])
    ran = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert ran.returncode == 1
    assert [line for line in ran.stderr.splitlines() if line.startswith("error:")] == [
        f"error: check in_range(age): {message}"
    ]
    assert "bug" not in ran.stderr
    # Failed at plan time, before any task: resume would fail the same way.
    assert (
        "fix what the error names (the spec, a path, a table, the environment) and run again" in ran.stderr
        and "agent-etl resume" not in ran.stderr
    )
    assert not (tmp_path / "out.duckdb").exists()
    ok = (
        agent_etl("validate", "p.yaml", cwd=tmp_path)
        if (tmp_path / "p.yaml").write_text(CHECK.replace("BOUND", "0"))
        else None
    )
    assert ok is not None and ok.returncode == 0 and ok.stdout.strip() == "p.yaml: pipeline p is valid"
