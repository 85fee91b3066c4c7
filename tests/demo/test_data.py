"""The demo generator's files must match its manifest exactly, recounted independently."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pytest

from agent_orchestrated_etl.demo.data import DemoManifest, generate_demo_data

SCALE = 0.01
FILES = ("shop.db", "customers.csv", "order_items.jsonl")
DIRTY_KINDS = {
    "customers.malformed_lines",
    "customers.null_email",
    "customers.duplicate_customer_id",
    "orders.null_customer_id",
    "orders.unknown_customer_id",
    "order_items.negative_quantity",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate_demo_data(tmp_path_factory.mktemp("demo"), scale=SCALE)


@pytest.fixture(scope="module")
def csv_rows(manifest: DemoManifest) -> list[tuple[int, list[str]]]:
    """(physical line number, fields) for every data line of customers.csv."""
    with (manifest.directory / "customers.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["customer_id", "email", "full_name", "country", "signed_up_at"]
        return [(reader.line_num, row) for row in reader]


@pytest.fixture(scope="module")
def well_formed(csv_rows: list[tuple[int, list[str]]]) -> list[list[str]]:
    return [row for _, row in csv_rows if len(row) == 5]


@pytest.fixture(scope="module")
def orders(manifest: DemoManifest) -> list[tuple]:
    with sqlite3.connect(manifest.directory / "shop.db") as conn:
        return conn.execute("SELECT * FROM orders ORDER BY order_id").fetchall()


@pytest.fixture(scope="module")
def items(manifest: DemoManifest) -> list[dict]:
    with (manifest.directory / "order_items.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in FILES}


def test_same_seed_and_scale_give_identical_files(tmp_path: Path) -> None:
    first = generate_demo_data(tmp_path / "a", scale=SCALE, seed=7)
    second = generate_demo_data(tmp_path / "b", scale=SCALE, seed=7)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert (first.counts, first.dirty, first.malformed_csv_lines) == (
        second.counts,
        second.dirty,
        second.malformed_csv_lines,
    )
    generate_demo_data(tmp_path / "c", scale=SCALE, seed=8)
    assert _digests(tmp_path / "c")["customers.csv"] != _digests(tmp_path / "a")["customers.csv"]


def test_regenerating_into_the_same_directory_overwrites(tmp_path: Path) -> None:
    generate_demo_data(tmp_path, scale=0.02, seed=1)
    manifest = generate_demo_data(tmp_path, scale=SCALE, seed=7)
    generate_demo_data(tmp_path / "fresh", scale=SCALE, seed=7)
    assert _digests(tmp_path) == _digests(tmp_path / "fresh")
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == manifest.counts["orders"]


def test_every_dirty_kind_is_present_at_small_scale(manifest: DemoManifest) -> None:
    assert set(manifest.dirty) == DIRTY_KINDS
    assert all(count >= 1 for count in manifest.dirty.values()), manifest.dirty
    assert manifest.counts["orders.joining_duplicate_customer"] >= 1


def test_sqlite_tables_have_declared_types_and_exact_counts(manifest: DemoManifest, orders: list[tuple]) -> None:
    with sqlite3.connect(manifest.directory / "shop.db") as conn:
        declared = {
            table: [(col[1], col[2]) for col in conn.execute(f"PRAGMA table_info({table})")]
            for table in ("orders", "products")
        }
        products = conn.execute("SELECT * FROM products").fetchall()
    assert declared == {
        "orders": [
            ("order_id", "INTEGER"),
            ("customer_id", "INTEGER"),
            ("ordered_at", "TEXT"),
            ("status", "TEXT"),
            ("currency", "TEXT"),
            ("total_amount", "REAL"),
        ],
        "products": [
            ("product_id", "INTEGER"),
            ("sku", "TEXT"),
            ("name", "TEXT"),
            ("category", "TEXT"),
            ("unit_price", "REAL"),
        ],
    }
    assert len(orders) == manifest.counts["orders"]
    assert len(products) == manifest.counts["products"]
    timestamp = re.compile(r"2025-\d\d-\d\d \d\d:\d\d:\d\d")
    statuses = {"placed", "paid", "shipped", "delivered", "cancelled"}
    for _, _, ordered_at, status, currency, total in orders:
        assert timestamp.fullmatch(ordered_at) and status in statuses and currency == "EUR"
        assert total == round(total, 2)
    assert all(price == round(price, 2) and price > 0 for *_, price in products)


def test_malformed_csv_lines_are_exactly_the_wrong_width_lines(
    manifest: DemoManifest, csv_rows: list[tuple[int, list[str]]]
) -> None:
    assert len(csv_rows) == manifest.counts["customers"]
    bad = [(line, row) for line, row in csv_rows if len(row) != 5]
    assert tuple(line for line, _ in bad) == manifest.malformed_csv_lines
    assert len(bad) == manifest.dirty["customers.malformed_lines"]
    assert {len(row) for _, row in bad} == {4, 6}  # both too few and one too many
    # The recorded numbers are physical lines: reparse each raw line on its own.
    raw = (manifest.directory / "customers.csv").read_text(encoding="utf-8").split("\n")
    for line in manifest.malformed_csv_lines:
        assert len(next(csv.reader([raw[line - 1]]))) != 5


def test_csv_exercises_quoting_and_utf8(manifest: DemoManifest, well_formed: list[list[str]]) -> None:
    names = [row[2] for row in well_formed]
    assert any("," in name for name in names)
    assert any('"' in name for name in names)
    assert any(not name.isascii() for name in names)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", row[4]) for row in well_formed)


def test_csv_null_emails_and_duplicate_ids(manifest: DemoManifest, well_formed: list[list[str]]) -> None:
    assert sum(row[1] == "" for row in well_formed) == manifest.dirty["customers.null_email"]
    id_counts = Counter(row[0] for row in well_formed)
    assert max(id_counts.values()) == 2
    assert sum(n == 2 for n in id_counts.values()) == manifest.dirty["customers.duplicate_customer_id"]
    # Duplicates repeat the id only; their other fields are valid, emails included.
    duplicated = {cid for cid, n in id_counts.items() if n == 2}
    assert all(row[1] for row in well_formed if row[0] in duplicated)


def test_order_customer_ids_join_as_recorded(
    manifest: DemoManifest, orders: list[tuple], well_formed: list[list[str]]
) -> None:
    id_counts = Counter(int(row[0]) for row in well_formed)
    customer_ids = [row[1] for row in orders]
    known = [cid for cid in customer_ids if cid in id_counts]
    assert customer_ids.count(None) == manifest.dirty["orders.null_customer_id"]
    assert len(customer_ids) - customer_ids.count(None) - len(known) == manifest.dirty["orders.unknown_customer_id"]
    assert len(known) == manifest.counts["orders.with_known_customer"]
    joining_duplicate = sum(id_counts[cid] == 2 for cid in known)
    assert joining_duplicate == manifest.counts["orders.joining_duplicate_customer"]
    # An inner join multiplies exactly the orders of duplicated customers.
    assert sum(id_counts[cid] for cid in known) == len(known) + joining_duplicate


def test_order_items_match_manifest_and_orders(manifest: DemoManifest, items: list[dict], orders: list[tuple]) -> None:
    assert len(items) == manifest.counts["order_items"]
    negative = [item for item in items if item["quantity"] < 0]
    assert len(negative) == manifest.dirty["order_items.negative_quantity"]
    lines: dict[int, list[int]] = {}
    cents: Counter[int] = Counter()
    for item in items:
        lines.setdefault(item["order_id"], []).append(item["line_no"])
        cents[item["order_id"]] += abs(item["quantity"]) * round(item["unit_price"] * 100)
    assert sorted(lines) == [row[0] for row in orders]
    assert all(nos == list(range(1, len(nos) + 1)) and len(nos) <= 5 for nos in lines.values())
    # total_amount is what the lines add up to before their quantities were corrupted.
    assert all(round(total * 100) == cents[order_id] for order_id, *_, total in orders)


def test_order_items_have_one_json_type_per_field(manifest: DemoManifest) -> None:
    table = pa_json.read_json(manifest.directory / "order_items.jsonl")
    assert table.schema == pa.schema(
        [
            ("order_id", pa.int64()),
            ("line_no", pa.int64()),
            ("product_id", pa.int64()),
            ("quantity", pa.int64()),
            ("unit_price", pa.float64()),
        ]
    )
    assert table.num_rows == manifest.counts["order_items"]


def test_rejects_a_scale_too_small_for_the_dirty_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        generate_demo_data(tmp_path, scale=0.0001)
