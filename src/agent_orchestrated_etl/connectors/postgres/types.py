"""How PostgreSQL stores each Arrow type."""

from __future__ import annotations

from agent_orchestrated_etl.connectors.sql.types import SQL_STANDARD, TypeTable

TYPES = TypeTable(
    engine="postgresql",
    title="PostgreSQL",
    columns={
        **SQL_STANDARD,
        # Unsigned values need one bit more than the signed type of their width.
        "uint8": "SMALLINT",
        "uint16": "INTEGER",
        "uint32": "BIGINT",
        "uint64": "NUMERIC(20, 0)",
        "string": "TEXT",
        "binary": "BYTEA",
        "timestamptz": "TIMESTAMPTZ",
        "interval": "INTERVAL",
        "json": "JSONB",
        "uuid": "UUID",
        "list": "{item}[]",  # a list of scalars; nested lists and structs have no column type
    },
)
