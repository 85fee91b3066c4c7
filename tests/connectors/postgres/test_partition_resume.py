"""A partitioned PostgreSQL read that fails in one range resumes by reading only that range."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.postgres import PostgresSource
from agent_orchestrated_etl.exceptions import DataError
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.spec import parse_spec
from agent_orchestrated_etl.store.records import RunStore


def test_resume_rereads_only_the_unfinished_partition(
    pg_schema: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_ETL_PUSHDOWN", "false")  # the rows in Python, where the injected read fails
    url, schema = pg_schema
    run_sql(url, f"CREATE TABLE {schema}.t AS SELECT i AS id, 'v' || i AS v FROM generate_series(1, 4000) i")
    out = tmp_path / "w.duckdb"
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f'name: parts\nsources:\n  t: {{type: postgres, url: "{url}", table: {schema}.t, partition: {{column: id, parts: 4}}}}\n'
        f'destination: {{type: duckdb, path: "{out}", table: t}}\n'
        "quality:\n  - {not_null: [id], input: t}\n"
    )
    read = PostgresSource.read

    def third_range_breaks(self: PostgresSource, partition):  # type: ignore[no-untyped-def]
        if partition.key == "id:3/4":
            raise DataError("injected: this range cannot be read", where="source t")
        yield from read(self, partition)

    monkeypatch.setattr(PostgresSource, "read", third_range_breaks)
    first = run_pipeline(parse_spec(spec.read_text(), file=str(spec)), Settings())
    assert first.status == "failed" and "injected" in first.error

    monkeypatch.setattr(PostgresSource, "read", read)
    second = resume_run(first.run_id, Settings())
    assert second.status == "succeeded"
    with duckdb.connect(str(out), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (4000, 4000)
    history = RunStore(Settings().store_url).get_run(first.run_id)["events"]
    started = [e["task_id"] for e in history if e["kind"] == "task_started"]
    assert started.count("t[2]>t") == 2  # the broken range, read again
    reused = sorted(
        e["subject"] for e in history if e["kind"] == "decision" and e["choice"] == "reuse its staged output"
    )
    assert reused == ["task t[0]>t", "task t[1]>t", "task t[3]>t"]
