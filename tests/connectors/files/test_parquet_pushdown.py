"""Local Parquet -> DuckDB: DuckDB reads the files itself when no Python step needs the rows."""

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec


def write_files(directory: Path) -> None:
    for n in range(3):
        pq.write_table(
            pa.table({"id": pa.array(range(n * 100, n * 100 + 100), pa.int64()), "part": [f"p{n}"] * 100}),
            directory / f"part{n}.parquet",
        )


def run(directory: Path, extra: str = "") -> tuple[str, list[dict[str, str]]]:
    text = f"""
name: parquet_copy
sources:
  parts: {{type: file, path: "{directory}/*.parquet"}}
destination: {{type: duckdb, path: "{directory}/w.duckdb", table: parts, write: replace}}
{extra}
"""
    result = run_pipeline(parse_spec(text, file=str(directory / "p.yaml")), Settings())
    assert result.status == "succeeded", result.error
    return result.run_id, result.decisions


def test_parquet_files_are_copied_by_duckdb_itself(tmp_path: Path) -> None:
    write_files(tmp_path)
    _, decisions = run(tmp_path)
    assert any(
        d["choice"].startswith("push the copy down") for d in decisions if d["subject"] == "destination parts"
    ), decisions
    assert sum(1 for d in decisions if d["choice"].startswith("assign to") and "pushdown" in d["reason"]) == 3
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), sum(id), count(DISTINCT part) FROM parts").fetchone() == (
        300,
        sum(range(300)),
        3,
    )


def test_a_row_check_runs_in_duckdb_over_the_copied_files(tmp_path: Path) -> None:
    write_files(tmp_path)
    _, decisions = run(tmp_path, "quality:\n  - in_range: {column: id, max: 249}\n    severity: warn\n")
    [choice] = [d["choice"] for d in decisions if d["subject"] == "destination parts" and "push" in d["choice"]]
    assert choice.startswith("push the copy down") and choice.endswith(
        "evaluates the checks as SQL over the staged rows"
    )
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM parts").fetchone() == (250,)
    origins = {r[0] for r in con.execute("SELECT origin FROM parts__quarantine").fetchall()}
    assert origins == {f"{tmp_path}/part2.parquet record {n}" for n in range(51, 101)}


def test_a_unique_check_across_files_is_not_pushed_down(tmp_path: Path) -> None:
    write_files(tmp_path)
    _, decisions = run(tmp_path, "quality:\n  - unique: [part]\n    severity: warn\n")
    reasons = " ".join(d["reason"] for d in decisions if d["subject"] == "destination parts")
    assert "check unique(part) compares rows across 3 partitions" in reasons
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM parts").fetchone() == (3,)
    assert con.execute("SELECT count(*) FROM parts__quarantine").fetchone() == (297,)
