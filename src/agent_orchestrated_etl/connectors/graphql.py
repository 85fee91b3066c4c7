"""The GraphQL source: one query with variables, paged through a Relay connection.

The query takes the cursor as a variable (``$after`` by default) and selects
``pageInfo { endCursor hasNextPage }`` on the connection; records are the
connection's ``edges[].node`` (or ``nodes``). A response with ``errors``
stops the read with the server's messages, or, with ``on_errors:
quarantine``, sends that page's records to quarantine and goes on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from agent_orchestrated_etl.connectors.base import ConnectorSpec, Partition, Position, Source
from agent_orchestrated_etl.connectors.nested import NestedOptions
from agent_orchestrated_etl.connectors.rest.auth import AuthSpec
from agent_orchestrated_etl.connectors.rest.client import ClientSettings, HttpClient, HttpRetry
from agent_orchestrated_etl.connectors.rest.paginators import dig
from agent_orchestrated_etl.connectors.rest.source import PageBatcher, _run_async_iter, retry_notice
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError


class GraphQLSourceSpec(ConnectorSpec):
    type: Literal["graphql"]
    url: str = Field(description="The GraphQL endpoint.")
    query: str = Field(description="The query; it takes the cursor variable and selects pageInfo on the connection.")
    variables: dict[str, Any] = Field(default_factory=dict)
    connection: str = Field(description="Dotted path under `data` of the Relay connection (orders, shop.orders).")
    cursor_variable: str = Field("after", description="The variable that receives pageInfo.endCursor.")
    on_errors: Literal["fail", "quarantine"] = Field("fail", description="What a response with `errors` does.")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec | None = None
    rate_limit: str | None = None
    timeout_seconds: float = Field(30, gt=0)
    retry: HttpRetry = Field(default_factory=HttpRetry)
    nested: NestedOptions = Field(default_factory=NestedOptions)
    records_per_batch: int = Field(10_000, ge=1)


class GraphQLSource(Source):
    spec_model = GraphQLSourceSpec

    def __init__(self, name: str, spec: GraphQLSourceSpec, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        self._rejected: list[tuple[dict[str, Any], str, Position]] = []

    def describe(self) -> str:
        return f"graphql {self.spec.url} {self.spec.connection}"

    def reread_cost(self) -> str | None:
        return f"each read repeats every query to {self.spec.url}, and the API may answer differently the second time"

    def quarantined(self) -> Iterator[tuple[dict[str, Any], str, Position]]:
        rejected, self._rejected = self._rejected, []
        return iter(rejected)

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        """Yield the nodes of every page; raises ConfigurationError for GraphQL errors (on_errors: fail)."""
        batcher = PageBatcher(self.name, self.spec.nested, min(self.spec.records_per_batch, self.batch_rows))
        for records, origin in _run_async_iter(self._pages()):
            yield from batcher.add(records, origin)
        yield from batcher.flush()
        self._rejected += batcher.rejected

    async def _pages(self) -> AsyncIterator[tuple[list[Any], str]]:
        spec = self.spec
        client = HttpClient(
            ClientSettings(headers=spec.headers, auth=spec.auth.build() if spec.auth else None, timeout_seconds=spec.timeout_seconds, rate_limit=spec.rate_limit, max_connections=1, retry=spec.retry, on_retry=lambda attempt, error, wait: retry_notice(self, attempt, error, wait)),
            where=f"source {self.name}",
        )
        cursor: str | None = None
        seen: set[str] = set()
        page = 0
        try:
            while True:
                page += 1
                origin = f"{spec.url} page {page}" + (f" after {cursor}" if cursor else "")
                variables = {**spec.variables, spec.cursor_variable: cursor}
                response = await client.request("POST", spec.url, json={"query": spec.query, "variables": variables})
                body = response.json()
                connection = dig(body.get("data"), spec.connection) if isinstance(body.get("data"), dict) else None
                records = _nodes(connection)
                if body.get("errors"):
                    self._on_errors(body["errors"], records, origin)
                    records = []
                yield records, origin
                info = connection.get("pageInfo") if isinstance(connection, dict) else None
                if not info or not info.get("hasNextPage"):
                    if info is None and not body.get("errors"):
                        raise ConfigurationError(f"the response has no {spec.connection}.pageInfo", where=f"source {self.name}", hint="select pageInfo { endCursor hasNextPage } on the connection, and check `connection:`")
                    return
                cursor = info.get("endCursor")
                if not cursor or cursor in seen:
                    raise DataError(f"hasNextPage is true but the cursor {cursor!r} is missing or repeated", where=f"source {self.name}: {origin}", hint="the server's pagination is broken")
                seen.add(cursor)
        finally:
            await client.aclose()

    def _on_errors(self, errors: list[Any], records: list[Any], origin: str) -> None:
        messages = "; ".join(_error_text(e) for e in errors)
        if self.spec.on_errors == "fail":
            raise ConfigurationError(f"the GraphQL server answered with errors: {messages}", where=f"source {self.name}: {origin}", hint="fix the query, or set on_errors: quarantine to skip failing pages")
        reason = f"GraphQL errors on this page: {messages}"
        position = Position(origin=origin)
        rows = records or [{"errors": json.dumps(errors)}]
        self._rejected += [(row if isinstance(row, dict) else {"value": row}, reason, position) for row in rows]


def _nodes(connection: Any) -> list[Any]:
    if not isinstance(connection, dict):
        return []
    if isinstance(connection.get("nodes"), list):
        return connection["nodes"]
    return [edge.get("node") for edge in connection.get("edges") or [] if isinstance(edge, dict)]


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    where = "".join(f" at {loc.get('line')}:{loc.get('column')}" for loc in error.get("locations") or [])
    path = f" (path {'.'.join(map(str, error['path']))})" if error.get("path") else ""
    return f"{error.get('message', error)}{where}{path}"
