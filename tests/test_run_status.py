"""A run's status moves forward only, by the process that holds its lock; a resume never runs beside the run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.model.messages import RunFinished
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store.durability import PipelineBusyError
from agent_orchestrated_etl.store.records import RunStore
from agent_orchestrated_etl.store.schema import pipeline_locks, runs

SPEC = """\
name: two_files
sources:
  a: {type: file, path: a.csv}
  b: {type: file, path: b.csv}
destinations:
  - {type: duckdb, path: out.duckdb, table: a, input: a}
  - {type: duckdb, path: out.duckdb, table: b, input: b}
"""


@pytest.fixture
def alive() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand for a run's own process."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def failed_run(tmp_path: Path) -> str:
    (tmp_path / "a.csv").write_text("id,name\n1,x\n2,y\n3,z\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(SPEC)
    result = run_pipeline(load_spec(spec), Settings())
    assert result.status == "failed"
    return result.run_id


def held_by(store: RunStore, run_id: str, pid: int) -> None:
    """The store as a live run leaves it: status running, its lock held by its process."""
    with store.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(status="running", finished_at=None))
        conn.execute(
            pipeline_locks.insert().values(
                pipeline="two_files",
                run_id=run_id,
                host=__import__("socket").gethostname(),
                pid=pid,
                acquired_at=sa.func.now(),
            )
        )


def tables(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_agent_etl')"
        ).fetchall()
    ]
    return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def test_resume_is_refused_while_the_runs_own_process_is_alive(
    store_url: str, tmp_path: Path, alive: subprocess.Popen[bytes]
) -> None:
    run_id = failed_run(tmp_path)
    store = RunStore(store_url)
    held_by(store, run_id, alive.pid)
    before = store.get_run(run_id)
    (tmp_path / "b.csv").write_text("id\n10\n20\n")

    with pytest.raises(PipelineBusyError, match=f"run {run_id} is still running \\(pid {alive.pid} on "):
        resume_run(run_id, Settings())
    after = store.get_run(run_id)
    assert (after["status"], len(after["events"]), after["finished_at"]) == ("running", len(before["events"]), None)
    assert [e["action"] for e in store.durability.audit_log()] == ["run"]  # the refused resume did nothing
    assert tables(tmp_path / "out.duckdb") == {}

    alive.kill()
    alive.wait()
    resumed = resume_run(run_id, Settings())  # its process is gone now: the resume takes its lock over
    assert resumed.status == "succeeded", resumed.error
    assert tables(tmp_path / "out.duckdb") == {"a": 3, "b": 2}
    assert store.get_run(run_id)["status"] == "succeeded"
    store.close()


def test_a_finished_status_is_never_overwritten(store_url: str, tmp_path: Path) -> None:
    run_id = failed_run(tmp_path)
    (tmp_path / "b.csv").write_text("id\n10\n20\n")
    assert resume_run(run_id, Settings()).status == "succeeded"
    store = RunStore(store_url)
    store.record(RunFinished(sender="a losing process", run_id=run_id, status="failed", error="it lost"))
    record = store.get_run(run_id)
    assert (record["status"], record["error"]) == ("succeeded", None)
    store.close()


def test_only_the_lock_holder_moves_a_running_runs_status(
    store_url: str, tmp_path: Path, alive: subprocess.Popen[bytes]
) -> None:
    run_id = failed_run(tmp_path)
    store = RunStore(store_url)
    held_by(store, run_id, alive.pid)  # another process (a resume) holds the run now
    store.record(RunFinished(sender="the process that lost the run", run_id=run_id, status="failed", error="it lost"))
    assert store.get_run(run_id)["status"] == "running"
    assert not store.reopen_run(run_id)
    store.close()
