"""How DuckDB stores each Arrow type.

Staging tables are created by DuckDB's own scan of the first Arrow batch, so
the data's columns get DuckDB's mapping of Arrow; this table types the columns
agent-etl declares itself (the loads ledger, the state, the quarantine) and
says the same for every other type, so that the two never disagree.
"""

from __future__ import annotations

from agent_orchestrated_etl.connectors.sql.types import TypeTable

TYPES = TypeTable(
    engine="duckdb",
    title="DuckDB",
    columns={
        "bool": "BOOLEAN",
        "int8": "TINYINT",
        "int16": "SMALLINT",
        "int32": "INTEGER",
        "int64": "BIGINT",
        "uint8": "UTINYINT",
        "uint16": "USMALLINT",
        "uint32": "UINTEGER",
        "uint64": "UBIGINT",
        "float32": "FLOAT",
        "float64": "DOUBLE",
        "decimal": "DECIMAL({precision},{scale})",
        "string": "VARCHAR",
        "binary": "BLOB",
        "date": "DATE",
        "time": "TIME",
        "timestamp": "TIMESTAMP",
        "timestamptz": "TIMESTAMP WITH TIME ZONE",
        "interval": "INTERVAL",
        "json": "JSON",
        "uuid": "UUID",
        "list": "{item}[]",
    },
    max_decimal_digits=38,
    key_text="VARCHAR",
)
