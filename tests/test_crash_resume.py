"""Kill a run with SIGKILL at a random moment, resume it, and compare every target with a clean run.

CI runs 3 rounds; `pytest -m slow tests/test_crash_resume.py` runs the long version
(20 rounds, or AGENT_ETL_CRASH_ROUNDS), which `pytest -q` leaves out (pyproject's addopts).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from tests.conftest import run_sql, server_url

from agent_orchestrated_etl.demo.data import generate_demo_data

# Three pipelines, one per kind of target: a PostgreSQL merge, DuckDB appends
# behind a quality check, and a Parquet lake; orders_lake waits for accounts.
SPEC = """\
workflow: crashy
pipelines:
  - name: accounts
    sources:
      accounts: {type: postgres, url: "PG_URL", table: SOURCE_SCHEMA.accounts, partition: {column: id, parts: 4}}
    destination: {type: postgres, url: "PG_URL", table: ROUND_SCHEMA.accounts, write: merge, primary_key: [id]}
  - name: shop_files
    sources:
      customers: {type: file, path: data/customers.csv}
      items:     {type: file, path: data/order_items.jsonl}
    quality:
      - {not_null: [email], input: customers, threshold: 0.05}
    destinations:
      - {type: duckdb, path: out/warehouse.duckdb, table: customers, input: customers, write: append}
      - {type: duckdb, path: out/warehouse.duckdb, table: items, input: items, write: append}
  - name: orders_lake
    depends_on: [accounts]
    sources:
      orders: {type: sqlite, url: "sqlite:///data/shop.db", table: orders}
    destination: {type: file, path: out/orders, format: parquet, write: append}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crash-data")
    generate_demo_data(directory, scale=0.3)
    return directory


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[str, str]]:
    """The PostgreSQL URL and a schema holding the source table, made once for every round."""
    url = server_url("postgres")
    schema = f"crash_{uuid.uuid4().hex[:10]}"  # the test database is shared: a pid can repeat across checkouts
    run_sql(
        url,
        f"DROP SCHEMA IF EXISTS {schema} CASCADE",
        f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {schema}.accounts AS SELECT i AS id, md5(i::text) AS name, mod(i, 9973)::numeric(12, 2) AS balance,"
        " date '2024-01-01' + mod(i, 365) AS opened FROM generate_series(1, 200000) i",
    )
    yield url, schema
    rounds = run_sql(url, f"SELECT nspname FROM pg_namespace WHERE starts_with(nspname, '{schema}_')")
    run_sql(url, *(f"DROP SCHEMA {name} CASCADE" for (name,) in rounds), f"DROP SCHEMA {schema} CASCADE")


def workdir(base: Path, data: Path, postgres: tuple[str, str], name: str) -> Path:
    """A fresh directory and PostgreSQL target schema; the target already holds rows the merge must update or keep."""
    url, source_schema = postgres
    directory = base / name
    (directory / "out").mkdir(parents=True)
    (directory / "data").symlink_to(data)
    target = f"{source_schema}_{name}"
    run_sql(
        url,
        f"DROP SCHEMA IF EXISTS {target} CASCADE",
        f"CREATE SCHEMA {target}",
        f"CREATE TABLE {target}.accounts (id integer PRIMARY KEY, name text, balance numeric(12, 2), opened date)",
        f"INSERT INTO {target}.accounts SELECT i, 'stale', -1, date '2000-01-01' FROM generate_series(-500, 1000) i",
    )
    (directory / "p.yaml").write_text(
        SPEC.replace("PG_URL", url).replace("SOURCE_SCHEMA", source_schema).replace("ROUND_SCHEMA", target)
    )
    (directory / "target").write_text(target)
    return directory


def agent_etl(directory: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENT_ETL_HOME": str(directory / "home"), "AGENT_ETL_BATCH_ROWS": "8192"}
    # Output goes to files: an unread pipe that fills up would block the child.
    log = open(directory / "agent-etl.log", "a")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(
        [sys.executable, "-m", "agent_orchestrated_etl", *args],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )


def latest_run(directory: Path) -> dict | None:
    store = directory / "home" / "agent-etl.db"
    if not store.exists():
        return None
    import sqlite3

    with sqlite3.connect(store) as conn:
        try:
            row = conn.execute(
                "SELECT run_id, status FROM runs WHERE parent_run_id IS NULL ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
        except sqlite3.OperationalError:  # the store is being created
            return None
    return {"run_id": row[0], "status": row[1]} if row else None


def fingerprint(directory: Path) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent checksum of every target."""
    result = {}
    warehouse = directory / "out" / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    for table in ("customers", "items"):
        result[table] = con.execute(f"SELECT count(*), sum(hash(t)) FROM {table} t").fetchone()
    # A quarantined row names its run and the path it came from, which differ by design.
    result["quarantine"] = con.execute(
        "SELECT count(*), sum(hash(check_name, reason, regexp_replace(origin, '^.*/', ''), row_json)) FROM customers__quarantine"
    ).fetchone()
    con.close()
    manifest = json.loads((directory / "out" / "orders" / "_manifest.json").read_text())
    files = [str(directory / "out" / "orders" / f) for f in manifest["files"]]
    result["orders"] = duckdb.execute(f"SELECT count(*), sum(hash(t)) FROM read_parquet({files!r}) t").fetchone()
    url = (directory / "p.yaml").read_text().split('url: "', 1)[1].split('"', 1)[0]
    target = (directory / "target").read_text()
    [result["accounts"]] = run_sql(
        url, f"SELECT count(*), count(DISTINCT id), sum(hashtext(t::text)::numeric) FROM {target}.accounts t"
    )
    return result


def run_to_completion(directory: Path, rng: random.Random, kills: int, window: float = 0.0) -> int:
    """Start, kill at random moments within the window, resume until the run succeeds; return the kills done."""
    done = 0
    process = agent_etl(directory, "run", "p.yaml", "--json")
    while True:
        if done < kills:
            time.sleep(rng.uniform(0.2, window))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                done += 1
        process.wait(timeout=120)
        run = latest_run(directory)
        if run and run["status"] == "succeeded":  # a kill may land after the commit, before the exit
            return done
        assert process.returncode in (-signal.SIGKILL, 1), (directory / "agent-etl.log").read_text()[-3000:]
        if run is None:  # killed before the run was recorded: nothing started
            process = agent_etl(directory, "run", "p.yaml", "--json")
        else:
            process = agent_etl(directory, "resume", run["run_id"], "--json")


def long_rounds() -> int:
    return int(os.environ.get("AGENT_ETL_CRASH_ROUNDS", "20"))


@pytest.mark.timeout(120 + 60 * 3)
def test_killed_runs_resume_to_exactly_the_clean_result(tmp_path: Path, data: Path, postgres: tuple[str, str]) -> None:
    kill_and_resume(tmp_path, data, postgres, rounds=3)


@pytest.mark.slow
@pytest.mark.timeout(120 + 60 * long_rounds())
def test_many_killed_runs_resume_to_exactly_the_clean_result(
    tmp_path: Path, data: Path, postgres: tuple[str, str]
) -> None:
    kill_and_resume(tmp_path, data, postgres, rounds=long_rounds())


def kill_and_resume(tmp_path: Path, data: Path, postgres: tuple[str, str], *, rounds: int) -> None:
    clean = workdir(tmp_path, data, postgres, "clean")
    started = time.monotonic()
    assert run_to_completion(clean, random.Random(0), kills=0) == 0
    window = time.monotonic() - started  # kill anywhere from start-up to the last commit
    expected = fingerprint(clean)
    assert expected["customers"][0] > 0 and expected["items"][0] > 0 and expected["orders"][0] > 0
    assert expected["accounts"][:2] == (200_501, 200_501)  # 200,000 merged over 1,501 rows: 1,000 updated, 501 kept
    rng = random.Random(int(os.environ.get("AGENT_ETL_CRASH_SEED", "20261125")))
    total_kills = 0
    for n in range(rounds):
        directory = workdir(tmp_path, data, postgres, f"round{n}")
        total_kills += run_to_completion(directory, rng, kills=rng.randint(1, 3), window=window)
        assert fingerprint(directory) == expected, f"round {n} differs from the clean run"
        shutil.rmtree(directory)
    assert total_kills >= rounds


def test_ctrl_c_cancels_cleanly_and_resume_finishes(tmp_path: Path, data: Path, postgres: tuple[str, str]) -> None:
    clean = workdir(tmp_path, data, postgres, "clean")
    assert run_to_completion(clean, random.Random(0), kills=0) == 0
    expected = fingerprint(clean)
    directory = workdir(tmp_path, data, postgres, "interrupted")
    process = agent_etl(directory, "run", "p.yaml")
    deadline = time.monotonic() + 60
    while (run := latest_run(directory)) is None:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    time.sleep(0.05)  # into planning or the first tasks
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    log = (directory / "agent-etl.log").read_text()
    if process.returncode == 0:  # it finished before the signal landed: nothing to check
        pytest.skip("the run finished before Ctrl-C")
    assert process.returncode == 130, log
    assert f"agent-etl resume {run['run_id']}" in log
    assert latest_run(directory)["status"] == "cancelled"
    warehouse = directory / "out" / "warehouse.duckdb"
    if warehouse.exists():  # the cancel may land before any task opened it
        con = duckdb.connect(str(warehouse), read_only=True)
        visible = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_agent_etl')"
            ).fetchall()
        }
        con.close()
        assert visible == set()  # nothing was committed
    resumed = agent_etl(directory, "resume", run["run_id"])
    assert resumed.wait(timeout=120) == 0, (directory / "agent-etl.log").read_text()[-2000:]
    assert fingerprint(directory) == expected
