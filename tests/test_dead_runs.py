"""A run whose process died is settled from its destinations' ledgers; a new run supersedes failed runs' staging.

Issue 11, items 10 and 12 and the staging cleanup. The runs are real processes,
killed by SIGKILL right before or right after their destination commits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store.records import RunStore

# Runs the pipeline and dies by SIGKILL at the destination's commit: just before it, or just after it.
KILLED_AT_COMMIT = """
import os, signal, sys
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.duckdb import DuckDBDestination
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import load_spec

real = DuckDBDestination.commit

def commit(self, *args, **kwargs):
    if sys.argv[2] == "after":
        real(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

DuckDBDestination.commit = commit
run_pipeline(load_spec(sys.argv[1]), Settings())
"""

INCREMENTAL = """\
name: orders
sources:
  orders: {{type: sqlite, url: "sqlite:///{db}", table: orders, incremental: {{cursor: id}}}}
destination: {{type: duckdb, path: out.duckdb, table: orders, write: append}}
"""


def orders_spec(tmp_path: Path, rows: range) -> Path:
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, amount REAL)")
        con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i / 2) for i in rows])
    spec = tmp_path / "p.yaml"
    spec.write_text(INCREMENTAL.format(db=db))
    return spec


def killed_run(spec: Path, at: str) -> str:
    process = subprocess.run(
        [sys.executable, "-c", KILLED_AT_COMMIT, str(spec), at],
        cwd=spec.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -9, process.stderr[-3000:]
    [record] = RunStore(Settings().store_url).list_runs()
    assert record["status"] == "running"  # as the killed process left it
    return record["run_id"]


def agent_etl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )


def count(path: Path, sql: str) -> tuple:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def decisions(run_id: str) -> list[tuple[str, str, str]]:
    return [
        (e["subject"], e["choice"], e["reason"])
        for e in RunStore(Settings().store_url).get_run(run_id)["events"]
        if e["kind"] == "decision"
    ]


def test_runs_shows_a_run_killed_after_its_commit_as_succeeded(store_url: str, tmp_path: Path) -> None:
    run_id = killed_run(orders_spec(tmp_path, range(1, 1001)), "after")
    listed = agent_etl(tmp_path, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "succeeded")]
    assert (
        "run",
        "mark it succeeded",
        "its process is gone; every destination's loads ledger records its commit (1)",
    ) in decisions(run_id)
    assert count(tmp_path / "out.duckdb", "SELECT count(*), count(DISTINCT id) FROM orders") == (1000, 1000)


def test_the_next_run_settles_a_run_killed_after_its_commit_and_reads_after_its_window(
    store_url: str, tmp_path: Path
) -> None:
    spec = orders_spec(tmp_path, range(1, 1001))
    dead = killed_run(spec, "after")
    orders_spec(tmp_path, range(1001, 1201))
    second = run_pipeline(load_spec(spec), Settings())
    assert second.status == "succeeded", second.error
    assert second.rows_written == 200
    assert count(tmp_path / "out.duckdb", "SELECT count(*), count(DISTINCT id), max(id) FROM orders") == (
        1200,
        1200,
        1200,
    )
    store = RunStore(Settings().store_url)
    assert store.get_run(dead)["status"] == "succeeded"
    said = {(s, c) for s, c, _ in decisions(second.run_id)}
    assert {("pipeline orders", "take over its lock"), (f"run {dead}", f"mark run {dead} succeeded")} <= said


def test_a_run_killed_before_its_commit_shows_as_crashed_and_resumes_exactly(store_url: str, tmp_path: Path) -> None:
    run_id = killed_run(orders_spec(tmp_path, range(1, 1001)), "before")
    listed = agent_etl(tmp_path, "runs", "--json")
    [record] = json.loads(listed.stdout)
    assert (record["status"], record["error"]) == (
        "failed",
        f"crashed: its process is gone and 0 of 1 destination(s) record its commit; its staging is kept for `agent-etl resume {run_id}`",
    )
    assert count(
        tmp_path / "out.duckdb", "SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_agent_etl_stg_')"
    ) == (1,)
    resumed = resume_run(run_id, Settings())
    assert resumed.status == "succeeded", resumed.error
    assert count(tmp_path / "out.duckdb", "SELECT count(*), count(DISTINCT id) FROM orders") == (1000, 1000)
    assert [d for d in decisions(run_id) if d[1] == "reuse its staged output"] != []


TWO_FILES = """\
name: two_files
sources:
  a: {type: file, path: a.csv}
  b: {type: file, path: b.csv}
destinations:
  - {type: duckdb, path: out.duckdb, table: a, input: a}
  - {type: duckdb, path: out.duckdb, table: b, input: b}
"""


def test_a_new_run_drops_the_staging_of_the_failed_runs_it_supersedes(store_url: str, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,x\n2,y\n3,z\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(TWO_FILES)
    failed = run_pipeline(load_spec(spec), Settings())
    assert failed.status == "failed"
    staging = "SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_agent_etl_stg_')"
    assert count(tmp_path / "out.duckdb", staging) == (1,)

    (tmp_path / "b.csv").write_text("id\n10\n20\n")
    second = run_pipeline(load_spec(spec), Settings())
    assert second.status == "succeeded", second.error
    assert count(tmp_path / "out.duckdb", staging) == (0,)
    assert count(tmp_path / "out.duckdb", "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)") == (3, 2)
    record = RunStore(Settings().store_url).get_run(failed.run_id)
    assert (record["status"], record["error"]) == ("superseded", f"superseded by run {second.run_id}")
    assert (
        f"run {failed.run_id}",
        "drop its staging: superseded",
        f"this new run loads its rows itself; resuming run {failed.run_id} afterwards would load them twice",
    ) in decisions(second.run_id)

    with pytest.raises(
        ConfigurationError,
        match=f"run {failed.run_id} was superseded by run {second.run_id}, which loaded its rows; resuming it would load them twice",
    ):
        resume_run(failed.run_id, Settings())
    assert count(tmp_path / "out.duckdb", "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)") == (3, 2)


def test_discard_failed_drops_the_staging_of_every_failed_and_crashed_run(store_url: str, tmp_path: Path) -> None:
    crashed = killed_run(orders_spec(tmp_path, range(1, 1001)), "before")
    (tmp_path / "a.csv").write_text("id,name\n1,x\n2,y\n3,z\n")
    (tmp_path / "two.yaml").write_text(TWO_FILES.replace("out.duckdb", "two.duckdb"))
    failed = run_pipeline(load_spec(tmp_path / "two.yaml"), Settings())
    assert failed.status == "failed"
    staging = "SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_agent_etl_stg_')"
    assert (count(tmp_path / "out.duckdb", staging), count(tmp_path / "two.duckdb", staging)) == ((1,), (1,))

    done = agent_etl(tmp_path, "runs", "discard", "--failed")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        f"discarded the staged output of run {r}" for r in (crashed, failed.run_id)
    )
    assert (count(tmp_path / "out.duckdb", staging), count(tmp_path / "two.duckdb", staging)) == ((0,), (0,))
    store = RunStore(Settings().store_url)
    assert [store.get_run(r)["status"] for r in (crashed, failed.run_id)] == ["discarded", "discarded"]
