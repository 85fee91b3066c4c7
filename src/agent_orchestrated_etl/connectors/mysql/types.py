"""How MySQL and MariaDB store each Arrow type."""

from __future__ import annotations

from agent_orchestrated_etl.connectors.sql.types import SQL_STANDARD, TypeTable

TYPES = TypeTable(
    engine="mysql",
    title="MySQL",
    columns={
        **SQL_STANDARD,
        "uint8": "TINYINT UNSIGNED",
        "uint16": "SMALLINT UNSIGNED",
        "uint32": "INT UNSIGNED",
        "uint64": "BIGINT UNSIGNED",
        "float32": "FLOAT",
        "string": "LONGTEXT",
        "binary": "LONGBLOB",
        # DATETIME: TIMESTAMP ends in 2038; tz-aware values are stored in UTC.
        "time": "TIME(6)",
        "timestamp": "DATETIME(6)",
        "timestamptz": "DATETIME(6)",
        "json": "JSON",
        "uuid": "CHAR(36)",
    },
    max_decimal_digits=65,
)
