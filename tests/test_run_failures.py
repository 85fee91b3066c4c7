"""What a user sees when a run fails: one line naming the source and the cause, and the record."""

import os
import subprocess
import sys
from pathlib import Path

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.records import RunStore

MISSING_FILE = """\
name: missing_file
sources:
  customers: {type: file, path: nowhere/customers.csv}
destination: {type: duckdb, path: out.duckdb, table: customers}
"""


def agent_etl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps tables to 80 columns when output is not a terminal
    return subprocess.run([sys.executable, "-m", "agent_orchestrated_etl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_file_fails_with_one_line_and_a_recorded_decision(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    result = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [f"error: source customers: file not found: {tmp_path}/nowhere/customers.csv (check `path:` in the spec)"]
    assert "Traceback" not in result.stderr

    store = RunStore(Settings().store_url)
    [run] = store.list_runs()
    record = store.get_run(run["run_id"])
    assert record["status"] == "failed"
    [task] = record["tasks"]
    assert (task["task_id"], task["status"]) == ("customers[0]>customers", "failed")
    assert "file not found" in task["error"]
    [failure] = [e for e in record["events"] if e["kind"] == "decision" and e["subject"] == "task customers[0]>customers" and e["choice"] == "fail"]
    assert failure["reason"] == "SourceNotFoundError: retrying cannot help"
    assert not (tmp_path / "out.duckdb").exists() or "customers" not in _tables(tmp_path / "out.duckdb")

    shown = agent_etl("runs", "show", run["run_id"][:17], cwd=tmp_path)
    assert shown.returncode == 0
    assert "customers[0]>customers" in shown.stdout and "failed" in shown.stdout


def test_a_failed_quality_gate_says_to_fix_the_data_not_to_resume(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,email\n1,a@x\n2,\n")
    (tmp_path / "p.yaml").write_text(
        "name: gate\nsources:\n  people: {type: file, path: people.csv}\n"
        "quality:\n  - not_null: [email]\ndestination: {type: duckdb, path: out.duckdb, table: people}\n"
    )
    result = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "quality checks failed: not_null(email)" in result.stderr
    assert "fix the data, the check or the target and run again; agent-etl runs discard" in result.stderr
    assert "agent-etl resume" not in result.stderr

    (tmp_path / "p.yaml").write_text(MISSING_FILE)
    failed = agent_etl("run", "p.yaml", cwd=tmp_path)
    assert "go on from the checkpoints: agent-etl resume" in failed.stderr  # a task did not finish: resume helps


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = agent_etl("--debug", "run", "does-not-exist.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: spec file not found: does-not-exist.yaml (check the path)"


def _tables(path: Path) -> set[str]:
    import duckdb

    return {r[0] for r in duckdb.connect(str(path), read_only=True).execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_usage_errors_say_what_is_missing_without_a_traceback(tmp_path: Path) -> None:
    result = agent_etl("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "Missing argument 'spec'" in result.stderr and "Traceback" not in result.stderr
    result = agent_etl("bogus", cwd=tmp_path)
    assert result.returncode == 2 and "No such command 'bogus'" in result.stderr


def test_a_refused_commit_says_to_fix_and_run_again_not_to_resume() -> None:
    from types import SimpleNamespace

    from agent_orchestrated_etl.cli import next_step

    refused = SimpleNamespace(run_id="r1", decisions=[{"subject": "destination t", "choice": "fail the commit; the target stays as it was", "reason": "schema: freeze forbids changes"}])
    assert next_step(refused).startswith("fix the data, the check or the target and run again; agent-etl runs discard r1")
    unfinished = SimpleNamespace(run_id="r2", decisions=[{"subject": "task a[0]>a", "choice": "fail", "reason": "SourceNotFoundError: retrying cannot help"}])
    assert next_step(unfinished) == "go on from the checkpoints: agent-etl resume r2"
