"""A records path that is not in a response is a failed read, not an empty source (connectors/http/records.py).

A wrong ``records:`` (REST) or ``connection:`` (GraphQL) used to read as zero
rows, and ``write: replace`` then emptied the target. Against the tests' own
servers (http_servers.py): the path asked for, the keys that do exist where
the walk stopped, the URL and the page number, in one line with the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from tests.connectors.http_servers import FaultAPI, logged
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import load_spec

PAGES = {"type": "page", "size_param": "per_page", "total_path": "meta.total", "total_header": None}
FIX = "(set `records:` to the dotted path of the record list in the response)"


def full_target(tmp_path: Path) -> Path:
    path = tmp_path / "out.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE items AS SELECT range::BIGINT AS id FROM range(20000)")
    return path


def count(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM items").fetchone()[0]


def replace_into_full_target(tmp_path: Path, source: dict):
    destination = {"type": "duckdb", "path": "out.duckdb", "table": "items", "write": "replace"}
    spec = {"name": "p", "sources": {"items": source}, "destination": destination}
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    return run_pipeline(load_spec(tmp_path / "p.yaml"), Settings())


def test_a_wrong_records_path_fails_the_run_and_the_replaced_table_keeps_its_rows(
    fault_api: tuple[str, FaultAPI], tmp_path: Path
) -> None:
    url, _ = fault_api
    target = full_target(tmp_path)
    source = {"type": "rest", "url": f"{url}/pages", "records": "data.itemz", "pagination": PAGES}
    result = replace_into_full_target(tmp_path, source)
    assert (result.status, result.error) == (
        "failed",
        (
            f"source items: GET {url}/pages?page=1&per_page=100: records: data.itemz is not in the response of page 1:"
            f" data has no key 'itemz' (its keys: items) {FIX}"
        ),
    )
    assert count(target) == 20_000
    assert result.commits == []


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_path_missing_from_a_later_page_fails_naming_that_page(
    fault_api: tuple[str, FaultAPI], concurrency: int
) -> None:
    url, api = fault_api
    api.faults["page=3"] = ["200"]  # a 200 whose body is an error object: {"error": "injected"}
    spec = {"type": "rest", "url": f"{url}/pages", "records": "data.items", "pagination": PAGES}
    source = make_source({**spec, "concurrency": concurrency})
    with pytest.raises(ConfigurationError) as info:
        read_all(source)
    assert str(info.value) == (
        f"source src: GET {url}/pages?page=3&per_page=100: records: data.items is not in the response of page 3:"
        f" the top level has no key 'data' (its keys: error) {FIX}"
    )


def test_a_path_that_holds_no_records_is_an_error(fault_api: tuple[str, FaultAPI]) -> None:
    url, _ = fault_api
    with pytest.raises(ConfigurationError) as info:
        read_all(make_source({"type": "rest", "url": f"{url}/pages", "records": "meta.total", "pagination": PAGES}))
    assert str(info.value) == (
        f"source src: GET {url}/pages?page=1&per_page=100: records: meta.total holds a number ('2000')"
        f" in the response of page 1, not a list of records or an object {FIX}"
    )
    with pytest.raises(ConfigurationError) as info:
        read_all(make_source({"type": "rest", "url": f"{url}/pages", "records": "data.items.0.name.x"}))
    assert str(info.value) == (
        f"source src: GET {url}/pages: records: data.items.0.name.x is not in the response of page 1:"
        f" data.items.0.name is a string ('item 1'), which has no key 'x' {FIX}"
    )


def test_an_empty_list_at_the_path_is_an_empty_source(fault_api: tuple[str, FaultAPI]) -> None:
    url, api = fault_api
    pagination = {"type": "offset", "total_path": "count"}
    spec = {"type": "rest", "url": f"{url}/offset", "params": {"updated_gte": "2099-01-01"}, "records": "results"}
    source = make_source({**spec, "pagination": pagination})
    table, rejected = read_all(source)
    assert (table.num_rows, rejected) == (0, [])
    assert logged(api, 1) == [200]


def test_the_url_in_the_message_shows_no_credential(fault_api: tuple[str, FaultAPI]) -> None:
    url, _ = fault_api
    auth = {"type": "api_key", "name": "api_key", "value": "k2-very-secret", "in": "query"}
    with pytest.raises(ConfigurationError) as info:
        read_all(make_source({"type": "rest", "url": f"{url}/pages", "records": "data.itemz", "auth": auth}))
    assert "k2-very-secret" not in str(info.value)
    assert str(info.value).startswith(f"source src: GET {url}/pages?api_key=***: records: data.itemz is not in the")


QUERY = "query($after: String) { items(first: 1000, after: $after) { %s pageInfo { endCursor hasNextPage } } }"


def test_a_graphql_connection_not_in_the_response_names_the_keys_there_are(graphql_url: str) -> None:
    query = QUERY % "edges { node { id } }"
    source = make_source({"type": "graphql", "url": graphql_url, "query": query, "connection": "items.orders"})
    with pytest.raises(ConfigurationError) as info:
        read_all(source)
    assert str(info.value) == (
        f"source src: POST {graphql_url}: connection: data.items.orders is not in the response of page 1:"
        " data.items has no key 'orders' (its keys: edges, pageInfo)"
        " (set `connection:` to the dotted path under `data` of the Relay connection the query selects)"
    )


def test_a_graphql_connection_without_edges_or_nodes_fails_and_the_replaced_table_keeps_its_rows(
    graphql_url: str, tmp_path: Path
) -> None:
    target = full_target(tmp_path)
    # the query selects only pageInfo on the connection
    source = {"type": "graphql", "url": graphql_url, "query": QUERY % "", "connection": "items"}
    result = replace_into_full_target(tmp_path, source)
    assert (result.status, result.error) == (
        "failed",
        (
            f"source items: POST {graphql_url}: connection: data.items has no list of edges or nodes in the response"
            " of page 1 (its keys: pageInfo) (select edges { node { ... } } or nodes { ... } on the connection,"
            " or point `connection:` at one)"
        ),
    )
    assert count(target) == 20_000
    assert result.commits == []


def test_validate_reports_a_wrong_records_path_before_any_run(fault_api: tuple[str, FaultAPI], tmp_path: Path) -> None:
    from tests.test_run_failures import agent_etl

    url, _ = fault_api
    (tmp_path / "p.yaml").write_text(
        "name: p\nsources:\n  items:\n    type: rest\n"
        f"    url: {url}/pages\n    records: data.itemz\n"
        "destination: {type: duckdb, path: out.duckdb, table: items}\n"
    )
    result = agent_etl("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if not line.startswith("note:")] == [
        f"p.yaml:5: sources.items.url: records: data.itemz is not in the response of page 1:"
        f" data has no key 'itemz' (its keys: items) {FIX}",
        "1 problem(s) found",
    ]
    assert not (tmp_path / "out.duckdb").exists()
