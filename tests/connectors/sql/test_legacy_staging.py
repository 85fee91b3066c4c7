"""Staging named as before the one staging prefix (issue 13) is adopted by resume and dropped by commit and discard.

Before the protocol, PostgreSQL, MariaDB and SQLite named a task's staging
``_aetl_stg_<run>_<target><task>_<d|q>`` (hashes) and DuckDB
``_agent_etl_stg_<run>_<target>_<task>_<data|quarantine>`` (the ids spelled
out). A run staged by the old code and resumed by this one found none of it:
it read every checkpointed partition again (safe, but slow) and left the old
tables behind for good. The names of before are spelled out here, from the
old code, rather than taken from the destinations.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import discard_run, resume_run, run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import load_spec
from agent_orchestrated_etl.store.records import RunStore

ROWS = 1000
SPEC = """\
name: two_files
sources:
  a: {type: file, path: a.csv}
  b: {type: file, path: b.csv}
destinations:
  - {DEST_A, input: a}
  - {DEST_B, input: b}
"""


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def now_name(run_id: str, target: str, task_id: str, kind: str) -> str:
    return f"_agent_etl_stg_{sha(run_id)[:10]}_{sha(target)[:6]}{sha(task_id)[:10]}_{kind}"


def sql_name_before(run_id: str, target: str, task_id: str, kind: str) -> str:
    return f"_aetl_stg_{sha(run_id)[:10]}_{sha(target)[:6]}{sha(task_id)[:10]}_{kind}"


def duckdb_name_before(run_id: str, target: str, task_id: str, kind: str) -> str:
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", text)

    spelled = {"d": "data", "q": "quarantine"}[kind]
    return f"_agent_etl_stg_{slug(run_id)}_{sha(target)[:8]}_{slug(task_id)}_{spelled}"


@dataclass
class Engine:
    dest: Callable[[str], str]
    #: The spec's table: what the staging names hash.
    target: Callable[[str], str]
    name_before: Callable[[str, str, str, str], str]
    tables: Callable[[], set[str]]
    rename: Callable[[str, str], None]
    create: Callable[[str], None]
    count: Callable[[str], int]


@pytest.fixture(
    params=[
        "duckdb",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "duckdb":
        path = str(tmp_path / "out.duckdb")

        def duck(sql: str) -> list[tuple]:
            with duckdb.connect(path) as con:
                return con.execute(sql).fetchall()

        yield Engine(
            lambda t: f"type: duckdb, path: out.duckdb, table: {t}",
            lambda t: t,
            duckdb_name_before,
            lambda: {r[0] for r in duck("SELECT table_name FROM duckdb_tables()")},
            lambda old, new: duck(f'ALTER TABLE "{old}" RENAME TO "{new}"'),
            lambda name: duck(f'CREATE TABLE "{name}" (id BIGINT)'),
            lambda t: duck(f'SELECT count(*) FROM "{t}"')[0][0],
        )
    elif request.param == "sqlite":
        path = tmp_path / "out.db"

        def lite(sql: str) -> list[tuple]:
            with closing(sqlite3.connect(path)) as con, con:  # closed, not only committed
                return con.execute(sql).fetchall()

        yield Engine(
            lambda t: f"type: sqlite, url: 'sqlite:///{path}', table: {t}",
            lambda t: t,
            sql_name_before,
            lambda: {r[0] for r in lite("SELECT name FROM sqlite_master WHERE type = 'table'")},
            lambda old, new: lite(f'ALTER TABLE "{old}" RENAME TO "{new}"'),
            lambda name: lite(f'CREATE TABLE "{name}" (id BIGINT)'),
            lambda t: lite(f'SELECT count(*) FROM "{t}"')[0][0],
        )
    elif request.param == "postgres":
        url, schema = request.getfixturevalue("postgres_url"), f"legacy_{uuid.uuid4().hex[:10]}"
        run_sql(url, f"CREATE SCHEMA {schema}")
        yield Engine(
            lambda t: f'type: postgres, url: "{url}", table: {schema}.{t}',
            lambda t: f"{schema}.{t}",
            sql_name_before,
            lambda: {r[0] for r in run_sql(url, f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")},
            lambda old, new: run_sql(url, f'ALTER TABLE {schema}."{old}" RENAME TO "{new}"'),
            lambda name: run_sql(url, f'CREATE TABLE {schema}."{name}" (id BIGINT)'),
            lambda t: run_sql(url, f'SELECT count(*) FROM {schema}."{t}"')[0][0],
        )
        run_sql(url, f"DROP SCHEMA {schema} CASCADE")
    else:
        url = request.getfixturevalue("mysql_database")
        database = url.rsplit("/", 1)[1]
        yield Engine(
            lambda t: f'type: mysql, url: "{url}", table: {t}',
            lambda t: t,
            sql_name_before,
            lambda: {
                r[0]
                for r in run_sql(
                    url, f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{database}'"
                )
            },
            lambda old, new: run_sql(url, f"RENAME TABLE `{old}` TO `{new}`"),
            lambda name: run_sql(url, f"CREATE TABLE `{name}` (id BIGINT)"),
            lambda t: run_sql(url, f"SELECT count(*) FROM `{t}`")[0][0],
        )


def staged_before_the_upgrade(tmp_path: Path, engine: Engine) -> tuple[RunResult, str, list[str]]:
    """A run that failed with a's partition staged and checkpointed, its staging renamed as the old code named it.

    Also a staging table of before that no checkpoint points to (a task the old run had not finished).
    Returns the run, a's task id and the old names.
    """
    (tmp_path / "a.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(ROWS)))
    spec = tmp_path / "p.yaml"
    spec.write_text(SPEC.replace("DEST_A", engine.dest("a")).replace("DEST_B", engine.dest("b")))
    first = run_pipeline(load_spec(spec), Settings())
    assert first.status == "failed"  # b.csv is missing; a is staged and checkpointed
    history = RunStore(Settings().store_url).get_run(first.run_id)["events"]
    [task_a] = {e["task_id"] for e in history if e["kind"] == "task_started" and e["task_id"].startswith("a")}
    old = []
    for kind in ("d", "q"):
        if (name := now_name(first.run_id, engine.target("a"), task_a, kind)) in engine.tables():
            old.append(engine.name_before(first.run_id, engine.target("a"), task_a, kind))
            engine.rename(name, old[-1])
    assert len(old) >= 1 and not {t for t in engine.tables() if t.startswith("_agent_etl_stg_")} - set(old)
    unfinished = engine.name_before(first.run_id, engine.target("a"), "a[9]>unfinished", "d")
    engine.create(unfinished)
    return first, task_a, [*old, unfinished]


def test_resume_adopts_the_staging_of_before_and_commit_drops_what_it_did_not_adopt(
    tmp_path: Path, engine: Engine
) -> None:
    first, task_a, old = staged_before_the_upgrade(tmp_path, engine)

    (tmp_path / "b.csv").write_text("id\n10\n20\n")
    second = resume_run(first.run_id, Settings())
    assert second.status == "succeeded", second.error
    assert (engine.count("a"), engine.count("b")) == (ROWS, 2)
    history = RunStore(Settings().store_url).get_run(first.run_id)["events"]
    decided = {(e["subject"], e["choice"]) for e in history if e["kind"] == "decision"}
    assert (f"task {task_a}", "reuse its staged output") in decided
    assert (f"task {task_a}", "read it again") not in decided
    assert [e["task_id"] for e in history if e["kind"] == "task_started"].count(task_a) == 1  # not read again
    assert not {t for t in engine.tables() if t.startswith(("_aetl_stg_", "_agent_etl_stg_"))}


def test_discard_drops_the_staging_of_before(tmp_path: Path, engine: Engine) -> None:
    first, _, old = staged_before_the_upgrade(tmp_path, engine)
    assert set(old) <= engine.tables()

    discard_run(first.run_id, Settings())
    assert not {t for t in engine.tables() if t.startswith(("_aetl_stg_", "_agent_etl_stg_"))}
