"""Encryption at rest (issue 12): with AGENT_ETL_ENCRYPTION_KEY set, the Parquet files a file destination
stages and commits, quarantine included, hold none of the data in the clear, and read back with the key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from agent_orchestrated_etl import encryption
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError

PLANTED = f"pl4nted-row-{uuid.uuid4().hex}"
QUARANTINED = f"pl4nted-bad-{uuid.uuid4().hex}"
KEY = base64.b64encode(os.urandom(32)).decode()

SPEC = """\
name: sealed
sources:
  people: {type: file, path: people.csv}
quality:
  - {not_null: [email], threshold: 0.5}
destination: {type: file, path: out, format: FORMAT}
"""


def agent_etl(cwd: Path, *args: str, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "AGENT_ETL_HOME": str(cwd / "home")}
    env.pop("AGENT_ETL_ENCRYPTION_KEY", None)
    if key is not None:
        env["AGENT_ETL_ENCRYPTION_KEY"] = "${env:ETL_KEY}"
        env["ETL_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rows = ["id,name,email"] + [f"{i},person {i},p{i}@example.com" for i in range(1, 100)]
    rows += [f"100,{PLANTED},planted@example.com", f"101,{QUARANTINED},"]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "p.yaml").write_text(SPEC.replace("FORMAT", "parquet"))
    return tmp_path


def written_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_with_a_key_no_file_we_write_holds_the_data_in_the_clear(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = agent_etl(project, "run", "p.yaml", key=KEY)
    assert result.returncode == 0, result.stderr
    parquet = [p for p in written_files(project / "out") if p.suffix == ".parquet"]
    assert parquet, written_files(project / "out")
    for path in written_files(project / "out"):
        raw = path.read_bytes()
        assert PLANTED.encode() not in raw and QUARANTINED.encode() not in raw, path
        assert b"person 1" not in raw, path
    # With the key, the exact rows are there: 100 loaded, the one without an email quarantined.
    monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", KEY)
    names: list[str] = []
    for path in parquet:
        table = pq.ParquetFile(path, **encryption.parquet_reader_options()).read()
        names += [str(value) for value in table.to_pydict().get("name", [])]
        names += [str(value) for value in table.to_pydict().get("row_json", [])]  # a quarantined row, as JSON
    assert sum(1 for n in names if n.startswith("person ")) == 99
    assert sum(PLANTED in n for n in names) == 1
    assert sum(QUARANTINED in n for n in names) == 1
    # Without it, or with another one, a reader gets nothing.
    with pytest.raises(OSError, match="encrypted"):
        pq.ParquetFile(parquet[0])
    monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", os.urandom(32).hex())
    with pytest.raises(DataError, match="encrypted with another key than AGENT_ETL_ENCRYPTION_KEY"):
        pq.ParquetFile(parquet[0], **encryption.parquet_reader_options())


def test_without_a_key_the_files_are_plain_parquet(project: Path) -> None:
    assert agent_etl(project, "run", "p.yaml", key=None).returncode == 0
    [data, *_] = [p for p in written_files(project / "out") if p.suffix == ".parquet"]
    assert pq.ParquetFile(data).metadata.num_rows > 0


def test_a_missing_or_malformed_key_fails_the_run_with_one_line(project: Path) -> None:
    env_missing = agent_etl(project, "run", "p.yaml", key=None)
    assert env_missing.returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", "run", "p.yaml"],
        cwd=project,
        env={**os.environ, "AGENT_ETL_HOME": str(project / "home2"), "AGENT_ETL_ENCRYPTION_KEY": "${env:NO_SUCH_KEY}"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "environment variable NO_SUCH_KEY is not set" in errors[0], result.stderr
    short = agent_etl(project, "run", "p.yaml", key="c2hvcnQ=")
    assert short.returncode == 1
    errors = [line for line in short.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not a 32-byte key in base64 or hex" in errors[0], short.stderr
    assert "c2hvcnQ=" not in short.stderr


def test_formats_that_cannot_be_encrypted_are_refused_with_one_line(project: Path) -> None:
    (project / "p.yaml").write_text(SPEC.replace("FORMAT", "csv"))
    result = agent_etl(project, "run", "p.yaml", key=KEY)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "csv files cannot be encrypted" in errors[0], result.stderr
    assert not any(p.suffix == ".csv" for p in written_files(project / "out")) if (project / "out").exists() else True


def test_a_key_is_32_bytes_of_base64_or_hex() -> None:
    raw = os.urandom(32)
    assert encryption.decode(base64.b64encode(raw).decode()) == raw
    assert encryption.decode(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert encryption.decode(raw.hex()) == raw
    for bad in ("", "x" * 64, base64.b64encode(os.urandom(16)).decode()):
        with pytest.raises(ConfigurationError, match="32-byte key"):
            encryption.decode(bad)


def workspace_holds(directory: Path, value: str) -> bool:
    return any(value.encode() in p.read_bytes() for p in written_files(directory))


def test_with_a_key_the_workspace_and_its_spills_are_encrypted_and_resume_reopens_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb
    import pyarrow as pa

    from agent_orchestrated_etl.transform.workspace import Workspace

    monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", KEY)
    batch = pa.record_batch({"s": [f"{PLANTED}-{i}" for i in range(400_000)]})
    ws = Workspace(tmp_path / "run", memory_limit_bytes=64 << 20)  # 64 MB: the floor, so the sort spills
    ws.append("people", batch)
    ws.append("people", batch)
    # A sort wider than the memory limit spills; the spill files must not hold the value either.
    reader = ws.cursor().execute("SELECT s || s || s AS w FROM people ORDER BY w DESC").to_arrow_reader(1000)
    assert next(iter(reader)).num_rows > 0
    spilled = written_files(tmp_path / "run" / "spill")
    assert spilled, "the sort did not spill, so the spill files were not checked"
    assert not workspace_holds(tmp_path / "run", PLANTED)
    del reader
    ws.close()
    assert not workspace_holds(tmp_path / "run", PLANTED)

    # Resume: the same key opens the same file; DuckDB without the key cannot.
    again = Workspace(tmp_path / "run", memory_limit_bytes=64 << 20)
    assert again.tables() == {"people"}
    assert again.cursor().execute(f"SELECT count(*) FROM people WHERE s = '{PLANTED}-7'").fetchone() == (2,)
    again.close()
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(tmp_path / "run" / "workspace.duckdb")).execute("SELECT * FROM people")
    # Resuming with another key, or none, fails with one line that says which key to give.
    for other in (os.urandom(32).hex(), None):
        if other is None:
            monkeypatch.delenv("AGENT_ETL_ENCRYPTION_KEY")
        else:
            monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", other)
        with pytest.raises(DataError, match="encrypted with another AGENT_ETL_ENCRYPTION_KEY") as caught:
            Workspace(tmp_path / "run", memory_limit_bytes=64 << 20)
        assert "the run started with" in str(caught.value.hint)


def test_without_a_key_the_workspace_is_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa

    from agent_orchestrated_etl.transform.workspace import Workspace

    monkeypatch.delenv("AGENT_ETL_ENCRYPTION_KEY", raising=False)
    ws = Workspace(tmp_path / "run", memory_limit_bytes=64 << 20)
    ws.append("people", pa.record_batch({"s": [PLANTED]}))
    ws.close()
    assert workspace_holds(tmp_path / "run", PLANTED)


def test_the_workspace_key_is_derived_not_the_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", KEY)
    derived = encryption.duckdb_key()
    assert derived is not None and len(derived) == 32 and derived != base64.b64decode(KEY)
    assert derived == encryption.derive(base64.b64decode(KEY), b"agent-etl duckdb workspace v1")


@pytest.mark.parametrize("keyed", [True, False], ids=["key", "no-key"])
def test_with_a_key_mariadb_bulk_loads_through_a_pipe_not_a_csv_file(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    import stat

    import pyarrow as pa

    from agent_orchestrated_etl.connectors.mysql.client import MySQLClient

    if keyed:
        monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", KEY)
    else:
        monkeypatch.delenv("AGENT_ETL_ENCRYPTION_KEY", raising=False)
    modes: list[int] = []
    write = MySQLClient._write_csv

    def spy(self: MySQLClient, batch: pa.RecordBatch, copy: str) -> None:
        path = copy.split("TO '", 1)[1].split("'", 1)[0]
        modes.append(os.stat(path).st_mode if os.path.exists(path) else 0)
        write(self, batch, copy)

    monkeypatch.setattr(MySQLClient, "_write_csv", spy)
    client = MySQLClient(mysql_url, schema=None, where="destination")
    table = f"sealed_{uuid.uuid4().hex[:8]}"
    with client.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (id INT, s TEXT)")
    try:
        client.bulk_load(
            table, pa.record_batch({"id": list(range(5000)), "s": [f"{PLANTED}-{i}" for i in range(5000)]})
        )
        with client.engine.begin() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*), max(s) FROM {table}").one() == (5000, f"{PLANTED}-999")
        # With the key the rows went through a FIFO; without it, a CSV file the DuckDB COPY created.
        assert len(modes) == 1 and stat.S_ISFIFO(modes[0]) is keyed
        # A failed LOAD DATA (no such table) fails with its error, and leaves no writer thread blocked on the pipe.
        threads = threading.active_count()
        with pytest.raises(Exception, match="doesn't exist"):
            client.bulk_load(f"{table}_missing", pa.record_batch({"id": [1], "s": [PLANTED]}))
        assert threading.active_count() == threads
    finally:
        with client.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


SWEEP = """\
name: sealed_sweep
sources:
  orders: {type: file, path: orders.csv}
  customers: {type: file, path: customers.csv}
transforms:
  - name: enriched
    input: orders
    steps:
      - join: {with: customers, on: customer_id, how: left, columns: [country]}
  - name: by_note
    sql: SELECT note, country, count(*) AS n FROM enriched GROUP BY note, country
retry: {attempts: 1}
CHECKS
destination: {type: mysql, url: "URL", table: TABLE, input: by_note, write: replace}
"""


def test_with_a_key_a_transform_into_mariadb_leaves_no_planted_value_on_disk_but_in_the_encrypted_workspace(
    tmp_path: Path, mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte under AGENT_ETL_HOME and the temp dir, after a run that succeeds and one that fails
    (which keeps its workspace for resume): no planted value; the workspace, opened with the key, holds it."""
    import tempfile

    import duckdb

    from agent_orchestrated_etl.config import Settings
    from agent_orchestrated_etl.connectors.mysql.client import MySQLClient
    from agent_orchestrated_etl.orchestrator import run_pipeline
    from agent_orchestrated_etl.spec import load_spec
    from agent_orchestrated_etl.transform.workspace import _load_openssl

    home, scratch = tmp_path / "home", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("AGENT_ETL_HOME", str(home))
    monkeypatch.setenv("AGENT_ETL_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,note\n" + "".join(f"{i},{i % 7},{PLANTED}-{i % 3}\n" for i in range(3000))
    )
    (tmp_path / "customers.csv").write_text("customer_id,country\n" + "".join(f"{i},c{i}\n" for i in range(6)))
    table = f"sweep_{uuid.uuid4().hex[:8]}"
    spec = SWEEP.replace("URL", mysql_url).replace("TABLE", table)

    def run(checks: str) -> Any:
        (tmp_path / "p.yaml").write_text(spec.replace("CHECKS", checks))
        return run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())

    def leaks() -> list[Path]:
        return [p for p in written_files(tmp_path) if p.parent != tmp_path and PLANTED.encode() in p.read_bytes()]

    try:
        ok = run("")
        assert ok.ok, ok.error
        with MySQLClient(mysql_url, schema=None, where="check").engine.begin() as conn:
            assert (
                conn.exec_driver_sql(f"SELECT sum(n) FROM {table} WHERE note LIKE %s", (f"{PLANTED}%",)).scalar()
                == 3000
            )
        assert not leaks()
        # Customer 6 has no country: a check on the join fails the run after the workspace was filled.
        failed = run("quality:\n  - {not_null: [country], input: enriched}")
        assert not failed.ok
        [workspace] = list(home.rglob("workspace.duckdb"))
        assert not leaks()
        check = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        _load_openssl(check)
        derived = encryption.derive(base64.b64decode(KEY), b"agent-etl duckdb workspace v1").hex()
        check.execute(f"ATTACH '{workspace}' AS ws (ENCRYPTION_KEY '{derived}', READ_ONLY)")
        tables = [
            r[0] for r in check.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'ws'").fetchall()
        ]
        found = sum(
            check.execute(
                f'SELECT count(*) FROM ws."{t}" AS r WHERE CAST(r AS VARCHAR) LIKE ?', [f"%{PLANTED}%"]
            ).fetchone()[0]
            for t in tables
        )
        assert found > 0, tables
        check.close()
    finally:
        with MySQLClient(mysql_url, schema=None, where="cleanup").engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
