"""The GraphQL source: one query with variables, paged through a Relay connection.

The query takes the cursor as a variable (``$after`` by default) and selects
``pageInfo { endCursor hasNextPage }`` on the connection; records are the
connection's ``edges[].node`` (or ``nodes``). A connection that is not in a
response, or that has neither, fails the read (it is not an empty source).
A response with ``errors`` stops the read with the server's messages, or,
with ``on_errors: quarantine``, sends that page's records to quarantine and
goes on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agent_orchestrated_etl.connectors.base import Partition, Position
from agent_orchestrated_etl.connectors.graphql.spec import GraphQLSourceSpec
from agent_orchestrated_etl.connectors.http.records import dig, kind, shown_url, value_at
from agent_orchestrated_etl.connectors.http.source import HttpSource
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError

_FIX = "set `connection:` to the dotted path under `data` of the Relay connection the query selects"


class GraphQLSource(HttpSource[GraphQLSourceSpec]):
    spec_model = GraphQLSourceSpec
    call = "query"

    def describe(self) -> str:
        return f"graphql {self.spec.url} {self.spec.connection}"

    async def pages(self, partition: Partition) -> AsyncIterator[tuple[list[Any], str]]:  # noqa: ARG002 - one partition
        spec = self.spec
        client = self.client(max_connections=1)
        cursor: str | None = None
        seen: set[str] = set()
        page = 0
        try:
            while True:
                page += 1
                origin = f"{spec.url} page {page}" + (f" after {cursor}" if cursor else "")
                variables = {**spec.variables, spec.cursor_variable: cursor}
                response = await client.request("POST", spec.url, json={"query": spec.query, "variables": variables})
                try:
                    body = response.json()
                except ValueError as exc:
                    raise DataError(
                        f"the response is not JSON: {response.text[:200]!r}",
                        where=f"source {self.name}: {origin}",
                        hint="check `url:`; the endpoint must answer GraphQL",
                    ) from exc
                errors = body.get("errors") if isinstance(body, dict) else None
                if errors:  # the data may be partial or null: the errors say why
                    connection = dig(body, f"data.{spec.connection}")
                    self._on_errors(errors, _nodes(connection), origin)
                    records: list[Any] = []
                else:
                    connection, records = self._connection(body, page)
                yield records, origin
                info = connection.get("pageInfo") if isinstance(connection, dict) else None
                if not info or not info.get("hasNextPage"):
                    if info is None and not errors:
                        raise ConfigurationError(
                            f"the response has no {spec.connection}.pageInfo",
                            where=f"source {self.name}",
                            hint="select pageInfo { endCursor hasNextPage } on the connection, and check `connection:`",
                        )
                    return
                cursor = info.get("endCursor")
                if not cursor or cursor in seen:
                    raise DataError(
                        f"hasNextPage is true but the cursor {cursor!r} is missing or repeated",
                        where=f"source {self.name}: {origin}",
                        hint="the server's pagination is broken",
                    )
                seen.add(cursor)
        finally:
            await client.aclose()

    def _connection(self, body: Any, page: int) -> tuple[dict[str, Any], list[Any]]:
        """A page's connection and its nodes; raises ConfigurationError when either is not there."""
        path = f"data.{self.spec.connection}"
        where = f"source {self.name}: POST {shown_url(self.spec.url)}"
        connection = value_at(body, path, key="connection", where=where, page=page, hint=_FIX)
        if not isinstance(connection, dict):
            message = f"connection: {path} holds {kind(connection)} in the response of page {page}, not a connection"
            raise ConfigurationError(message, where=where, hint=_FIX)
        for name in ("nodes", "edges"):
            if isinstance(connection.get(name), list):
                return connection, _nodes(connection)
        present = ", ".join(connection) or "none"
        raise ConfigurationError(
            f"connection: {path} has no list of edges or nodes in the response of page {page} (its keys: {present})",
            where=where,
            hint="select edges { node { ... } } or nodes { ... } on the connection, or point `connection:` at one",
        )

    def _on_errors(self, errors: list[Any], records: list[Any], origin: str) -> None:
        messages = "; ".join(_error_text(e) for e in errors)
        if self.spec.on_errors == "fail":
            raise ConfigurationError(
                f"the GraphQL server answered with errors: {messages}",
                where=f"source {self.name}: {origin}",
                hint="fix the query, or set on_errors: quarantine to skip failing pages",
            )
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
