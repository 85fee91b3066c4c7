"""The metadata store's migrations, on SQLite and on a real PostgreSQL (a schema of each test's own)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store import migrate, schema
from agent_orchestrated_etl.store.records import RunStore, _with_driver

HEAD = migrate.HEAD


def engine(url: str) -> sa.Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(_with_driver(url), poolclass=sa.pool.NullPool)


def differences(url: str) -> list:
    with engine(url).connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)


def revision(url: str) -> str | None:
    return migrate.revisions(_with_driver(url)).current


def test_the_head_revision_is_the_schema(store_url: str) -> None:
    """A change to store/schema.py without a migration fails here."""
    assert migrate._scripts().get_current_head() == migrate.HEAD
    RunStore(store_url).close()
    assert revision(store_url) == HEAD
    assert differences(store_url) == []


SPEC = """\
name: two_files
sources:
  a: {type: file, path: a.csv}
  b: {type: file, path: b.csv}
destinations:
  - {type: duckdb, path: out.duckdb, table: a, input: a}
  - {type: duckdb, path: out.duckdb, table: b, input: b}
"""


def test_a_run_recorded_at_revision_1_survives_the_upgrade_and_resumes(store_url: str, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n2\n3\n")
    (tmp_path / "p.yaml").write_text(SPEC)
    failed = run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())
    assert failed.status == "failed"  # b.csv is missing; a's output is checkpointed
    with engine(store_url).begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "0001")
        assert "definition" not in {c["name"] for c in sa.inspect(conn).get_columns("tasks")}
    assert revision(store_url) == "0001"

    store = RunStore(store_url)
    assert revision(store_url) == HEAD
    record = store.get_run(failed.run_id)
    assert record is not None and record["status"] == "failed" and record["spec_text"] == SPEC
    assert {t["task_id"]: t["definition"] for t in record["tasks"]} == {"a[0]>a": None, "b[0]>b": None}

    (tmp_path / "b.csv").write_text("id\n10\n")
    resumed = resume_run(failed.run_id, Settings())
    assert (resumed.run_id, resumed.status) == (failed.run_id, "succeeded")
    decisions = [(e["subject"], e["choice"]) for e in store.get_run(failed.run_id)["events"] if e["kind"] == "decision"]
    assert ("task a[0]>a", "reuse its staged output") in decisions
    assert not any(
        choice.startswith("reuse the first attempt's") for _, choice in decisions
    )  # no stored plan: re-planned


@pytest.mark.parametrize("with_definition", [False, True], ids=["before-definition", "with-definition"])
def test_a_store_made_before_migrations_is_adopted(store_url: str, with_definition: bool) -> None:
    # What `agent-etl run` made before migrations: every table but serve's, by create_all.
    legacy = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        # api_tokens, api_sessions and memory_episodes came after migrations did
        if table.name not in ("pipelines", "alerts", "api_tokens", "api_sessions", "memory_episodes"):
            table.to_metadata(legacy)
    with engine(store_url).begin() as conn:
        legacy.create_all(conn)
        if not with_definition:
            conn.exec_driver_sql("ALTER TABLE tasks DROP COLUMN definition")
        conn.execute(schema.runs.insert().values(run_id="r1", pipeline="p", status="failed", started_at=sa.func.now()))
        conn.execute(sa.insert(legacy.tables["tasks"]).values(run_id="r1", task_id="t", kind="stage", status="failed"))

    store = RunStore(store_url)
    assert revision(store_url) == HEAD
    assert differences(store_url) == []
    record = store.get_run("r1")
    assert record is not None and record["status"] == "failed"
    assert [(t["task_id"], t["definition"]) for t in record["tasks"]] == [("t", None)]


def test_a_store_of_a_newer_agent_etl_is_refused(store_url: str) -> None:
    RunStore(store_url).close()
    with engine(store_url).begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(ConfigurationError, match="at revision 0099, which agent-etl .* does not know") as caught:
        RunStore(store_url)
    assert "upgrade agent-etl" in str(caught.value) and "pip install -U agent-orchestrated-etl" in str(caught.value)
    assert revision(store_url) == "0099"


def test_a_store_older_than_the_migrations_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE runs (run_id VARCHAR(64) PRIMARY KEY, pipeline VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL, started_at DATETIME NOT NULL)"
        )
    with pytest.raises(ConfigurationError, match="made by an agent-etl older than its migrations") as caught:
        RunStore(f"sqlite:///{path}")
    assert "spec_text" in str(caught.value) and f"mv {path} {path}.old" in str(caught.value)
    with sqlite3.connect(path) as conn:  # the upgrade's transaction was rolled back
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["runs"]


OPEN_STORE = "import sys; from agent_orchestrated_etl.store.records import RunStore; RunStore(sys.argv[1]).close()"


@pytest.mark.parametrize("store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_two_processes_opening_an_empty_store_at_once_make_it_once(store_url: str) -> None:
    """Both wait on the migration lock (held here; PostgreSQL shows who waits); once it is free, one upgrades and the other finds the head."""
    key = migrate._ADVISORY_LOCK
    holder = engine(store_url).connect()
    holder.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    openers = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE, store_url], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    waiting = sa.text(
        f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = {key >> 32} AND objid = {key & 0xFFFFFFFF}"
    )
    with engine(store_url).connect() as watcher:
        for _ in range(600):
            if watcher.execute(waiting).scalar() == 2 or any(p.poll() is not None for p in openers):
                break
            watcher.execute(sa.text("SELECT pg_sleep(0.1)"))
        assert watcher.execute(waiting).scalar() == 2
    holder.rollback()
    holder.close()
    assert [(p.wait(timeout=120), p.stderr.read()) for p in openers if p.stderr] == [(0, ""), (0, "")]
    assert revision(store_url) == HEAD
    with engine(store_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1


RACE = """\
import sys, time
from pathlib import Path
from agent_orchestrated_etl.store.records import RunStore
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
RunStore(sys.argv[1]).close()
"""


def test_processes_opening_an_empty_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Released together, they meet at BEGIN IMMEDIATE; without it, some collide creating the same tables (this test failed 3 times in 3)."""
    url, go = Settings().store_url, tmp_path / "go"
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, url, str(tmp_path / f"ready{i}"), str(go)], stderr=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)) and all(p.poll() is None for p in openers):
        time.sleep(0.01)
    go.touch()
    assert [(p.wait(timeout=120), p.stderr.read()) for p in openers if p.stderr] == [(0, "")] * 4
    assert revision(url) == HEAD


def test_store_current_and_upgrade_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from agent_orchestrated_etl.cli import app

    url = Settings().store_url
    RunStore(url).close()
    with engine(url).begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "0001")
    capsys.readouterr()

    app(["store", "current", "--json"], standalone_mode=False)
    assert json.loads(capsys.readouterr().out) == {"current": "0001", "head": HEAD}
    app(["store", "upgrade"], standalone_mode=False)
    assert capsys.readouterr().out.strip() == f"upgraded from revision 0001 to {HEAD}"
    app(["store", "current"], standalone_mode=False)
    assert capsys.readouterr().out.strip() == f"revision {HEAD} (the newest)"
