"""Durable runs: a failed run keeps its finished work, resume goes on from it, nothing twice."""

from pathlib import Path

import duckdb
import pytest

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.orchestrator import discard_run, resume_run, run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store.records import RunStore

SPEC = """\
name: two_files
sources:
  a: {type: file, path: a.csv}
  b: {type: file, path: b.csv}
destinations:
  - {type: duckdb, path: out.duckdb, table: a, input: a}
  - {type: duckdb, path: out.duckdb, table: b, input: b, critical: CRITICAL}
"""


def write_spec(tmp_path: Path, *, critical: bool = True) -> Path:
    (tmp_path / "a.csv").write_text("id,name\n1,x\n2,y\n3,z\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(SPEC.replace("CRITICAL", str(critical).lower()))
    return spec


def tables(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_agent_etl')"
        ).fetchall()
    ]
    return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def events(run_id: str) -> list[dict]:
    return RunStore(Settings().store_url).get_run(run_id)["events"]


def test_resume_reuses_finished_tasks_and_commits_once(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    first = run_pipeline(load_spec(spec), Settings())
    assert first.status == "failed"
    assert "b.csv" in first.error
    assert tables(tmp_path / "out.duckdb") == {}  # nothing is visible: no destination committed

    (tmp_path / "b.csv").write_text("id\n10\n20\n")
    second = resume_run(first.run_id[:18], Settings())
    assert (second.run_id, second.status) == (first.run_id, "succeeded")
    assert tables(tmp_path / "out.duckdb") == {"a": 3, "b": 2}

    history = events(first.run_id)
    started = [e["task_id"] for e in history if e["kind"] == "task_started"]
    assert started.count("a[0]>a") == 1  # a's staged output was reused, not read again
    assert started.count("b[0]>b") == 2
    reused = [e for e in history if e["kind"] == "decision" and e["choice"] == "reuse its staged output"]
    assert [e["subject"] for e in reused] == ["task a[0]>a"]
    assert RunStore(Settings().store_url).get_run(first.run_id)["status"] == "succeeded"

    with pytest.raises(ConfigurationError, match="is succeeded; there is nothing to go on with"):
        resume_run(first.run_id, Settings())


def test_discard_drops_staged_output(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    failed = run_pipeline(load_spec(spec), Settings())
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    assert (
        con.execute("SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_agent_etl_stg_')").fetchone()[
            0
        ]
        == 1
    )
    con.close()
    discard_run(failed.run_id, Settings())
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    assert (
        con.execute("SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_agent_etl_stg_')").fetchone()[
            0
        ]
        == 0
    )
    assert RunStore(Settings().store_url).get_run(failed.run_id)["status"] == "discarded"


def test_a_failing_non_critical_destination_ends_the_run_partial(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, critical=False)
    result = run_pipeline(load_spec(spec), Settings())
    assert result.status == "partial"
    assert "b[0]>b" in result.error and "b.csv" in result.error
    assert tables(tmp_path / "out.duckdb") == {"a": 3}
    choices = {(e["subject"], e["choice"]) for e in events(result.run_id) if e["kind"] == "decision"}
    assert ("task b[0]>b", "skip") in choices
    assert ("destination b", "do not commit") in choices


def test_the_audit_log_records_runs_and_resumes(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    failed = run_pipeline(load_spec(spec), Settings())
    (tmp_path / "b.csv").write_text("id\n1\n")
    resume_run(failed.run_id, Settings())
    log = RunStore(Settings().store_url).durability.audit_log()
    assert [(e["action"], e["run_id"]) for e in log] == [("resume", failed.run_id), ("run", failed.run_id)]
    assert all(e["pipeline"] == "two_files" and len(e["spec_sha256"]) == 64 and "@" in e["actor"] for e in log)


def test_out_of_memory_is_retried_with_smaller_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_orchestrated_etl.connectors.files import FileSource

    (tmp_path / "b.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(100)))
    spec = write_spec(tmp_path)
    real_read = FileSource.read
    sizes: list[int] = []

    def read(self: FileSource, partition):  # type: ignore[no-untyped-def]
        sizes.append(self.batch_rows)
        if self.batch_rows > 40_000:
            raise MemoryError("pretend the batch did not fit")
        yield from real_read(self, partition)

    monkeypatch.setattr(FileSource, "read", read)
    result = run_pipeline(load_spec(spec), Settings(AGENT_ETL_BATCH_ROWS=100_000))
    assert result.status == "succeeded", result.error
    assert tables(tmp_path / "out.duckdb") == {"a": 3, "b": 100}
    assert sorted(sizes) == [25_000, 25_000, 50_000, 50_000, 100_000, 100_000]
    reasons = [e["reason"] for e in events(result.run_id) if e["kind"] == "decision" and e["choice"] == "retry"]
    assert len(reasons) == 4 and all("batches half the size" in r for r in reasons)


def test_resume_reads_the_first_plan_not_the_data_as_it_is_now(tmp_path: Path) -> None:
    """Rows added between the crash and the resume wait for the next run, and are not lost.

    Re-planning on resume would move the incremental window's end (and the
    partition bounds) to the data as it is now, while the finished partitions
    were read with the old ones.
    """
    import sqlite3

    db = tmp_path / "src.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 101)])
    spec = tmp_path / "p.yaml"
    spec.write_text(f"""\
name: first_plan
sources:
  t: {{type: sqlite, url: "sqlite:///{db}", table: t, partition: {{column: id, parts: 2}}, incremental: {{cursor: id}}}}
  b: {{type: file, path: b.csv}}
destinations:
  - {{type: duckdb, path: out.duckdb, table: t, input: t}}
  - {{type: duckdb, path: out.duckdb, table: b, input: b}}
""")
    first = run_pipeline(load_spec(spec), Settings())
    assert first.status == "failed"

    with sqlite3.connect(db) as con:
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(101, 151)])
    (tmp_path / "b.csv").write_text("id\n1\n")
    second = resume_run(first.run_id, Settings())
    assert second.status == "succeeded"
    history = events(first.run_id)
    assert [e["choice"] for e in history if e["kind"] == "decision" and e["subject"] == "plan"][
        -1
    ] == "reuse the first attempt's 3 tasks"
    resumed = [e for e in history if e["kind"] == "run_started"][-1]["tasks"]
    ranges = [
        (t["partition"]["options"]["range"], t["partition"]["options"]["window"]["end"])
        for t in resumed
        if t["source"] == "t"
    ]
    assert ranges == [([1, 51], 100), ([51, None], 100)]  # as first planned; a re-plan would split 1..150

    third = run_pipeline(load_spec(spec), Settings())  # the next run picks up the rows added meanwhile
    assert third.status == "succeeded"
    con = duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT id), max(id) FROM t").fetchone() == (150, 150, 150)


def test_a_cancel_that_lands_during_a_commit_says_the_destination_was_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while DuckDB commits: the commit ends (one transaction), the record says so, resume publishes nothing twice."""
    import asyncio

    from agent_orchestrated_etl.connectors.duckdb import DuckDBDestination
    from agent_orchestrated_etl.orchestrator import run_pipeline_async

    (tmp_path / "a.csv").write_text("id,name\n1,x\n2,y\n3,z\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: one\nsources:\n  a: {type: file, path: a.csv}\ndestination: {type: duckdb, path: out.duckdb, table: a}\n"
    )

    async def main() -> None:
        run = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert run is not None
        monkeypatch.setattr(DuckDBDestination, "before_commit", lambda run_id: loop.call_soon_threadsafe(run.cancel))
        await run_pipeline_async(load_spec(spec), Settings())

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    monkeypatch.setattr(DuckDBDestination, "before_commit", None)
    assert tables(tmp_path / "out.duckdb") == {"a": 3}
    [run] = RunStore(Settings().store_url).list_runs()
    record = RunStore(Settings().store_url).get_run(run["run_id"])
    assert record["status"] == "cancelled"
    [said] = [e for e in record["events"] if e["kind"] == "decision" and e["choice"] == "committed as the cancel came"]
    assert said["reason"].startswith("its commit had begun; 3 rows are published")
    assert resume_run(run["run_id"], Settings()).status == "succeeded"
    assert tables(tmp_path / "out.duckdb") == {"a": 3}
