"""Sources with tables: or schema:: each table its own source, tasks, state and destination table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.duckdb import DuckDBDestination
from agent_orchestrated_etl.exceptions import ConnectionFailedError
from agent_orchestrated_etl.orchestrator import resume_run, run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import parse_spec


def run(text: str) -> RunResult:
    return run_pipeline(parse_spec(text, file="p.yaml"), Settings())


def rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def decision(result: RunResult, subject: str) -> dict[str, str]:
    return next(d for d in result.decisions if d["subject"] == subject)


@pytest.fixture
def crm(pg_schema: tuple[str, str]) -> tuple[str, str, sa.Engine]:
    """Three tables, one to exclude, a view and an unmappable table in a schema of their own."""
    url, schema = pg_schema
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.customers (id int PRIMARY KEY, name text)")
        conn.exec_driver_sql(f"INSERT INTO {schema}.customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')")
        conn.exec_driver_sql(
            f"CREATE TABLE {schema}.orders (order_id int PRIMARY KEY, customer_id int, amount numeric(10, 2),"
            " updated_at timestamp)"
        )
        conn.exec_driver_sql(
            f"INSERT INTO {schema}.orders SELECT i, 1 + mod(i, 3), i * 1.5, timestamp '2024-01-01' + i * interval '1"
            " hour' FROM generate_series(1, 500) i"
        )
        conn.exec_driver_sql(
            f"CREATE TABLE {schema}.lines (order_id int, line_no int, sku text, PRIMARY KEY (order_id, line_no))"
        )
        conn.exec_driver_sql(
            f"INSERT INTO {schema}.lines SELECT i / 2 + 1, mod(i, 2), 'sku-' || i FROM generate_series(0, 999) i"
        )
        conn.exec_driver_sql(f"CREATE TABLE {schema}.audit_log (id int, addr inet)")
        conn.exec_driver_sql(f"CREATE VIEW {schema}.big_orders AS SELECT * FROM {schema}.orders WHERE amount > 100")
    yield url, schema, engine
    engine.dispose()


def schema_spec(
    url: str, schema: str, out: Path, *, exclude: str = "[audit_log]", destination: str = "write: replace"
) -> str:
    return f"""
name: crm_copy
sources:
  crm: {{type: postgres, url: "{url}", schema: {schema}, exclude: {exclude}}}
destination: {{type: duckdb, path: "{out}", {destination}}}
"""


def test_a_schema_lands_table_by_table_pushed_down_and_a_rerun_replaces(crm: tuple, tmp_path: Path) -> None:
    url, schema, _ = crm
    out = tmp_path / "w.duckdb"
    result = run(schema_spec(url, schema, out))
    assert result.ok, result.error
    expansion = decision(result, "source crm")
    assert (
        expansion["choice"]
        == "read 3 table(s) as a source each, each into a destination table of its name: crm.customers, crm.lines,"
        " crm.orders"
    )
    assert (
        expansion["reason"]
        == f"schema {schema} has 4 base table(s): audit_log, customers, lines, orders; exclude: leaves out audit_log"
    )
    assert sorted((t.id, t.kind) for t in result.tasks) == [
        ("crm.customers[0]>customers", "pushdown"),
        ("crm.lines[0]>lines", "pushdown"),
        ("crm.orders[0]>orders", "pushdown"),
    ]
    assert sorted((c["destination"], c["rows"]) for c in result.commits) == [
        ("customers", 3),
        ("lines", 1000),
        ("orders", 500),
    ]
    check = (
        "SELECT (SELECT count(*) FROM customers), (SELECT string_agg(name, ',' ORDER BY id) FROM customers), (SELECT"
        " count(*) FROM orders), (SELECT sum(amount) FROM orders), (SELECT count(*) FROM lines), (SELECT count(DISTINCT"
        " sku) FROM lines)"
    )
    expected = [(3, "Ada,Grace,Edsger", 500, Decimal("187875.00"), 1000, 1000)]
    assert rows(out, check) == expected
    assert rows(out, "SELECT max(updated_at), typeof(any_value(amount)) FROM orders") == [
        (dt.datetime(2024, 1, 21, 20), "DECIMAL(10,2)")
    ]
    again = run(schema_spec(url, schema, out))
    assert again.ok and again.rows_written == 1503
    assert rows(out, check) == expected
    tables = {r[0] for r in rows(out, "SELECT table_name FROM duckdb_tables()")}
    assert tables == {"customers", "orders", "lines", "_agent_etl_loads", "_agent_etl_state"}


def test_a_listed_table_that_does_not_exist_fails_the_run_naming_it(crm: tuple, tmp_path: Path) -> None:
    url, schema, _ = crm
    out = tmp_path / "w.duckdb"
    text = f"""
name: crm_copy
sources:
  crm: {{type: postgres, url: "{url}", tables: [{schema}.customers, {schema}.refunds]}}
destination: {{type: duckdb, path: "{out}"}}
"""
    result = run(text)
    assert result.status == "failed" and not result.tasks
    assert result.error.startswith(
        f"source crm: table {schema}.refunds does not exist (check tables:; schema {schema} has audit_log, customers,"
        " lines, orders)"
    )
    assert "\n" not in result.error
    assert not out.exists() or rows(out, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'customers'") == [
        (0,)
    ]


def test_an_excluded_table_that_does_not_exist_is_an_error(crm: tuple, tmp_path: Path) -> None:
    url, schema, _ = crm
    result = run(schema_spec(url, schema, tmp_path / "w.duckdb", exclude="[audit_logs]"))
    assert result.status == "failed"
    assert result.error.startswith(f"source crm: exclude: names audit_logs, which is not a table of schema {schema}")


def test_a_listed_tables_merge_on_their_own_keys_with_per_table_options(crm: tuple, tmp_path: Path) -> None:
    url, schema, engine = crm
    out = tmp_path / "w.duckdb"
    text = f"""
name: crm_merge
sources:
  crm:
    type: postgres
    url: "{url}"
    tables: [{schema}.customers, {schema}.orders]
    table_options:
      orders: {{partition: {{column: order_id, parts: 2}}, incremental: {{cursor: updated_at}}}}
destination: {{type: duckdb, path: "{out}", table_prefix: raw_, write: merge}}
"""
    first = run(text)
    assert first.ok, first.error
    assert decision(first, "destination raw_orders")["choice"] == "merge on (order_id)"
    assert decision(first, "destination raw_customers")["choice"] == "merge on (id)"
    assert sorted((t.id, t.kind) for t in first.tasks) == [
        ("crm.customers[0]>raw_customers", "pushdown"),
        ("crm.orders[0]>raw_orders", "extract_load"),
        ("crm.orders[1]>raw_orders", "extract_load"),
    ]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {schema}.customers SET name = 'Grace Hopper' WHERE id = 2")
        conn.exec_driver_sql(
            f"UPDATE {schema}.orders SET amount = 0, updated_at = timestamp '2025-01-01' WHERE order_id = 7"
        )
        conn.exec_driver_sql(f"INSERT INTO {schema}.orders VALUES (501, 1, 10, timestamp '2025-01-02')")
    second = run(text)
    assert second.ok, second.error
    # orders reads only what changed since the mark its own commit stored; customers is read whole and merged.
    assert sum(t.rows for t in second.tasks if t.id.startswith("crm.orders")) == 2
    assert rows(out, "SELECT count(*), sum(amount), max(updated_at) FROM raw_orders") == [
        (501, Decimal("187875.00") - Decimal("10.50") + 10, dt.datetime(2025, 1, 2))
    ]
    assert rows(out, "SELECT id, name FROM raw_customers ORDER BY id") == [
        (1, "Ada"),
        (2, "Grace Hopper"),
        (3, "Edsger"),
    ]
    assert rows(out, "SELECT state_key FROM _agent_etl_state") == [("crm_merge/crm.orders",)]


def test_merge_needs_each_table_to_have_a_primary_key(crm: tuple, tmp_path: Path) -> None:
    url, schema, _ = crm
    result = run(schema_spec(url, schema, tmp_path / "w.duckdb", exclude="[]", destination="write: merge"))
    assert result.status == "failed"
    assert (
        result.error
        == f"source crm: write: merge needs a primary key, and table {schema}.audit_log has none (add one to the table,"
        " give the destination primary_key:, or read the table through a source of its own)"
    )


def test_a_crash_between_table_commits_resumes_without_loading_any_table_twice(
    crm: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema, engine = crm
    out = tmp_path / "w.duckdb"
    commits: list[str] = []

    def crash_on_second(run_id: str) -> None:
        commits.append(run_id)
        if len(commits) == 2:
            raise ConnectionFailedError("injected: the connection drops before the second table's COMMIT")

    monkeypatch.setattr(DuckDBDestination, "before_commit", crash_on_second)
    failed = run(schema_spec(url, schema, out, destination="write: append"))
    assert failed.status == "failed" and "injected" in failed.error
    assert [c["destination"] for c in failed.commits] == ["customers"]
    monkeypatch.setattr(DuckDBDestination, "before_commit", None)
    with engine.begin() as conn:  # created after the first plan: the resumed run keeps to the tables it planned
        conn.exec_driver_sql(f"CREATE TABLE {schema}.a_new AS SELECT 1 AS id")
    resumed = resume_run(failed.run_id, Settings())
    assert resumed.ok, resumed.error
    assert sorted((c["destination"], c["rows"]) for c in resumed.commits) == [
        ("customers", 3),
        ("lines", 1000),
        ("orders", 500),
    ]
    assert rows(out, "SELECT table_name, rows FROM _agent_etl_loads ORDER BY 1") == [
        ("customers", 3),
        ("lines", 1000),
        ("orders", 500),
    ]
    assert rows(out, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'a_new'") == [(0,)]
    assert rows(
        out, "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM lines), (SELECT count(*) FROM orders)"
    ) == [(3, 1000, 500)]


def test_an_unreadable_table_of_a_non_critical_destination_leaves_the_others_committed(
    crm: tuple, tmp_path: Path
) -> None:
    url, schema, _ = crm
    out = tmp_path / "w.duckdb"
    result = run(schema_spec(url, schema, out, exclude="[]", destination="write: replace, critical: false"))
    assert result.status == "partial"
    assert "column addr: PostgreSQL type inet has no Arrow mapping" in result.error
    assert sorted(c["destination"] for c in result.commits) == ["customers", "lines", "orders"]
    assert rows(
        out, "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM lines), (SELECT count(*) FROM orders)"
    ) == [(3, 1000, 500)]


def test_sqlite_tables_into_postgres_under_a_prefix_schema(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    db = tmp_path / "shop.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE products (sku TEXT PRIMARY KEY, price TEXT_DECIMAL(8, 2))")
        conn.exec_driver_sql("INSERT INTO products VALUES ('a', '1.10'), ('b', '2.20')")
        conn.exec_driver_sql("CREATE TABLE stock (sku TEXT, qty INTEGER)")
        conn.exec_driver_sql("INSERT INTO stock VALUES ('a', 5), ('b', 0), ('c', NULL)")
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER, body TEXT)")
        conn.exec_driver_sql("CREATE VIEW cheap AS SELECT * FROM products WHERE price < 2")
    engine.dispose()
    text = f"""
name: shop_to_pg
sources:
  shop: {{type: sqlite, path: "{db}", schema: main, exclude: [notes]}}
destination: {{type: postgres, url: "{url}", table_prefix: "{schema}.", write: replace}}
"""
    for _ in range(2):
        result = run(text)
        assert result.ok, result.error
        assert sorted((c["destination"], c["rows"]) for c in result.commits) == [
            (f"{schema}.products", 2),
            (f"{schema}.stock", 3),
        ]
    pg = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with pg.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT sku, price FROM {schema}.products ORDER BY sku").all() == [
            ("a", Decimal("1.10")),
            ("b", Decimal("2.20")),
        ]
        assert conn.exec_driver_sql(f"SELECT sku, qty FROM {schema}.stock ORDER BY sku").all() == [
            ("a", 5),
            ("b", 0),
            ("c", None),
        ]
        assert not sa.inspect(conn).has_table("notes", schema=schema)
    pg.dispose()


def test_a_mariadb_database_into_duckdb(mysql_database: str, tmp_path: Path) -> None:
    engine = sa.create_engine(mysql_database.replace("mysql://", "mysql+pymysql://"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10))")
        conn.exec_driver_sql("INSERT INTO a VALUES (1, 'x'), (2, 'y')")
        conn.exec_driver_sql("CREATE TABLE b (id INT, price DECIMAL(12, 3))")
        conn.exec_driver_sql("INSERT INTO b VALUES (1, 1.125), (2, NULL), (3, 99999.999)")
    engine.dispose()
    database = mysql_database.rsplit("/", 1)[1]
    out = tmp_path / "w.duckdb"
    text = f"""
name: maria_copy
sources:
  maria: {{type: mysql, url: "{mysql_database}", schema: {database}}}
destination: {{type: duckdb, path: "{out}", write: replace}}
"""
    for _ in range(2):
        result = run(text)
        assert result.ok, result.error
    assert rows(out, "SELECT id, v FROM a ORDER BY id") == [(1, "x"), (2, "y")]
    assert rows(out, "SELECT count(*), sum(price) FROM b") == [(3, Decimal("100001.124"))]


def test_a_duckdb_schema_with_per_table_partitions(tmp_path: Path) -> None:
    source = tmp_path / "src.duckdb"
    with duckdb.connect(str(source)) as conn:
        conn.execute("CREATE TABLE events AS SELECT range AS id, range % 7 AS kind FROM range(10000)")
        conn.execute("CREATE TABLE kinds AS SELECT range AS kind, 'k' || range AS label FROM range(7)")
        conn.execute("CREATE VIEW v AS SELECT 1")
    out = tmp_path / "w.duckdb"
    text = f"""
name: duck_copy
sources:
  lake: {{type: duckdb, path: "{source}", schema: main, table_options: {{events: {{partition: {{column: id, parts: 4}}}}}}}}
destination: {{type: duckdb, path: "{out}", write: replace}}
"""
    result = run(text)
    assert result.ok, result.error
    assert sorted(t.id for t in result.tasks) == [
        "lake.events[0]>events",
        "lake.events[1]>events",
        "lake.events[2]>events",
        "lake.events[3]>events",
        "lake.kinds[0]>kinds",
    ]
    assert rows(out, "SELECT count(*), count(DISTINCT id), sum(id) FROM events") == [(10000, 10000, 49995000)]
    assert rows(out, "SELECT string_agg(label, ',' ORDER BY kind) FROM kinds") == [("k0,k1,k2,k3,k4,k5,k6",)]


def test_validate_reports_a_missing_table_at_its_source(
    crm: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent_orchestrated_etl.cli import app

    url, schema, _ = crm
    spec = tmp_path / "p.yaml"
    spec.write_text(f"""name: crm_copy
sources:
  crm:
    type: postgres
    url: "{url}"
    tables: [{schema}.customers, {schema}.refunds]
destination: {{type: duckdb, path: w.duckdb}}
""")
    assert app(["validate", str(spec)], standalone_mode=False) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(str(spec))]
    assert lines == [
        f"{spec}:3: sources.crm: table {schema}.refunds does not exist (check tables:; schema {schema} has audit_log,"
        " customers, lines, orders)"
    ]


def test_the_source_incremental_applies_to_each_table_without_an_entry_of_its_own(crm: tuple, tmp_path: Path) -> None:
    url, schema, _ = crm
    out = tmp_path / "w.duckdb"
    text = f"""
name: crm_incremental
sources:
  crm:
    type: postgres
    url: "{url}"
    tables: [{schema}.customers, {schema}.orders]
    incremental: {{cursor: updated_at}}
    table_options: {{customers: {{}}}}
destination: {{type: duckdb, path: "{out}", write: merge}}
"""
    first = run(text)
    assert first.ok, first.error
    assert decision(first, "source crm.orders")["choice"] == "read incrementally from the beginning"
    again = run(text)
    assert again.ok, again.error
    assert sorted((t.id, t.rows) for t in again.tasks) == [
        ("crm.customers[0]>customers", 3),
        ("crm.orders[0]>orders", 0),
    ]
    assert rows(out, "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders)") == [(3, 500)]


def test_one_table_of_a_schema_source_can_be_profiled(tmp_path: Path) -> None:
    from agent_orchestrated_etl.exceptions import ConfigurationError
    from agent_orchestrated_etl.profiling.sources import open_source

    source = tmp_path / "src.duckdb"
    with duckdb.connect(str(source)) as conn:
        conn.execute("CREATE TABLE kinds AS SELECT range AS kind FROM range(7)")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: p\nsources:\n  lake: {type: duckdb, path: src.duckdb, schema: main}\ndestination: {type: duckdb, path:"
        " w.duckdb}\n"
    )
    opened = open_source(f"{spec}:lake.kinds")
    assert sum(b.num_rows for p in opened.source.partitions() for b, _ in opened.source.read(p)) == 7
    with pytest.raises(ConfigurationError, match="reads several tables"):
        open_source(f"{spec}:lake")
