"""The GraphQL source against a Relay API served by graphql-core."""

from __future__ import annotations

import pytest
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.exceptions import ConfigurationError

QUERY = """
query Items($first: Int, $after: String) {
  items(first: $first, after: $after) {
    edges { node { id name price address { city } tags %s } }
    pageInfo { endCursor hasNextPage }
  }
}
"""


def test_relay_pages_are_read_in_order(graphql_url: str) -> None:
    source = make_source(
        {
            "type": "graphql",
            "url": graphql_url,
            "query": QUERY % "",
            "variables": {"first": 100},
            "connection": "items",
            "nested": {"shape": "flatten"},
        }
    )
    table, rejected = read_all(source)
    assert table.column("id").to_pylist() == list(range(1, 2501))
    assert table.column_names == ["id", "name", "price", "address__city", "tags"]
    assert table.slice(9, 1).to_pylist() == [
        {"id": 10, "name": "item 10", "price": 12.5, "address__city": "city 3", "tags": ["t1", "t0"]}
    ]
    assert rejected == []


def test_graphql_errors_fail_with_the_servers_message(graphql_url: str) -> None:
    source = make_source(
        {
            "type": "graphql",
            "url": graphql_url,
            "query": QUERY % "broken",
            "variables": {"first": 100},
            "connection": "items",
        }
    )
    with pytest.raises(ConfigurationError) as info:
        read_all(source)
    assert str(info.value) == (
        f"source src: {graphql_url} page 3 after 200: the GraphQL server answered with errors: "
        "cannot compute broken for item 250 at 4:56 (path items.edges.49.node.broken) "
        "(fix the query, or set on_errors: quarantine to skip failing pages)"
    )


def test_graphql_errors_quarantine_their_page_and_the_rest_loads(graphql_url: str) -> None:
    source = make_source(
        {
            "type": "graphql",
            "url": graphql_url,
            "query": QUERY % "broken",
            "variables": {"first": 100},
            "connection": "items",
            "on_errors": "quarantine",
        }
    )
    table, rejected = read_all(source)
    bad_pages = {(i - 1) // 100 for i in range(250, 2501, 250)}
    assert table.column("id").to_pylist() == [i for i in range(1, 2501) if (i - 1) // 100 not in bad_pages]
    assert len(rejected) == 100 * len(bad_pages) == 1000
    row, reason, position = rejected[0]
    assert row["id"] == 201 and row["broken"] == "fine"
    assert (
        reason
        == "GraphQL errors on this page: cannot compute broken for item 250 at 4:56 (path items.edges.49.node.broken)"
    )
    assert position == f"{graphql_url} page 3 after 200"


def test_a_query_without_page_info_is_a_configuration_error(graphql_url: str) -> None:
    query = "query($after: String) { items(first: 10, after: $after) { edges { node { id } } } }"
    source = make_source({"type": "graphql", "url": graphql_url, "query": query, "connection": "items"})
    with pytest.raises(ConfigurationError, match=r"the response has no items.pageInfo \(select pageInfo"):
        read_all(source)
