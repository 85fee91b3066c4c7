"""verify: after a commit the target is reconciled with the source, inside each engine (issue 11)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.conftest import run_sql
from typer.testing import CliRunner

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import parse_spec
from agent_orchestrated_etl.verify import after_commit
from agent_orchestrated_etl.verify import fingerprint as fp
from agent_orchestrated_etl.verify.fingerprint import Shape, family, fingerprint
from agent_orchestrated_etl.verify.sides import DatabaseSide, DuckDBSide

ROWS = [
    (
        "(1, 12.50, 'héllo ✓', DATE '2024-02-29', TIMESTAMP '2024-01-02 03:04:05.123456', TIMESTAMP '2024-06-30"
        " 23:59:59.5', TRUE, 1.25, 9007199254740993)"
    ),
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    (
        "(3, -0.01, '日本語 \"quoted\" ''x''', DATE '1999-12-31', TIMESTAMP '2000-01-01 00:00:00', TIMESTAMP"
        " '1970-01-02 00:00:00', FALSE, -3.0, -1)"
    ),
    (
        "(4, 0.00, '', DATE '2024-01-01', TIMESTAMP '2024-01-01 12:00:00.000001', TIMESTAMP '2024-01-01 12:00:00',"
        " TRUE, 0.1, 0)"
    ),
]
TYPES = (
    "(id INT, amount DECIMAL(12,2), name VARCHAR(50), d DATE, ts {ts}, tz {tz}, flag BOOLEAN, f DOUBLE PRECISION, big"
    " BIGINT)"
)
COLUMNS = ["id", "amount", "name", "d", "ts", "tz", "flag", "f", "big"]


def _typical_table(pg: str, schema: str, mysql: str, path: Path) -> list[Any]:
    run_sql(
        pg,
        f"CREATE TABLE {schema}.t {TYPES.format(ts='TIMESTAMP(6)', tz='TIMESTAMPTZ')}",
        "SET TIME ZONE 'UTC'",
        f"INSERT INTO {schema}.t VALUES {', '.join(ROWS)}",
    )
    run_sql(
        mysql,
        f"CREATE TABLE t {TYPES.format(ts='DATETIME(6)', tz='TIMESTAMP(6) NULL')}",
        "SET time_zone = '+00:00'",
        f"INSERT INTO t VALUES {', '.join(ROWS)}",
    )
    with duckdb.connect(str(path)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"CREATE TABLE t {TYPES.format(ts='TIMESTAMP', tz='TIMESTAMPTZ')}")
        conn.execute(f"INSERT INTO t VALUES {', '.join(ROWS)}")
    return [
        DuckDBSide(str(path), '"t"', [], label="duckdb"),
        DatabaseSide(pg, f'"{schema}"."t"', [], label="postgres"),
        DatabaseSide(mysql, "`t`", [], label="mariadb"),
    ]


def test_the_same_table_hashes_alike_in_duckdb_postgresql_and_mariadb(
    pg_schema: tuple[str, str], mysql_database: str, tmp_path: Path
) -> None:
    sides = _typical_table(*pg_schema, mysql_database, tmp_path / "t.duckdb")
    texts, prints = [], []
    for side in sides:
        kinds = {c: family(t) for c, t in side.types().items()}
        shape = Shape(key=[("id", kinds["id"])], columns=[(c, kinds[c]) for c in COLUMNS])
        prints.append(fingerprint(side, shape))
        texts.append(
            side.query(
                f"SELECT {', '.join(fp.canonical(side.quote(c), kinds[c], side.dialect) for c in COLUMNS)} FROM"
                f" {side.relation} ORDER BY id"
            )
        )
        side.close()  # type: ignore[attr-defined]
    assert texts[0] == texts[1] == texts[2]
    assert texts[0][0] == (
        "1",
        "12.5",
        "héllo ✓",
        "2024-02-29",
        "2024-01-02 03:04:05.123456",
        "2024-06-30 23:59:59.500000",
        "1",
        "1.25",
        "9007199254740993",
    )
    assert texts[0][1] == ("2", None, None, None, None, None, None, None, None)
    assert texts[0][3] == (
        "4",
        "0",
        "",
        "2024-01-01",
        "2024-01-01 12:00:00.000001",
        "2024-01-01 12:00:00.000000",
        "1",
        "0.1",
        "0",
    )
    assert prints[0] == prints[1] == prints[2]
    assert prints[0].rows == 4


@pytest.fixture
def source(pg_schema: tuple[str, str]) -> tuple[str, str]:
    url, schema = pg_schema
    run_sql(
        url,
        f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, amount numeric(12, 2), note text, day date, placed_at"
        " timestamptz)",
        f"INSERT INTO {schema}.orders SELECT i, i * 1.25, 'n' || i, DATE '2024-01-01' + mod(i, 300), TIMESTAMPTZ"
        " '2024-01-01 00:00:00+00' + i * interval '1 minute' FROM generate_series(1, 20000) i",
    )
    return url, schema


def _run(url: str, schema: str, destination: str, extra: str = "") -> RunResult:
    text = f"""
name: verified
sources:
  orders: {{type: postgres, url: "{url}", table: {schema}.orders}}
destination: {destination}
{extra}
"""
    return run_pipeline(parse_spec(text, file="p.yaml"), Settings())


def _verify(result: RunResult) -> dict[str, Any]:
    (found,) = [q for q in result.quality if q["check"] == "verify"]
    return found


def _tamper_before_verify(
    monkeypatch: pytest.MonkeyPatch, *statements: str, url: str | None = None, duckdb_path: Path | None = None
) -> None:
    """Change the committed target after the commit and before verify reads it."""
    real = after_commit.reconcile

    def tampered(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if duckdb_path is not None:
            from agent_orchestrated_etl.connectors.duckdb.client import shared_connection

            conn = shared_connection(duckdb_path).cursor()
            for statement in statements:
                conn.execute(statement)
        else:
            assert url is not None
            run_sql(url, *statements)
        return real(*args, **kwargs)

    monkeypatch.setattr(after_commit, "reconcile", tampered)


def test_a_verified_load_records_a_passing_quality_result(source: tuple[str, str], mysql_database: str) -> None:
    result = _run(
        *source,
        f'{{type: mysql, url: "{mysql_database}", table: orders, write: replace, primary_key: [id], verify: true}}',
    )
    assert result.ok and result.rows_written == 20000
    found = _verify(result)
    assert found["passed"] and found["scope"] == "orders" and found["rows_checked"] == 20000
    assert (
        found["message"]
        == "20,000 rows match the source by count, key set and hash of id, amount, note, day, placed_at"
    )
    assert found["observed"]["source"] == found["observed"]["target"]
    assert ("destination orders", "verified") in {(d["subject"], d["choice"]) for d in result.decisions}


def test_a_target_tampered_between_load_and_verify_is_caught(
    source: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = source
    _tamper_before_verify(
        monkeypatch,
        f"UPDATE {schema}.copy SET amount = amount + 0.01 WHERE id = 17",
        f"DELETE FROM {schema}.copy WHERE id = 5000",
        f"INSERT INTO {schema}.copy VALUES (20001, 1.00, 'stray', DATE '2024-01-01', now())",
        url=url,
    )
    result = _run(
        url,
        schema,
        f'{{type: postgres, url: "{url}", table: {schema}.copy, write: replace, primary_key: [id], verify: true}}',
    )
    assert result.status == "failed" and result.rows_written == 20000
    found = _verify(result)
    assert not found["passed"] and found["severity"] == "error"
    assert found["observed"]["differing_keys"] == [
        "id=17 (values differ)",
        "id=20001 (not in the source)",
        "id=5000 (missing in the target)",
    ]
    assert (
        found["message"]
        == "the key sets differ; first differing keys: id=17 (values differ), id=20001 (not in the source), id=5000"
        " (missing in the target)"
    )
    assert (
        result.error
        == f"verify of {schema}.copy: {found['message']} (the target is committed; find what changed it, then load it"
        " again)"
    )


def test_severity_warn_records_the_mismatch_and_succeeds(
    source: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "w.duckdb"
    _tamper_before_verify(monkeypatch, "UPDATE orders SET note = 'changed' WHERE id = 123", duckdb_path=out)
    result = _run(
        *source,
        f'{{type: duckdb, path: "{out}", table: orders, write: replace, primary_key: [id], verify: {{severity: warn,'
        " columns: [note]}}",
    )
    assert result.ok
    found = _verify(result)
    assert not found["passed"] and found["severity"] == "warn"
    assert found["observed"]["columns"] == ["id", "note"]
    assert found["message"] == "values differ; first differing keys: id=123 (values differ)"


def test_verify_moves_only_aggregates(source: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row that leaves an engine is counted: a clean verify moves one row per side; a mismatch
    adds at most one row per bucket and the bounded key list, never the 20,000 rows."""
    moved: dict[str, list[int]] = {"postgresql": [], "duckdb": []}
    for side in (DatabaseSide, DuckDBSide):
        real = side.query

        def counted(self: Any, sql: str, real: Any = real) -> list[tuple[Any, ...]]:
            rows = real(self, sql)
            moved[self.dialect].append(len(rows))
            return rows

        monkeypatch.setattr(side, "query", counted)
    out = tmp_path / "w.duckdb"
    destination = f'{{type: duckdb, path: "{out}", table: orders, write: replace, primary_key: [id], verify: true}}'
    assert _run(*source, destination).ok
    assert moved == {"postgresql": [1], "duckdb": [1]}
    moved["postgresql"].clear(), moved["duckdb"].clear()
    _tamper_before_verify(monkeypatch, "DELETE FROM orders WHERE id IN (10, 11)", duckdb_path=out)
    result = _run(*source, destination)
    assert _verify(result)["observed"]["differing_keys"] == [
        "id=10 (missing in the target)",
        "id=11 (missing in the target)",
    ]
    for dialect, counts in moved.items():
        assert counts[0] == 1  # the fingerprint
        assert counts[1] <= fp.BUCKETS  # one row per bucket of the key hash
        assert all(n <= fp.LIST_LIMIT + 1 for n in counts[2:])
        assert sum(counts) < 1100, (dialect, counts)


def test_an_incremental_run_verifies_only_its_window(
    source: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = source
    out = tmp_path / "w.duckdb"
    text = f"""
name: windowed
sources:
  orders: {{type: postgres, url: "{url}", table: {schema}.orders, incremental: {{cursor: id}}}}
destination: {{type: duckdb, path: "{out}", table: orders, write: merge, primary_key: [id], verify: true}}
"""
    first = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert first.ok and _verify(first)["passed"] and _verify(first)["rows_checked"] == 20000
    run_sql(
        url,
        f"INSERT INTO {schema}.orders SELECT i, i * 1.25, 'n' || i, DATE '2024-01-01', now() FROM"
        " generate_series(20001, 20100) i",
    )
    # A row of the first run changed in the target: outside this run's window, not this run's business.
    _tamper_before_verify(
        monkeypatch,
        "UPDATE orders SET note = 'old' WHERE id = 5",
        "UPDATE orders SET note = 'new' WHERE id = 20050",
        duckdb_path=out,
    )
    second = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    found = _verify(second)
    assert second.status == "failed" and second.rows_written == 100
    assert found["rows_checked"] == 101  # the window starts at the boundary row the first run loaded
    assert found["observed"]["differing_keys"] == ["id=20050 (values differ)"]


def test_a_transform_or_quarantine_falls_back_to_counts(source: tuple[str, str], tmp_path: Path) -> None:
    url, schema = source
    out = tmp_path / "w.duckdb"
    result = _run(
        url,
        schema,
        f'{{type: duckdb, path: "{out}", table: big, write: replace, verify: true}}',
        extra="quality:\n  - {in_range: {column: id, min: 11}, threshold: 0.01}",
    )
    assert result.ok and result.rows_written == 19990 and result.rows_quarantined == 10
    found = _verify(result)
    assert found["passed"] and found["observed"]["mode"] == "counts"
    assert found["message"] == "counts only (rows were quarantined): 20,000 read, 19,990 loaded, 10 quarantined"
    result = _run(
        url,
        schema,
        f'{{type: duckdb, path: "{out}", table: daily, write: replace, verify: true}}',
        extra="transforms:\n  - {name: daily, sql: 'SELECT day, count(*) AS n FROM orders GROUP BY day'}",
    )
    assert result.ok
    assert (
        _verify(result)["message"]
        == "counts only (it loads transform daily, whose rows are not the source's one to one): 20,000 read, 300"
        " loaded, 0 quarantined"
    )


def test_counts_mode_still_catches_a_replaced_target_that_lost_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "in.csv"
    data.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 101)) + "x,y,z\n")
    out = tmp_path / "w.duckdb"
    _tamper_before_verify(monkeypatch, "DELETE FROM t WHERE id <= 3", duckdb_path=out)
    text = f"""
name: csv
sources:
  f: {{type: file, path: "{data}"}}
destination: {{type: duckdb, path: "{out}", table: t, write: replace, verify: true}}
"""
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    found = _verify(result)
    assert result.status == "failed" and result.rows_quarantined == 1
    assert found["message"] == "the target holds 97 rows, the run committed 100"


def test_a_file_source_is_hashed_through_its_own_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "in.csv"
    data.write_text("id,price,day\n" + "".join(f"{i},{i}.50,2024-01-{1 + i % 28:02d}\n" for i in range(1, 501)))
    out = tmp_path / "w.duckdb"
    text = f"""
name: csv
sources:
  f: {{type: file, path: "{data}"}}
destination: {{type: duckdb, path: "{out}", table: t, write: replace, primary_key: [id], verify: true}}
"""
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert (
        result.ok
        and _verify(result)["message"] == "500 rows match the source by count, key set and hash of id, price, day"
    )
    _tamper_before_verify(monkeypatch, "UPDATE t SET day = day + 1 WHERE id = 250", duckdb_path=out)
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert _verify(result)["observed"]["differing_keys"] == ["id=250 (values differ)"]


def test_the_verify_command_checks_a_committed_run_again(source: tuple[str, str]) -> None:
    url, schema = source
    result = _run(
        url, schema, f'{{type: postgres, url: "{url}", table: {schema}.copy, write: replace, primary_key: [id]}}'
    )
    assert result.ok and not [q for q in result.quality if q["check"] == "verify"]
    runner = CliRunner()
    clean = runner.invoke(app, ["verify", result.run_id, "--json"])
    assert clean.exit_code == 0, clean.output
    (passed,) = json.loads(clean.output)["verify"]
    assert (
        passed["passed"]
        and passed["message"]
        == "20,000 rows match the source by count, key set and hash of id, amount, note, day, placed_at"
    )
    run_sql(url, f"UPDATE {schema}.copy SET note = NULL WHERE id IN (7, 70)")
    tampered = runner.invoke(app, ["verify", result.run_id[:17], "--json"])
    assert tampered.exit_code == 1
    (failed,) = json.loads(tampered.output)["verify"]
    assert failed["observed"]["differing_keys"] == ["id=7 (values differ)", "id=70 (values differ)"]
    shown = runner.invoke(app, ["runs", "show", result.run_id, "--json"])
    assert [q["passed"] for q in json.loads(shown.output)["quality"] if q["check"] == "verify"] == [False]


def test_verify_spec_forms() -> None:
    base = (
        "name: p\nsources:\n  s: {type: file, path: a.csv}\ndestination: {type: duckdb, path: o.duckdb, table: t,"
        " verify: %s}\n"
    )
    assert parse_spec(base % "true").pipeline.destination.verify is True  # type: ignore[union-attr]
    spec = parse_spec(base % "{severity: warn, columns: [a, b]}").pipeline.destination.verify  # type: ignore[union-attr]
    assert (spec.severity, spec.columns) == ("warn", ["a", "b"])
    assert parse_spec(base.replace(", verify: %s", "")).pipeline.destination.verify is False  # type: ignore[union-attr]


@pytest.mark.parametrize("direction", ["postgres>mysql", "mysql>duckdb", "duckdb>postgres"])
def test_typical_types_verify_in_every_direction(
    direction: str, pg_schema: tuple[str, str], mysql_database: str, tmp_path: Path
) -> None:
    """The Arrow path between engines keeps each value's canonical text: a faithful load verifies."""
    pg, schema = pg_schema
    path = tmp_path / "t.duckdb"
    for side in _typical_table(pg, schema, mysql_database, path):
        side.close()  # type: ignore[attr-defined]
    sources = {
        "postgres": f'{{type: postgres, url: "{pg}", table: {schema}.t}}',
        "mysql": f'{{type: mysql, url: "{mysql_database}", table: t}}',
        "duckdb": f'{{type: duckdb, path: "{path}", table: t}}',
    }
    targets = {
        "mysql": (
            f'{{type: mysql, url: "{mysql_database}", table: copy, write: replace, primary_key: [id], verify: true}}'
        ),
        "duckdb": (
            f'{{type: duckdb, path: "{tmp_path / "out.duckdb"}", table: copy, write: replace, primary_key: [id],'
            " verify: true}"
        ),
        "postgres": (
            f'{{type: postgres, url: "{pg}", table: {schema}.copy, write: replace, primary_key: [id], verify: true}}'
        ),
    }
    source, target = direction.split(">")
    result = run_pipeline(
        parse_spec(f"name: typical\nsources:\n  t: {sources[source]}\ndestination: {targets[target]}\n", file="p.yaml"),
        Settings(),
    )
    assert result.ok, (result.error, _verify(result)["message"] if result.quality else None)
    assert (
        _verify(result)["message"]
        == "4 rows match the source by count, key set and hash of id, amount, name, d, ts, tz, flag, f, big"
    )


def test_an_api_source_is_not_read_again_and_its_counts_are_reconciled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[str] = []
    body = json.dumps([{"id": i, "name": f"n{i}"} for i in range(1, 251)]).encode()

    class Items(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Items)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "w.duckdb"
    text = f"""
name: api
sources:
  items: {{type: rest, url: "http://127.0.0.1:{server.server_port}/items"}}
destination: {{type: duckdb, path: "{out}", table: items, write: replace, primary_key: [id], verify: true}}
"""
    try:
        result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
        assert result.ok and result.rows_written == 250 and requests == ["/items"]
        found = _verify(result)
        assert (
            found["message"]
            == "counts only (source items is an API and is not read again; its staged counts are compared): 250 read,"
            " 250 loaded, 0 quarantined"
        )
        assert found["observed"]["target_rows"] == 250
        _tamper_before_verify(monkeypatch, "DELETE FROM items WHERE id > 240", duckdb_path=out)
        result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
        assert result.status == "failed" and len(requests) == 2
        assert _verify(result)["message"] == "the target holds 240 rows, the run committed 250"
    finally:
        server.shutdown()
        server.server_close()


def test_row_wise_steps_are_hashed_on_the_columns_they_pass_through(
    source: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = source
    out = tmp_path / "w.duckdb"
    steps = """transforms:
  - name: shaped
    input: orders
    steps:
      - rename: {note: label, day: order_day}
      - derive: {amount: amount * 2, doubled: amount * 2}
      - mask: [label]
      - select: [id, amount, label, order_day, placed_at, doubled]
"""
    destination = f'{{type: duckdb, path: "{out}", table: shaped, write: replace, primary_key: [id], verify: true}}'
    result = _run(url, schema, destination, extra=steps)
    assert result.ok, result.error
    assert (
        _verify(result)["message"]
        == "20,000 rows match the source by count, key set and hash of id, order_day, placed_at"
    )
    _tamper_before_verify(
        monkeypatch,
        "UPDATE shaped SET order_day = order_day + 1 WHERE id = 99",
        "UPDATE shaped SET label = 'x' WHERE id = 98",
        duckdb_path=out,
    )
    found = _verify(_run(url, schema, destination, extra=steps))
    assert found["observed"]["differing_keys"] == [
        "id=99 (values differ)"
    ]  # label is masked: not the source's value to compare
    filtered = _run(
        url,
        schema,
        destination.replace("shaped", "kept"),
        extra="transforms:\n  - {name: kept, input: orders, steps: [{filter: 'id > 10'}]}",
    )
    assert (
        _verify(filtered)["message"]
        == "counts only (it loads transform kept, whose rows are not the source's one to one): 20,000 read, 19,990"
        " loaded, 0 quarantined"
    )


def test_the_api_shows_the_verify_result_with_the_run(tmp_path: Path) -> None:
    from tests.api.conftest import AUTH, TOKEN, TestClient, wait_for_run

    from agent_orchestrated_etl.api.app import create_app
    from agent_orchestrated_etl.api.service import ServeOptions

    (tmp_path / "people.csv").write_text("id,name\n" + "".join(f"{i},p{i}\n" for i in range(1, 51)))
    spec = (
        "name: people\nsources:\n  people: {type: file, path: people.csv}\ndestination: {type: duckdb, path:"
        " out.duckdb, table: people, write: replace, primary_key: [id], verify: true}\n"
    )
    options = ServeOptions(
        settings=Settings(),
        token=TOKEN,
        base_dir=tmp_path,
        max_body_bytes=64 * 1024,
        dedup_seconds=600,
        public_read=True,
    )
    with TestClient(create_app(options), raise_server_exceptions=False) as client:
        assert client.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH).status_code == 201
        run = wait_for_run(
            client, client.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"]
        )
    assert run["status"] == "succeeded", run
    assert [(q["check"], q["scope"], q["passed"], q["message"]) for q in run["quality"]] == [
        ("verify", "people", True, "50 rows match the source by count, key set and hash of id, name")
    ]


def test_a_sqlite_target_reconciles_counts_and_its_row_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    data = tmp_path / "in.csv"
    data.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 301)))
    target = tmp_path / "out.db"
    text = f"""
name: lite
sources:
  f: {{type: file, path: "{data}"}}
destination: {{type: sqlite, url: "sqlite:///{target}", table: t, write: replace, verify: true}}
"""
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert (
        result.ok
        and _verify(result)["message"]
        == "counts only (a sqlite target has no md5 to hash its rows with): 300 read, 300 loaded, 0 quarantined"
    )
    real = after_commit.reconcile

    def tampered(*args: Any, **kwargs: Any) -> dict[str, Any]:
        with sqlite3.connect(target) as conn:
            conn.execute("DELETE FROM t WHERE id = 300")
        return real(*args, **kwargs)

    monkeypatch.setattr(after_commit, "reconcile", tampered)
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert (
        result.status == "failed" and _verify(result)["message"] == "the target holds 299 rows, the run committed 300"
    )


def test_a_parquet_file_target_is_read_back_and_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data = tmp_path / "in.csv"
    data.write_text("id,price,day\n" + "".join(f"{i},{i}.25,2024-03-{1 + i % 28:02d}\n" for i in range(1, 401)))
    out = tmp_path / "out"
    text = f"""
name: files
sources:
  f: {{type: file, path: "{data}"}}
destination: {{type: file, path: "{out}", write: replace, primary_key: [id], verify: true}}
"""
    result = run_pipeline(parse_spec(text, file="p.yaml"), Settings())
    assert (
        result.ok
        and _verify(result)["message"] == "400 rows match the source by count, key set and hash of id, price, day"
    )
    real = after_commit.reconcile

    def tampered(*args: Any, **kwargs: Any) -> dict[str, Any]:
        (name,) = json.loads((out / "_manifest.json").read_text())["files"]
        table = pq.read_table(out / name)
        pq.write_table(
            table.set_column(1, "price", pc.if_else(pc.equal(table["id"], 42), 0.0, table["price"])), out / name
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(after_commit, "reconcile", tampered)
    found = _verify(run_pipeline(parse_spec(text, file="p.yaml"), Settings()))
    assert found["observed"]["differing_keys"] == ["id=42 (values differ)"]
    csv_out = text.replace(f'path: "{out}", write', f'path: "{tmp_path / "csv"}", format: csv, write')
    monkeypatch.setattr(after_commit, "reconcile", real)
    assert (
        _verify(run_pipeline(parse_spec(csv_out, file="p.yaml"), Settings()))["message"]
        == "counts only (only a local, unpartitioned Parquet file target is read back for a hash): 400 read, 400"
        " loaded, 0 quarantined"
    )


def test_without_a_primary_key_a_duplicated_row_is_named_by_all_its_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "in.csv"
    data.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 101)))
    out = tmp_path / "w.duckdb"
    _tamper_before_verify(
        monkeypatch,
        "INSERT INTO t SELECT * FROM t WHERE id = 7",
        "UPDATE t SET name = NULL WHERE id = 8",
        duckdb_path=out,
    )
    text = f"""
name: nokey
sources:
  f: {{type: file, path: "{data}"}}
destination: {{type: duckdb, path: "{out}", table: t, write: replace, verify: true}}
"""
    found = _verify(run_pipeline(parse_spec(text, file="p.yaml"), Settings()))
    assert found["observed"]["key"] == ["id", "name"]
    assert (
        found["message"]
        == "the source has 100 rows, the target 101; the key sets differ; first differing keys: id=7, name=n7 (1 in the"
        " source, 2 in the target), id=8, name=NULL (not in the source), id=8, name=n8 (missing in the target)"
    )
