"""The spec models of DuckDB as a source and as a destination."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent_orchestrated_etl.connectors.base import ConnectorSpec, DestinationSpecBase
from agent_orchestrated_etl.connectors.incremental import IncrementalSpec
from agent_orchestrated_etl.connectors.sql.common import PartitionSpec, TablesFields, check_one_of
from agent_orchestrated_etl.connectors.sql.protocol import STAGING_PREFIX

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DuckDBSourceSpec(ConnectorSpec, TablesFields):
    type: Literal["duckdb"]
    path: str = Field(description="The DuckDB database file.")
    table: str | None = Field(None, description="Read this table (`name` or `schema.name`).")
    query: str | None = Field(None, description="Or read the result of this query.")
    partition: PartitionSpec | None = None
    incremental: IncrementalSpec | None = None

    @field_validator("table")
    @classmethod
    def _plain(cls, table: str | None) -> str | None:
        if table is not None and not all(IDENTIFIER.match(part) for part in table.split(".")):
            raise ValueError(f"table {table!r} must be `name` or `schema.name`; use query: for anything else")
        return table

    @model_validator(mode="after")
    def _one_of(self) -> DuckDBSourceSpec:
        check_one_of(self)
        return self


class DuckDBDestinationSpec(DestinationSpecBase):
    type: Literal["duckdb"]
    path: str = Field(description="The DuckDB database file; created if missing.")
    table: str | None = Field(
        None,
        description="Target table, created from the data's Arrow schema. Left out when the input reads several tables.",
    )
    table_prefix: str | None = Field(
        None, description="When the input reads several tables: each lands in prefix + its name."
    )

    @field_validator("table")
    @classmethod
    def _plain_identifier(cls, table: str | None) -> str | None:
        if table is not None and (not IDENTIFIER.match(table) or table.startswith(STAGING_PREFIX)):
            raise ValueError(f"table {table!r} must be a plain identifier (letters, digits, _)")
        return table

    @field_validator("table_prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", prefix + "x"):
            raise ValueError(f"table_prefix {prefix!r} must be letters, digits and _")
        return prefix
