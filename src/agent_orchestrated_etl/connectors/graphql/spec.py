"""The settings of a GraphQL source: one query with variables, paged through a Relay connection."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agent_orchestrated_etl.connectors.http.source import HttpSourceSpec


class GraphQLSourceSpec(HttpSourceSpec):
    type: Literal["graphql"]
    url: str = Field(description="The GraphQL endpoint.")
    query: str = Field(description="The query; it takes the cursor variable and selects pageInfo on the connection.")
    variables: dict[str, Any] = Field(default_factory=dict)
    connection: str = Field(description="Dotted path under `data` of the Relay connection (orders, shop.orders).")
    cursor_variable: str = Field("after", description="The variable that receives pageInfo.endCursor.")
    on_errors: Literal["fail", "quarantine"] = Field("fail", description="What a response with `errors` does.")
