"""A ``records:`` path that is not in a JSON file is a failed read, not an empty source (files/json_reader.py).

ijson yields no items under a path that is not there, so a wrong ``records:``
(or a file whose top level is an object, without ``records:``) used to read as
zero rows, and ``write: replace`` then emptied the target. As for REST and
GraphQL (tests/connectors/http/test_record_paths.py): the path asked for, the
keys that do exist where the walk stopped, and the file, in one line with the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import load_spec

FIX = "(set `records:` to the dotted path of the record array in the document)"
DOC = {"data": {"items": [{"id": 1}, {"id": 2}], "total": 2}}


def test_a_wrong_records_path_fails_the_run_and_the_replaced_table_keeps_its_rows(tmp_path: Path) -> None:
    (tmp_path / "items.json").write_text(json.dumps(DOC))
    with duckdb.connect(str(tmp_path / "out.duckdb")) as con:
        con.execute("CREATE TABLE items AS SELECT range::BIGINT AS id FROM range(20000)")
    source = {"type": "file", "path": "items.json", "records": "data.itemz"}
    destination = {"type": "duckdb", "path": "out.duckdb", "table": "items", "write": "replace"}
    (tmp_path / "p.yaml").write_text(
        json.dumps({"name": "p", "sources": {"items": source}, "destination": destination})
    )
    result = run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())
    assert (result.status, result.error) == (
        "failed",
        f"source items: {tmp_path / 'items.json'}: records: data.itemz is not in the document:"
        f" data has no key 'itemz' (its keys: items, total) {FIX}",
    )
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM items").fetchone() == (20_000,)
    assert result.commits == []


@pytest.mark.parametrize(
    ("document", "records", "why"),
    [
        (DOC, "dat.items", "dat.items is not in the document: the top level has no key 'dat' (its keys: data)"),
        (DOC, "data.total.x", "data.total.x is not in the document: data.total is a number, which has no key 'x'"),
        (DOC, "data.items.id", "data.items.id is not in the document: data.items is an array, which has no key 'id'"),
        (
            {"data": {"items": {"id": 1}}},
            "data.items",
            "data.items holds an object (its keys: id), not an array of records",
        ),
        (DOC, None, "the top level holds an object (its keys: data), not an array of records"),
        ({"data": None}, "data", "data holds null, not an array of records"),
    ],
)
def test_a_path_that_holds_no_array_names_what_is_there(
    tmp_path: Path, document: object, records: str | None, why: str
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    spec = {"type": "file", "path": str(path), **({"records": records} if records else {})}
    with pytest.raises(ConfigurationError) as info:
        read_all(make_source(spec))
    assert str(info.value) == f"source src: {path}: records: {why} {FIX}"


@pytest.mark.parametrize(("document", "records"), [({"data": {"items": []}}, "data.items"), ([], None)])
def test_an_empty_array_at_the_path_is_an_empty_source(tmp_path: Path, document: object, records: str | None) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    table, rejected = read_all(
        make_source({"type": "file", "path": str(path), **({"records": records} if records else {})})
    )
    assert (table.num_rows, rejected) == (0, [])
