"""The spec models of DuckDB as a source and as a destination."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from agent_orchestrated_etl.connectors.base import DestinationSpecBase
from agent_orchestrated_etl.connectors.sql.common import SQLSourceSpec
from agent_orchestrated_etl.connectors.sql.protocol import STAGING_PREFIX

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DuckDBSourceSpec(SQLSourceSpec):
    type: Literal["duckdb"]
    path: str = Field(description="The DuckDB database file.")

    @property
    def connection_url(self) -> str:
        return f"duckdb:///{self.path}"


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
