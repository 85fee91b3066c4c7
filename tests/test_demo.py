"""The demo end to end, through the CLI and the agents, checked against the generated files."""

import csv
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.store.records import RunStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    directory = tmp_path_factory.mktemp("demo")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AGENT_ETL_HOME", str(directory / "home"))
    try:
        code = app(["demo", "--dir", str(directory), "--scale", "0.05", "--json"], standalone_mode=False)
    finally:
        monkeypatch.undo()
    return directory, code


def expected_customers(directory: Path) -> tuple[list[dict[str, str]], list[tuple[int, str]]]:
    """An independent reading of customers.csv with the demo spec's checks applied in plain Python."""
    kept, quarantined, seen = [], [], set()
    with open(directory / "customers.csv", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        for row in reader:
            if len(row) != len(header):
                quarantined.append((reader.line_num, "parse"))
                continue
            record = dict(zip(header, row, strict=True))
            failed = "not_null(email)" if record["email"] == "" else None
            if record["customer_id"] in seen:
                failed = failed or "unique(customer_id)"
            seen.add(record["customer_id"])
            if failed:
                quarantined.append((reader.line_num, failed))
            else:
                kept.append(record)
    return kept, quarantined


def test_demo_succeeds(demo: tuple[Path, int]) -> None:
    assert demo[1] == 0


def test_customers_are_loaded_and_dirty_rows_quarantined_with_their_line(demo: tuple[Path, int]) -> None:
    directory, _ = demo
    kept, quarantined = expected_customers(directory)
    con = duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == len(kept)
    assert sorted(r[0] for r in con.execute("SELECT customer_id FROM customers").fetchall()) == sorted(
        int(r["customer_id"]) for r in kept
    )
    rows = con.execute("SELECT check_name, origin, row_json FROM customers__quarantine").fetchall()
    parse = sorted(int(origin.rsplit(":", 1)[1]) for check, origin, _ in rows if check == "parse")
    assert parse == sorted(line for line, reason in quarantined if reason == "parse")
    by_check = {}
    for check, _, _ in rows:
        by_check[check] = by_check.get(check, 0) + 1
    assert by_check == {reason: sum(1 for _, r in quarantined if r == reason) for _, reason in quarantined}
    null_email = [json.loads(row) for check, _, row in rows if check == "not_null(email)"]
    assert null_email and all(r["email"] is None for r in null_email)


def test_orders_lose_only_rows_without_a_customer(demo: tuple[Path, int]) -> None:
    directory, _ = demo
    source = sqlite3.connect(directory / "shop.db")
    total, without = source.execute("SELECT count(*), count(*) - count(customer_id) FROM orders").fetchone()
    con = duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == total - without
    assert (
        con.execute("SELECT count(*) FROM orders__quarantine WHERE check_name = 'not_null(customer_id)'").fetchone()[0]
        == without
    )
    assert (
        con.execute("SELECT count(*) FROM products").fetchone()[0]
        == source.execute("SELECT count(*) FROM products").fetchone()[0]
    )


def test_order_lines_join_matches_an_independent_computation(demo: tuple[Path, int]) -> None:
    directory, _ = demo
    source = sqlite3.connect(directory / "shop.db")
    with_customer = {r[0] for r in source.execute("SELECT order_id FROM orders WHERE customer_id IS NOT NULL")}
    count, amount = 0, Decimal(0)
    with open(directory / "order_items.jsonl", encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            if item["order_id"] in with_customer:
                count += 1
                amount += round(Decimal(str(item["quantity"])) * Decimal(str(item["unit_price"])), 2)
    con = duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True)
    got_count, got_amount = con.execute("SELECT count(*), sum(amount) FROM order_lines").fetchone()
    assert got_count == count
    assert Decimal(str(got_amount)).quantize(Decimal("0.01")) == amount


def test_the_run_is_recorded_with_tasks_and_decisions(demo: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    directory, _ = demo
    monkeypatch.setenv("AGENT_ETL_HOME", str(directory / "home"))
    store = RunStore(Settings().store_url)
    [run] = store.list_runs()
    record = store.get_run(run["run_id"])
    assert record["status"] == "succeeded"
    assert len(record["tasks"]) == 8 and all(t["status"] == "succeeded" for t in record["tasks"])
    choices = [e["choice"] for e in record["events"] if e["kind"] == "decision"]
    assert choices.count("commit") == 4
    assert sum(1 for c in choices if c.startswith("assign to etl-")) == 8


def test_each_source_is_read_once(demo: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # customers, orders and products feed their own table and order_lines' SQL: they are staged
    # once for the transform, and their tables load from the stage (issue 14, item 2).
    directory, _ = demo
    monkeypatch.setenv("AGENT_ETL_HOME", str(directory / "home"))
    store = RunStore(Settings().store_url)
    [run] = store.list_runs()
    record = store.get_run(run["run_id"])
    reads = sorted(t["task_id"] for t in record["tasks"] if t["kind"] in ("stage", "extract_load", "pushdown"))
    assert reads == [f"{name}[0]>workspace" for name in ("customers", "order_items", "orders", "products")]
    read_once = {
        e["subject"]: e["choice"]
        for e in record["events"]
        if e["kind"] == "decision" and e["choice"].startswith("read once into the run workspace")
    }
    assert read_once == {
        f"source {name}": f"read once into the run workspace for destinations {name}, order_lines"
        for name in ("customers", "orders", "products")
    }
    loads = {t["task_id"]: t for t in record["tasks"] if t["kind"] == "transform_load"}
    assert set(loads) == {"customers>customers", "orders>orders", "products>products", "order_lines>order_lines"}
