"""How SQLite stores each Arrow type: the declared type names say what a column holds (see the package)."""

from __future__ import annotations

from agent_orchestrated_etl.connectors.sql.types import TypeTable

TYPES = TypeTable(
    engine="sqlite",
    title="SQLite",
    columns={
        "bool": "BOOLEAN",
        **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"), "INTEGER"),
        "float32": "REAL",
        "float64": "REAL",
        # SQLite has no exact decimal: text affinity (the TEXT in the name) keeps every digit.
        "decimal": "TEXT_DECIMAL({precision}, {scale})",
        "string": "TEXT",
        "binary": "BLOB",
        "date": "DATE",
        "time": "TIME",
        "timestamp": "TIMESTAMP",
        "timestamptz": "TIMESTAMPTZ",
        "json": "JSON",
        "uuid": "UUID",
    },
)
