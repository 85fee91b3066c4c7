"""How PostgreSQL stores each Arrow type."""

from __future__ import annotations

from agent_orchestrated_etl.connectors.sql.types import TypeTable

TYPES = TypeTable(
    engine="postgresql",
    title="PostgreSQL",
    columns={
        "bool": "BOOLEAN",
        "int8": "SMALLINT",
        "int16": "SMALLINT",
        "int32": "INTEGER",
        "int64": "BIGINT",
        # Unsigned values need one bit more than the signed type of their width.
        "uint8": "SMALLINT",
        "uint16": "INTEGER",
        "uint32": "BIGINT",
        "uint64": "NUMERIC(20, 0)",
        "float32": "REAL",
        "float64": "DOUBLE PRECISION",
        "decimal": "NUMERIC({precision}, {scale})",
        "string": "TEXT",
        "binary": "BYTEA",
        "date": "DATE",
        "time": "TIME",
        "timestamp": "TIMESTAMP",
        "timestamptz": "TIMESTAMPTZ",
        "interval": "INTERVAL",
        "json": "JSONB",
        "uuid": "UUID",
        "list": "{item}[]",  # a list of scalars; nested lists and structs have no column type
    },
)
