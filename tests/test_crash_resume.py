"""Kill a run with SIGKILL at a random moment, resume it, and compare every target with a clean run.

CI runs 3 rounds; `AGENT_ETL_CRASH_ROUNDS=20 pytest -m slow tests/test_crash_resume.py`
runs the long version.
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
from pathlib import Path

import duckdb
import pytest

from agent_orchestrated_etl.demo.data import generate_demo_data

SPEC = """\
name: crashy
sources:
  customers: {type: file, path: data/customers.csv}
  items:     {type: file, path: data/order_items.jsonl}
  orders:    {type: sqlite, url: "sqlite:///data/shop.db", table: orders}
quality:
  - {not_null: [email], input: customers, threshold: 0.05}
destinations:
  - {type: duckdb, path: out/warehouse.duckdb, table: customers, input: customers, write: append}
  - {type: duckdb, path: out/warehouse.duckdb, table: items, input: items, write: append}
  - {type: file, path: out/orders, format: parquet, input: orders, write: append}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crash-data")
    generate_demo_data(directory, scale=0.3)
    return directory


def workdir(base: Path, data: Path, name: str) -> Path:
    directory = base / name
    (directory / "out").mkdir(parents=True)
    (directory / "data").symlink_to(data)
    (directory / "p.yaml").write_text(SPEC)
    return directory


def agent_etl(directory: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENT_ETL_HOME": str(directory / "home"), "AGENT_ETL_BATCH_ROWS": "8192"}
    # Output goes to files: an unread pipe that fills up would block the child.
    log = open(directory / "agent-etl.log", "a")  # noqa: SIM115 - the child holds it
    return subprocess.Popen([sys.executable, "-m", "agent_orchestrated_etl", *args], cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)


def latest_run(directory: Path) -> dict | None:
    store = directory / "home" / "agent-etl.db"
    if not store.exists():
        return None
    import sqlite3

    with sqlite3.connect(store) as conn:
        try:
            row = conn.execute("SELECT run_id, status FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
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


def rounds() -> int:
    return int(os.environ.get("AGENT_ETL_CRASH_ROUNDS", "3"))


def test_killed_runs_resume_to_exactly_the_clean_result(tmp_path: Path, data: Path) -> None:
    clean = workdir(tmp_path, data, "clean")
    started = time.monotonic()
    assert run_to_completion(clean, random.Random(0), kills=0) == 0
    window = time.monotonic() - started  # kill anywhere from start-up to the last commit
    expected = fingerprint(clean)
    assert expected["customers"][0] > 0 and expected["items"][0] > 0 and expected["orders"][0] > 0
    rng = random.Random(int(os.environ.get("AGENT_ETL_CRASH_SEED", "20261125")))
    total_kills = 0
    for n in range(rounds()):
        directory = workdir(tmp_path, data, f"round{n}")
        total_kills += run_to_completion(directory, rng, kills=rng.randint(1, 3), window=window)
        assert fingerprint(directory) == expected, f"round {n} differs from the clean run"
        shutil.rmtree(directory)
    assert total_kills >= rounds()


def test_ctrl_c_cancels_cleanly_and_resume_finishes(tmp_path: Path, data: Path) -> None:
    clean = workdir(tmp_path, data, "clean")
    assert run_to_completion(clean, random.Random(0), kills=0) == 0
    directory = workdir(tmp_path, data, "interrupted")
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
    con = duckdb.connect(str(warehouse), read_only=True)
    visible = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_agent_etl')").fetchall()}
    con.close()
    assert visible == set()  # nothing was committed
    resumed = agent_etl(directory, "resume", run["run_id"])
    assert resumed.wait(timeout=120) == 0, (directory / "agent-etl.log").read_text()[-2000:]
    assert fingerprint(directory) == fingerprint(clean)
