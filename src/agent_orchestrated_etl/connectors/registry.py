"""Which connector implements each ``type:`` of a spec. Adding a connector adds one line here.

Connector modules import their heavy client libraries lazily, so importing
every module to collect the spec models stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from agent_orchestrated_etl.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agent_orchestrated_etl.connectors.base import Destination, Source

_PACKAGE = "agent_orchestrated_etl.connectors"

SOURCES: dict[str, str] = {
    "duckdb": "duckdb.source:DuckDBSource",
    "file": "files:FileSource",
    "graphql": "graphql:GraphQLSource",
    "mysql": "mysql.source:MySQLSource",
    "postgres": "postgres.source:PostgresSource",
    "python": "python:PythonSource",
    "rest": "rest:RestSource",
    "sql": "sql.generic:GenericSQLSource",
    "sqlite": "sqlite.source:SQLiteSource",
}

DESTINATIONS: dict[str, str] = {
    "clickhouse": "clickhouse.destination:ClickHouseDestination",
    "duckdb": "duckdb.destination:DuckDBDestination",
    "file": "files:FileDestination",
    "mysql": "mysql.destination:MySQLDestination",
    "postgres": "postgres.destination:PostgresDestination",
    "sqlite": "sqlite.destination:SQLiteDestination",
}


def _load(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(import_module(f"{_PACKAGE}.{module}"), name)


def source_class(kind: str) -> type[Source]:
    if kind not in SOURCES:
        raise ConfigurationError(f"unknown source type {kind!r}", hint=f"use one of {sorted(SOURCES)}")
    return _load(SOURCES[kind])


def destination_class(kind: str) -> type[Destination]:
    if kind not in DESTINATIONS:
        raise ConfigurationError(f"unknown destination type {kind!r}", hint=f"use one of {sorted(DESTINATIONS)}")
    return _load(DESTINATIONS[kind])


def source_spec_models() -> tuple[type[BaseModel], ...]:
    return tuple(source_class(kind).spec_model for kind in SOURCES)


def destination_spec_models() -> tuple[type[BaseModel], ...]:
    return tuple(destination_class(kind).spec_model for kind in DESTINATIONS)
