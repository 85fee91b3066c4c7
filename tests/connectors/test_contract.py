"""The contract every source and destination keeps, run over each of them (conftest.KINDS).

Data goes in through a connector's destination and comes back through its
source. Adding a connector to KINDS gives it every test here.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.connectors.conftest import Harness

UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
TYPES = pa.table(
    {
        "i16": pa.array([-32768, 7, None], pa.int16()),
        "i32": pa.array([2_147_483_647, -1, None], pa.int32()),
        "i64": pa.array([9_223_372_036_854_775_807, 0, None], pa.int64()),
        "f64": pa.array([1.5e300, -0.25, None], pa.float64()),
        "dec": pa.array([Decimal("123456789.123"), Decimal("-0.001"), None], pa.decimal128(12, 3)),
        "flag": pa.array([True, False, None]),
        "txt": pa.array(["plain", 'quote " comma , backslash \\ newline \n tab \t NULL', None]),
        "blob": pa.array([b"\x00\x01\xff", b"", None]),
        "day": pa.array([dt.date(1999, 12, 31), dt.date(2038, 1, 20), None]),
        "clock": pa.array([dt.time(23, 59, 59, 999999), dt.time(0, 0), None], pa.time64("us")),
        "ts": pa.array(
            [dt.datetime(2024, 2, 29, 12, 30, 45, 123456), dt.datetime(1970, 1, 1), None], pa.timestamp("us")
        ),
        "tstz": pa.array(
            [dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.UTC), dt.datetime(2000, 1, 1, tzinfo=dt.UTC), None],
            pa.timestamp("us", tz="UTC"),
        ),
        "doc": pa.ExtensionArray.from_storage(pa.json_(), pa.array(['{"a": [1, 2], "b": "é"}', "[]", None])),
        "uid": pa.ExtensionArray.from_storage(
            pa.uuid(), pa.array([UID.bytes, uuid.UUID(int=0).bytes, None], pa.binary(16))
        ),
    }
)

# How each connector gives the types back, where it differs from what went in (docs/databases.md).
READ_BACK: dict[str, dict[str, pa.DataType]] = {
    "duckdb": {"doc": pa.string(), "uid": pa.string()},
    "sqlite": {"i16": pa.int64(), "i32": pa.int64(), "uid": pa.string()},
    "file": {},
    "postgres": {},
    "mysql": {
        "flag": pa.int8(),
        "tstz": pa.timestamp("us"),
        "blob": pa.large_binary(),
        "doc": pa.string(),
        "uid": pa.string(),
    },
    "clickhouse": {"doc": pa.string()},
}


def canon(value: Any) -> Any:
    """One comparable form of a value, whichever connector it came back from."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def rows(table: pa.Table, order: str) -> list[dict[str, Any]]:
    table = table.sort_by(order)
    out = []
    for row in table.to_pylist():
        if isinstance(row.get("doc"), str):
            row["doc"] = json.loads(row["doc"])
        out.append({k: canon(v) for k, v in row.items()})
    return out


def test_every_mapped_type_round_trips(harness: Harness) -> None:
    assert harness.load("r1", TYPES) == 3
    back = harness.read()
    expected_types = {f.name: READ_BACK[harness.kind].get(f.name, f.type) for f in TYPES.schema}
    assert {f.name: f.type for f in back.schema} == expected_types
    assert rows(back, "i32") == rows(TYPES, "i32")


def test_an_empty_table_reads_as_no_rows(harness: Harness) -> None:
    empty = pa.table({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())})
    dest = harness.destination()
    dest.begin("r1", "t0")
    dest.write_batch("r1", "t0", pa.RecordBatch.from_pylist([], schema=empty.schema))
    dest.finish("r1", "t0")
    assert dest.commit("r1", ["t0"]).rows == 0
    dest.close()
    assert harness.read().num_rows == 0


def test_nulls_everywhere(harness: Harness) -> None:
    nulls = pa.table({f.name: pa.nulls(2, f.type) for f in TYPES.schema})
    assert harness.load("r1", nulls) == 2
    back = harness.read()
    assert back.num_rows == 2
    assert all(back.column(name).null_count == 2 for name in back.column_names)


def test_unicode_and_very_long_text(harness: Harness) -> None:
    long = "ü" * 300_000 + "end"
    data = pa.table({"id": [1, 2, 3], "txt": ["héllo wörld ✓ 日本語 🎉", long, "\u2028 line separator, ﷽, e\u0301"]})
    harness.load("r1", data)
    back = harness.read().sort_by("id")
    assert back.column("txt").to_pylist() == data.column("txt").to_pylist()


def test_a_million_rows(harness: Harness) -> None:
    n = 1_000_000
    ids = pa.array(range(n), pa.int64())
    data = pa.table({"id": ids, "label": pc.binary_join_element_wise("row-", pc.cast(ids, pa.string()), "")})
    assert harness.load("r1", data.slice(0, n // 2), data.slice(n // 2)) == n
    back = harness.read()
    assert back.num_rows == n
    assert pc.sum(back.column("id")).as_py() == n * (n - 1) // 2
    assert pc.count_distinct(back.column("label")).as_py() == n


def test_abort_before_commit_leaves_the_target_unchanged(harness: Harness) -> None:
    first = pa.table({"id": [1, 2], "v": ["a", "b"]})
    harness.load("r1", first)
    dest = harness.destination()
    dest.begin("r2", "t0")
    dest.write_batch("r2", "t0", pa.record_batch({"id": [3], "v": ["c"]}))
    dest.abort("r2")
    dest.close()
    assert harness.read().sort_by("id").to_pylist() == first.to_pylist()


def test_merging_the_same_rows_twice_gives_the_same_target(harness: Harness) -> None:
    if "merge" not in harness.destination().capabilities.write_modes:
        pytest.skip(f"{harness.kind} destinations do not merge (capabilities.write_modes)")
    spec = {"write": "merge", "primary_key": ["id"]}
    harness.load("r1", pa.table({"id": [1, 2], "v": ["a", "b"]}), **spec)
    update = pa.table({"id": [2, 3], "v": ["B", "c"]})
    harness.load("r2", update, **spec)
    once = harness.read().sort_by("id").to_pylist()
    harness.load("r3", update, **spec)
    assert (
        harness.read().sort_by("id").to_pylist()
        == once
        == [{"id": 1, "v": "a"}, {"id": 2, "v": "B"}, {"id": 3, "v": "c"}]
    )


def test_committing_a_run_again_changes_nothing(harness: Harness) -> None:
    harness.load("r1", pa.table({"id": [1], "v": ["a"]}))
    dest = harness.destination()
    again = dest.commit("r1", ["t0"])
    dest.close()
    assert again.already_committed and again.rows == 1
    assert harness.read().to_pylist() == [{"id": 1, "v": "a"}]


def test_merge_with_hard_deletes(harness: Harness) -> None:
    if "merge" not in harness.destination().capabilities.write_modes:
        pytest.skip(f"{harness.kind} destinations do not merge (capabilities.write_modes)")
    spec = {"write": "merge", "primary_key": ["id"], "hard_delete": "deleted"}
    harness.load("r1", pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"], "deleted": [False, False, False]}), **spec)
    harness.load(
        "r2",
        pa.table({"id": [2, 3, 4, 5], "v": ["x", "C", "d", "never"], "deleted": [True, None, False, True]}),
        **spec,
    )
    assert harness.read().sort_by("id").to_pylist() == [{"id": 1, "v": "a"}, {"id": 3, "v": "C"}, {"id": 4, "v": "d"}]


def test_state_is_committed_with_the_data_and_only_then(harness: Harness) -> None:
    dest = harness.destination()
    assert dest.read_state("p/src") is None
    dest.begin("r1", "t0")
    dest.write_batch("r1", "t0", pa.record_batch({"id": [1]}))
    dest.finish("r1", "t0")
    dest.commit("r1", ["t0"], {"p/src": {"cursor": "id", "value": 1, "keys": []}})
    dest.begin("r2", "t0")
    dest.write_batch("r2", "t0", pa.record_batch({"id": [2]}))
    dest.abort("r2")
    dest.close()
    again = harness.destination()
    assert again.read_state("p/src") == {"cursor": "id", "value": 1, "keys": []}
    again.close()
