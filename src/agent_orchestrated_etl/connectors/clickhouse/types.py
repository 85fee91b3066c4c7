"""How ClickHouse stores each Arrow type (a ``TypeTable``, as data), and which Arrow type a column gives back.

Every column is ``Nullable``: Arrow columns may hold nulls, and a plain
ClickHouse column would turn a null into 0 or ''. ClickHouse has one
``String`` type for text and bytes alike; a binary column carries the comment
``BINARY_COMMENT`` so that it reads back as bytes. Lists are left out: a
ClickHouse ``Array`` cannot be null, so a null list would come back as ``[]``.
"""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa

from agent_orchestrated_etl.connectors.sql.types import TypeTable

BINARY_COMMENT = "agent-etl: arrow binary"

TYPES = TypeTable(
    engine="clickhouse",
    title="ClickHouse",
    columns={
        "bool": "Nullable(Bool)",
        **{f"{u}int{n}": f"Nullable({u.upper()}Int{n})" for u in ("", "u") for n in (8, 16, 32, 64)},
        "float32": "Nullable(Float32)",
        "float64": "Nullable(Float64)",
        "decimal": "Nullable(Decimal({precision}, {scale}))",
        "string": "Nullable(String)",
        "binary": f"Nullable(String) COMMENT '{BINARY_COMMENT}'",
        # Date32 and DateTime64 hold 1900-01-01 to 2299-12-31; Date and DateTime stop at 2149 and 2106.
        "date": "Nullable(Date32)",
        "time": "Nullable(Time64(6))",
        "timestamp": "Nullable(DateTime64(6))",
        "timestamptz": "Nullable(DateTime64(6, 'UTC'))",
        "json": "Nullable(String)",
        "uuid": "Nullable(UUID)",
    },
    max_decimal_digits=76,
    # The ledger's key columns: ClickHouse sorting keys may not be Nullable.
    key_text="String",
)

#: What Date32 and DateTime64 hold; a value outside is clamped by ClickHouse, so it is refused instead.
EARLIEST, LATEST = dt.date(1900, 1, 1), dt.date(2299, 12, 31)

_WRAPPERS = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
_DECIMAL = re.compile(r"^Decimal(?:32|64|128|256)?\((\d+),\s*(\d+)\)$")
_SIMPLE: dict[str, pa.DataType] = {
    "Bool": pa.bool_(),
    **{f"Int{n}": getattr(pa, f"int{n}")() for n in (8, 16, 32, 64)},
    **{f"UInt{n}": getattr(pa, f"uint{n}")() for n in (8, 16, 32, 64)},
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "Date": pa.date32(),
    "Date32": pa.date32(),
    "UUID": pa.uuid(),
}


def arrow_type(column_type: str, comment: str = "") -> pa.DataType | None:
    """The Arrow type a ClickHouse column holds (None: one we do not map), from ``system.columns``."""
    while match := _WRAPPERS.match(column_type):
        column_type = match.group(1)
    if column_type == "String" and comment == BINARY_COMMENT or column_type.startswith("FixedString("):
        return pa.binary()
    if column_type in _SIMPLE:
        return _SIMPLE[column_type]
    if match := _DECIMAL.match(column_type):
        precision, scale = int(match.group(1)), int(match.group(2))
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if column_type.startswith("DateTime"):
        return pa.timestamp("us", tz="UTC" if "'" in column_type else None)
    if column_type.startswith("Time64") or column_type == "Time":
        return pa.time64("us")
    return None
