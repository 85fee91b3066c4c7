"""Nested JSON to Arrow: widening across batches, conflicts to quarantine, flatten and unnest; child tables from one read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.connectors.http_servers import FaultAPI

from agent_orchestrated_etl.connectors.nested import NestedOptions, RecordsToArrow


def test_schema_widens_across_batches_and_keeps_every_field() -> None:
    convert = RecordsToArrow()
    first, _ = convert.convert([{"id": 1, "price": 2, "meta": {"a": 1}}, {"id": 2, "price": None}])
    second, rejected = convert.convert([{"id": 3, "price": 2.5, "meta": {"b": "x"}, "late": True}])
    assert first.schema == pa.schema(
        [("id", pa.int64()), ("price", pa.int64()), ("meta", pa.struct([("a", pa.int64())]))]
    )
    assert second.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("price", pa.float64()),
            ("meta", pa.struct([("a", pa.int64()), ("b", pa.string())])),
            ("late", pa.bool_()),
        ]
    )
    assert second.to_pylist() == [{"id": 3, "price": 2.5, "meta": {"a": None, "b": "x"}, "late": True}]
    assert rejected == []
    third, _ = convert.convert([{"id": 4}])
    assert third.schema == second.schema and third.to_pylist() == [{"id": 4, "price": None, "meta": None, "late": None}]


def test_unsafe_conflicts_go_to_quarantine_with_the_field_and_types() -> None:
    convert = RecordsToArrow()
    convert.convert([{"id": 1, "qty": 5}])
    batch, rejected = convert.convert(
        [{"id": 2, "qty": "five"}, {"id": 3, "qty": 7}, "not an object", {"id": 4, "qty": {"n": 1}}]
    )
    assert batch.to_pylist() == [{"id": 3, "qty": 7}]
    assert rejected == [
        ({"value": "not an object"}, "expected a JSON object, got string", 2),
        ({"id": 2, "qty": "five"}, "field qty: string 'five' does not fit type int64", 0),
        ({"id": 4, "qty": {"n": 1}}, "field qty: object {'n': 1} does not fit type int64", 3),
    ]


def test_a_conflict_inside_the_first_batch_keeps_the_first_type() -> None:
    batch, rejected = RecordsToArrow().convert([{"v": 1}, {"v": 2.5}, {"v": "x"}, {"v": None}])
    assert batch.schema.field("v").type == pa.float64()
    assert batch.column("v").to_pylist() == [1.0, 2.5, None]
    assert [reason for _, reason, _ in rejected] == ["field v: string 'x' does not fit type double"]


def test_flatten_names_nested_fields_with_the_separator() -> None:
    batch, _ = RecordsToArrow(NestedOptions(shape="flatten")).convert(
        [{"id": 1, "address": {"city": "Oslo", "geo": {"lat": 59.9}}, "tags": ["a"]}]
    )
    assert batch.to_pylist() == [{"id": 1, "address__city": "Oslo", "address__geo__lat": 59.9, "tags": ["a"]}]


def test_unnest_makes_child_rows_carrying_the_parent_key() -> None:
    options = NestedOptions(shape="unnest", unnest="order.lines", parent_key=["id"])
    batch, rejected = RecordsToArrow(options).convert(
        [
            {"id": 7, "order": {"lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}},
            {"id": 8, "order": {"lines": []}},
            {"id": 9, "order": {"lines": [{"sku": "c", "qty": 3}]}},
        ]
    )
    assert batch.to_pylist() == [
        {"_parent_id": 7, "_index": 0, "sku": "a", "qty": 1},
        {"_parent_id": 7, "_index": 1, "sku": "b", "qty": 2},
        {"_parent_id": 9, "_index": 0, "sku": "c", "qty": 3},
    ]
    assert rejected == []


def test_a_parent_and_its_child_table_come_from_one_read_of_the_api(
    fault_api: tuple[str, FaultAPI], tmp_path: Path
) -> None:
    url, api = fault_api
    (tmp_path / "p.yaml").write_text(f"""
name: items_and_tags
sources:
  items:
    type: rest
    url: {url}/offset
    records: results
    pagination: {{type: offset, size_param: limit, total_path: count}}
transforms:
  - name: item_tags
    input: items
    steps:
      - unnest: tags
        parent_key: [id]
destinations:
  - {{type: file, path: items, format: parquet, input: items}}
  - {{type: file, path: item_tags, format: parquet, input: item_tags}}
""")
    env = {**os.environ, "AGENT_ETL_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", "run", "p.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    parents = pq.read_table(
        [
            str(tmp_path / "items" / name)
            for name in json.loads((tmp_path / "items" / "_manifest.json").read_text())["files"]
        ]
    )
    children = pq.read_table(
        [
            str(tmp_path / "item_tags" / name)
            for name in json.loads((tmp_path / "item_tags" / "_manifest.json").read_text())["files"]
        ]
    )
    assert parents.num_rows == 2000 and sorted(parents.column("id").to_pylist()) == list(range(1, 2001))
    assert children.num_rows == 4000  # two tags per item
    assert children.column_names == ["_parent_id", "_index", "value"]
    assert sorted(
        children.select(["_parent_id", "_index", "value"]).to_pylist(), key=lambda r: (r["_parent_id"], r["_index"])
    )[:3] == [
        {"_parent_id": 1, "_index": 0, "value": "t1"},
        {"_parent_id": 1, "_index": 1, "value": "t1"},
        {"_parent_id": 2, "_index": 0, "value": "t2"},
    ]
    pages = [path for path, status, _ in api.log if status == 200]
    assert len(pages) == len(set(pages)) == 20  # 2,000 items at 100 a page, each page asked for once


def test_the_plan_records_why_the_api_is_read_once(tmp_path: Path) -> None:
    from agent_orchestrated_etl.connectors.registry import source_class
    from agent_orchestrated_etl.planning.plan import make_plan
    from agent_orchestrated_etl.spec import load_spec

    (tmp_path / "p.yaml").write_text("""
name: orders
sources:
  orders: {type: rest, url: "http://127.0.0.1:9/orders"}
  local: {type: file, path: orders.jsonl}
transforms:
  - {name: lines, input: orders, steps: [{unnest: lines, parent_key: [id]}]}
  - {name: local_lines, input: local, steps: [{unnest: lines, parent_key: [id]}]}
destinations:
  - {type: file, path: orders, input: orders}
  - {type: file, path: lines, input: lines}
  - {type: file, path: local, input: local}
  - {type: file, path: local_lines, input: local_lines}
""")
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "lines": [{"sku": "a"}]}\n')
    spec = load_spec(str(tmp_path / "p.yaml")).pipeline
    plan = make_plan(spec, {name: source_class(s.type)(name, s, batch_rows=1000) for name, s in spec.sources.items()})
    kinds = {t.id: (t.kind, t.depends_on) for t in plan.tasks}
    assert kinds["orders[0]>workspace"] == ("stage", ())
    assert kinds["orders>file0"] == kinds["lines>file1"] == ("transform_load", ("orders[0]>workspace",))
    assert (
        kinds["local[0]>file2"][0] == kinds["local_lines[0]>file3"][0] == "extract_load"
    )  # a local file is cheap to read again
    decision = next(d for d in plan.decisions if d.subject == "source orders")
    assert decision.choice == "read once into the run workspace for destinations file0, file1"
    assert "repeats every request" in decision.reason


def deep(levels: int) -> dict:
    """An object nesting ``levels`` objects: {"k": {"k": ... {"leaf": 1}}}."""
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def below(value: dict, levels: int) -> object:
    for _ in range(levels):
        value = value["k"]
    return value


def test_nesting_past_max_depth_is_kept_as_json_text() -> None:
    # the REST and GraphQL sources convert their pages through RecordsToArrow
    convert = RecordsToArrow()
    batch, rejected = convert.convert([{"id": 1, "d": deep(64)}, {"id": 2, "d": deep(3)}, {"id": 3, "d": deep(16)}])
    assert rejected == []
    rows = batch.to_pylist()
    # 16 levels of objects below the column stay structs; the 17th is its JSON text
    assert json.loads(below(rows[0]["d"], 15)["k"]) == deep(48)
    assert below(rows[1]["d"], 2) == {"k": None, "leaf": 1}
    assert below(rows[2]["d"], 15) == {"k": None, "leaf": 1}
    # arrays count as levels too, and the option moves the cut
    batch, _ = RecordsToArrow(NestedOptions(max_depth=2)).convert([{"id": 1, "a": [[[1, 2]], [[3]]]}])
    assert batch.to_pylist() == [{"id": 1, "a": [["[1, 2]"], ["[3]"]]}]


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_json_file_nested_64_levels_deep_loads(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from agent_orchestrated_etl.config import Settings
    from agent_orchestrated_etl.orchestrator import run_pipeline
    from agent_orchestrated_etl.spec import load_spec

    records = [{"id": 1, "d": deep(64)}, {"id": 2, "d": deep(3)}, {"id": 3, "d": deep(64)}]
    (tmp_path / "deep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "deep.json").write_text(json.dumps(records))
    transforms = []
    if kind == "duckdb":
        destination = {"type": "duckdb", "path": str(tmp_path / "out.duckdb"), "table": "deep"}
    else:  # a struct has no PostgreSQL column: the documented way is JSON in a transform, which runs in DuckDB
        url, schema = request.getfixturevalue("pg_schema")
        destination = {"type": "postgres", "url": url, "table": f"{schema}.deep"}
        transforms = [{"name": "as_json", "input": "deep", "steps": [{"derive": {"d": "to_json(d)"}}]}]
    for name in ("deep.jsonl", "deep.json"):
        spec = {
            "name": "deep",
            "sources": {"deep": {"type": "file", "path": name}},
            "transforms": transforms,
            "destination": {**destination, "write": "replace"},
        }
        (tmp_path / "p.yaml").write_text(json.dumps(spec))
        result = run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())
        assert result.status == "succeeded", result.error
        assert result.commits == [{"destination": destination["table"], "rows": 3, "quarantined_rows": 0}]
        if kind == "duckdb":
            import duckdb

            with duckdb.connect(destination["path"], read_only=True) as con:
                rows = [(i, d) for i, d in con.execute("SELECT id, d FROM deep ORDER BY id").fetchall()]
        else:
            from tests.conftest import run_sql

            rows = [
                (i, json.loads(d)) for i, d in run_sql(url, f"SELECT id, d FROM {schema}.deep ORDER BY id")
            ]  # to_json's text
        assert [i for i, _ in rows] == [1, 2, 3]
        assert json.loads(below(rows[0][1], 15)["k"]) == json.loads(below(rows[2][1], 15)["k"]) == deep(48)
        assert below(rows[1][1], 2)["leaf"] == 1
    if kind == "postgres":  # without the transform: one short line, not the kilobytes of a deep type's name
        spec = {
            "name": "deep",
            "sources": {"deep": {"type": "file", "path": "deep.jsonl"}},
            "destination": {**destination, "table": f"{schema}.deep_struct"},
        }
        (tmp_path / "p.yaml").write_text(json.dumps(spec))
        result = run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())
        assert result.status == "failed"
        assert (
            "column d: nested Arrow type struct<k: struct<k: " in result.error
            and "... has no postgresql column type (turn it into JSON text in a transform: to_json(d) AS d)"
            in result.error
        )
        assert len(result.error) < 300, result.error
