"""Deterministic e-commerce demo dataset for ``agent-etl demo`` and the tests.

The shop is split over three formats on purpose, so one demo pipeline has to
extract from a database, a CSV file and a JSON Lines file:

* ``shop.db`` (SQLite): ``orders`` and ``products``;
* ``customers.csv``: customers, with quoted names and UTF-8 letters;
* ``order_items.jsonl``: order lines, one JSON object per line.

A small, exactly counted share of the rows is dirty (malformed CSV lines, null
emails, duplicate customer ids, null or unknown customer ids in orders,
negative quantities), so quality checks have something to find and tests can
assert the exact numbers recorded in the returned :class:`DemoManifest`.

Every order's ``total_amount`` is the sum of ``abs(quantity) * unit_price`` over
its items: the negative quantities are corruptions of otherwise valid lines.
"""

from __future__ import annotations

import csv
import random
import sqlite3
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

BASE_ROWS = {"customers": 50_000, "orders": 200_000, "products": 2_000}
DIRTY_SHARE = {
    "customers.malformed_lines": 0.004,
    "customers.null_email": 0.004,
    "customers.duplicate_customer_id": 0.002,
    "orders.null_customer_id": 0.003,
    "orders.unknown_customer_id": 0.002,
    "order_items.negative_quantity": 0.001,
}
# Orders start on a fixed date, never "now", so the files are reproducible.
ORDERS_FROM = datetime(2025, 1, 1)
SIGNUPS_FROM = date(2020, 1, 1)
STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled")
STATUS_WEIGHTS = (5, 10, 15, 62, 8)
ITEMS_PER_ORDER_WEIGHTS = (30, 25, 20, 15, 10)  # 1..5 lines, 2.5 on average
QUANTITY_WEIGHTS = (60, 20, 10, 6, 4)  # 1..5 units
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL", "SE", "AT", "BE", "PT", "IE", "DK")
FIRST_NAMES = (
    "Anna",
    "Ben",
    "Chloé",
    "David",
    "Elif",
    "Fatima",
    "Gustav",
    "Hannah",
    "Ivan",
    "José",
    "Jürgen",
    "Karin",
    "Lars",
    "Marta",
    "Noah",
    "Olga",
    "Pierre",
    "Renée",
    "Sofia",
    "Tomás",
    "Zoë",
    "Émile",
    "Åsa",
    "Mia",
)
LAST_NAMES = (
    "Müller",
    "García",
    "Rossi",
    "Dubois",
    "Nowak",
    "Jansen",
    "Silva",
    "Öztürk",
    "Andersson",
    "Novák",
    "O'Brien",
    "Fernández",
    "Schmidt",
    "Kowalski",
    "Lefèvre",
    "Murphy",
    "Costa",
    "Núñez",
    "Horváth",
    "Berg",
)
CATEGORIES = {
    "Kitchen": ("Kettle", "Pan", "Knife", "Mug", "Grater"),
    "Garden": ("Hose", "Rake", "Planter", "Shears", "Lantern"),
    "Office": ("Notebook", "Stapler", "Desk Lamp", "Pen Set", "Binder"),
    "Outdoor": ("Tent", "Backpack", "Bottle", "Headlamp", "Sleeping Bag"),
    "Toys": ("Puzzle", "Kite", "Robot", "Yo-yo", "Board Game"),
}
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Large", "Mini", "Pro", "Smart")


@dataclass(frozen=True)
class DemoManifest:
    """Exact facts about one generated dataset."""

    directory: Path
    # Rows written per table (customers: CSV data lines, malformed included),
    # plus "orders.with_known_customer" and "orders.joining_duplicate_customer".
    counts: dict[str, int]
    # Exact rows of each dirty kind; "customers.duplicate_customer_id" counts ids
    # that appear twice, which is also the number of surplus rows.
    dirty: dict[str, int]
    # 1-based physical line numbers in customers.csv; the header is line 1.
    malformed_csv_lines: tuple[int, ...]


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def _customer(rng: random.Random, customer_id: int, email: bool = True) -> list[str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    roll = rng.random()
    # A few names carry a comma or double quotes so readers must honour quoting.
    if roll < 0.03:
        name = f"{last}, {first}"
    elif roll < 0.05:
        name = f'{first} "{first[:3]}" {last}'
    else:
        name = f"{first} {last}"
    address = f"{_ascii(first)}.{_ascii(last)}.{customer_id}@example.com" if email else ""
    signed_up = SIGNUPS_FROM + timedelta(days=rng.randrange(5 * 365))
    return [str(customer_id), address, name, rng.choice(COUNTRIES), signed_up.isoformat()]


def _write_customers(
    path: Path, rng: random.Random, n_valid: int, dirty: dict[str, int]
) -> tuple[int, list[int], tuple[int, ...]]:
    """Write customers.csv; return (data lines, duplicated ids, malformed line numbers)."""
    picked = rng.sample(range(1, n_valid + 1), dirty["customers.null_email"] + dirty["customers.duplicate_customer_id"])
    null_email = set(picked[: dirty["customers.null_email"]])
    duplicated = sorted(picked[dirty["customers.null_email"] :])
    rows: list[tuple[list[str], bool]] = [
        (_customer(rng, cid, email=cid not in null_email), False) for cid in range(1, n_valid + 1)
    ]
    extras = [(_customer(rng, cid), False) for cid in duplicated]
    # Malformed lines get ids used nowhere else, so whether a reader skips or
    # repairs them never changes how orders join to customers.
    for i in range(dirty["customers.malformed_lines"]):
        cid, email, name, country, signed_up = _customer(rng, n_valid + 1 + i)
        if i % 2 == 0:  # the name spilled over into an extra field
            extras.append(([cid, email, *name.split(" ", 1), country, signed_up], True))
        else:  # the country went missing
            extras.append(([cid, email, name, signed_up], True))
    for extra in extras:
        rows.insert(rng.randrange(len(rows) + 1), extra)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["customer_id", "email", "full_name", "country", "signed_up_at"])
        writer.writerows(row for row, _ in rows)
    # No field contains a newline, so data row i sits on physical line i + 2.
    malformed = tuple(i + 2 for i, (_, bad) in enumerate(rows) if bad)
    return len(rows), duplicated, malformed


def _products(rng: random.Random, n: int) -> tuple[list[tuple[int, str, str, str, float]], list[int]]:
    """Return product rows and their unit prices in cents, indexed by product_id."""
    rows = []
    cents = [0]
    for pid in range(1, n + 1):
        category = rng.choice(tuple(CATEGORIES))
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(CATEGORIES[category])}"
        # Log-uniform prices: many cheap items, a few expensive ones.
        cents.append(round(199 * 250 ** rng.random()))
        rows.append((pid, f"SKU-{pid:06d}", name, category, cents[pid] / 100))
    return rows, cents


def _dirty(rows: int, key: str) -> int:
    # At least one of each kind, so even tiny test datasets exercise every check.
    return max(1, round(rows * DIRTY_SHARE[key]))


def generate_demo_data(directory: Path, *, scale: float = 1.0, seed: int = 42) -> DemoManifest:
    """Write shop.db, customers.csv and order_items.jsonl into ``directory``.

    The same ``seed`` and ``scale`` always give byte-identical files.
    """
    if scale < 0.001:
        raise ValueError(f"scale must be at least 0.001, got {scale}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n_customers, n_orders, n_products = (max(1, round(rows * scale)) for rows in BASE_ROWS.values())
    dirty = {key: _dirty(n_customers, key) for key in DIRTY_SHARE if key.startswith("customers.")}
    customer_lines, duplicated, malformed = _write_customers(directory / "customers.csv", rng, n_customers, dirty)

    # Clean orders point at well-formed customer ids, which are 1..n_customers.
    customer_ids: list[int | None] = rng.choices(range(1, n_customers + 1), k=n_orders)
    n_null = dirty["orders.null_customer_id"] = _dirty(n_orders, "orders.null_customer_id")
    n_unknown = dirty["orders.unknown_customer_id"] = _dirty(n_orders, "orders.unknown_customer_id")
    forced = rng.sample(range(n_orders), n_null + n_unknown + len(duplicated))
    for i in forced[:n_null]:
        customer_ids[i] = None
    first_unknown = n_customers + dirty["customers.malformed_lines"] + 1
    for i in forced[n_null : n_null + n_unknown]:
        customer_ids[i] = first_unknown + rng.randrange(n_customers)
    # Each duplicated id gets at least one order so the join fan-out is visible.
    for i, cid in zip(forced[n_null + n_unknown :], duplicated, strict=True):
        customer_ids[i] = cid
    offsets = sorted(rng.randrange(365 * 86_400) for _ in range(n_orders))
    statuses = rng.choices(STATUSES, STATUS_WEIGHTS, k=n_orders)

    products, cents = _products(rng, n_products)
    lines_per_order = rng.choices(range(1, 6), ITEMS_PER_ORDER_WEIGHTS, k=n_orders)
    order_idx = [o for o, k in enumerate(lines_per_order) for _ in range(k)]
    n_items = len(order_idx)
    product_ids = rng.choices(range(1, n_products + 1), k=n_items)
    quantities = rng.choices(range(1, 6), QUANTITY_WEIGHTS, k=n_items)
    totals = [0] * n_orders
    for o, p, q in zip(order_idx, product_ids, quantities, strict=True):
        totals[o] += q * cents[p]  # integer cents, so totals have exactly 2 decimals
    n_negative = dirty["order_items.negative_quantity"] = _dirty(n_items, "order_items.negative_quantity")
    for i in rng.sample(range(n_items), n_negative):
        quantities[i] = -quantities[i]

    db = directory / "shop.db"
    # A stale journal next to a fresh database would be replayed into it.
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(
                "CREATE TABLE products (product_id INTEGER PRIMARY KEY, sku TEXT NOT NULL,"
                " name TEXT NOT NULL, category TEXT NOT NULL, unit_price REAL NOT NULL)"
            )
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", products)
            conn.execute(
                "CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER NULL,"
                " ordered_at TEXT NOT NULL, status TEXT NOT NULL, currency TEXT NOT NULL,"
                " total_amount REAL NOT NULL)"
            )
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?, 'EUR', ?)",
                zip(
                    range(1, n_orders + 1),
                    customer_ids,
                    (str(ORDERS_FROM + timedelta(seconds=s)) for s in offsets),
                    statuses,
                    (t / 100 for t in totals),
                    strict=True,
                ),
            )
    finally:
        conn.close()

    # repr keeps the ".0" of whole prices, so pyarrow reads every unit_price as a double.
    price_json = [repr(c / 100) for c in cents]
    line_nos = [line for k in lines_per_order for line in range(1, k + 1)]
    with (directory / "order_items.jsonl").open("w", encoding="utf-8", newline="\n") as f:
        f.writelines(
            f'{{"order_id":{o + 1},"line_no":{line},"product_id":{p},"quantity":{q},"unit_price":{price_json[p]}}}\n'
            for o, line, p, q in zip(order_idx, line_nos, product_ids, quantities, strict=True)
        )

    duplicated_ids = set(duplicated)
    counts = {
        "customers": customer_lines,
        "orders": n_orders,
        "products": n_products,
        "order_items": n_items,
        "orders.with_known_customer": n_orders - n_null - n_unknown,
        "orders.joining_duplicate_customer": sum(c in duplicated_ids for c in customer_ids),
    }
    return DemoManifest(directory, counts, dirty, malformed)
