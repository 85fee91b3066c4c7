"""Resume verifies a checkpoint against the staging it points to before trusting it (issue 11, item 11)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store.records import RunStore

A_ROWS = 1000

SPEC = """\
name: two_files
sources:
  a: {type: file, path: a.csv}
  b: {type: file, path: b.csv}
destinations:
  - {DEST_A, input: a}
  - {DEST_B, input: b}
"""


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres), "parquet"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict]:
    """How to point a destination at the target, drop its staging and count its rows."""
    if request.param == "duckdb":
        path = tmp_path / "out.duckdb"

        def drop_staging() -> int:
            con = duckdb.connect(str(path))
            names = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '_agent_etl_stg_')"
                ).fetchall()
            ]
            for name in names:
                con.execute(f'DROP TABLE "{name}"')
            con.close()
            return len(names)

        def count(table: str) -> int:
            con = duckdb.connect(str(path), read_only=True)
            try:
                return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            finally:
                con.close()

        yield {
            "dest": lambda t: f"type: duckdb, path: out.duckdb, table: {t}",
            "drop_staging": drop_staging,
            "count": count,
        }
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        schema = f"stg_{uuid.uuid4().hex[:10]}"
        run_sql(url, f"CREATE SCHEMA {schema}")

        def drop_staging() -> int:
            names = run_sql(
                url,
                f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}' AND starts_with(tablename, '_agent_etl_stg_')",
            )
            run_sql(url, *(f'DROP TABLE {schema}."{n}"' for (n,) in names)) if names else None
            return len(names)

        yield {
            "dest": lambda t: f'type: postgres, url: "{url}", table: {schema}.{t}',
            "drop_staging": drop_staging,
            "count": lambda t: run_sql(url, f"SELECT count(*) FROM {schema}.{t}")[0][0],
        }
        run_sql(url, f"DROP SCHEMA {schema} CASCADE")
    else:

        def drop_staging() -> int:
            files = list((tmp_path / "out_a" / "_staging").rglob("*.parquet"))
            for file in files:
                file.unlink()
            return len(files)

        def count(table: str) -> int:
            directory = tmp_path / f"out_{table}"
            return sum(
                pq.ParquetFile(directory / f).metadata.num_rows
                for f in json.loads((directory / "_manifest.json").read_text())["files"]
            )

        yield {
            "dest": lambda t: f"type: file, path: out_{t}, format: parquet",
            "drop_staging": drop_staging,
            "count": count,
        }


def test_a_checkpoint_whose_staging_was_dropped_is_read_again(tmp_path: Path, target: dict) -> None:
    (tmp_path / "a.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(A_ROWS)))
    spec = tmp_path / "p.yaml"
    spec.write_text(SPEC.replace("DEST_A", target["dest"]("a")).replace("DEST_B", target["dest"]("b")))
    first = run_pipeline(load_spec(spec), Settings())
    assert first.status == "failed"  # b.csv is missing; a is staged and checkpointed
    assert target["drop_staging"]() >= 1

    (tmp_path / "b.csv").write_text("id\n10\n20\n")
    second = resume_run(first.run_id, Settings())
    assert second.status == "succeeded", second.error
    assert (target["count"]("a"), target["count"]("b")) == (A_ROWS, 2)
    assert second.rows_written == A_ROWS + 2
    history = RunStore(Settings().store_url).get_run(first.run_id)["events"]
    again = [(e["subject"], e["reason"]) for e in history if e["kind"] == "decision" and e["choice"] == "read it again"]
    [(subject, reason)] = again
    assert (
        subject.startswith("task a[0]>")
        and reason == f"its checkpoint says {A_ROWS:,} rows were staged, but its staging holds 0"
    )
    started = [e["task_id"] for e in history if e["kind"] == "task_started"]
    assert started.count(subject.removeprefix("task ")) == 2
