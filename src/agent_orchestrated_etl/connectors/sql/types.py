"""Arrow types to SQL column types, per dialect, and back from a reflected table.

The same table is in docs/databases.md; keep them together. Arrow is the
pivot: sources produce Arrow, destinations create columns from Arrow, and
schema changes are judged by comparing Arrow types.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent_orchestrated_etl.exceptions import DataError

JSON = "arrow.json"
UUID = "arrow.uuid"


def cast_columns(batch: pa.RecordBatch, casts: dict[str, pa.DataType]) -> pa.RecordBatch:
    """The batch with the named columns cast, through storage types where a driver's or our type is an extension type."""
    columns, fields = list(batch.columns), list(batch.schema)
    for name, dtype in casts.items():
        i = batch.schema.get_field_index(name)
        column = columns[i].storage if isinstance(columns[i], pa.ExtensionArray) else columns[i]
        if isinstance(dtype, pa.BaseExtensionType):
            columns[i] = pa.ExtensionArray.from_storage(dtype, pc.cast(column, dtype.storage_type))
        else:
            columns[i] = pc.cast(column, dtype)
        fields[i] = pa.field(name, dtype)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _extension(dtype: pa.DataType) -> str | None:
    return getattr(dtype, "extension_name", None)


def ddl_type(dialect: str, dtype: pa.DataType, *, column: str, where: str) -> str:
    """The column type a destination creates for an Arrow type; DataError if it has none."""
    ext = _extension(dtype)
    if ext == JSON:
        return {"postgresql": "JSONB", "mysql": "JSON", "sqlite": "JSON"}[dialect]
    if ext == UUID:
        return {"postgresql": "UUID", "mysql": "CHAR(36)", "sqlite": "UUID"}[dialect]
    if pa.types.is_dictionary(dtype):
        return ddl_type(dialect, dtype.value_type, column=column, where=where)
    sqlite = dialect == "sqlite"
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_integer(dtype):
        if sqlite:
            return "INTEGER"
        bits = dtype.bit_width + (1 if pa.types.is_unsigned_integer(dtype) else 0)
        if dialect == "mysql" and pa.types.is_unsigned_integer(dtype):
            return {8: "TINYINT UNSIGNED", 16: "SMALLINT UNSIGNED", 32: "INT UNSIGNED", 64: "BIGINT UNSIGNED"}[dtype.bit_width]
        if bits <= 16:
            return "SMALLINT"
        return "INTEGER" if bits <= 32 else "BIGINT" if bits <= 64 else "NUMERIC(20, 0)"
    if pa.types.is_floating(dtype):
        if sqlite:
            return "REAL"
        return "REAL" if dtype.bit_width <= 32 and dialect == "postgresql" else "FLOAT" if dtype.bit_width <= 32 else "DOUBLE PRECISION"
    if pa.types.is_decimal(dtype):
        if sqlite:  # SQLite has no exact decimal: text affinity (the TEXT in the name) keeps every digit
            return f"TEXT_DECIMAL({dtype.precision}, {dtype.scale})"
        if dialect == "mysql" and dtype.precision > 65:
            raise DataError(f"column {column}: decimal({dtype.precision}, {dtype.scale}) exceeds MySQL's 65 digits", where=where, hint=f"CAST({column} AS text) or round it in a transform")
        return f"NUMERIC({dtype.precision}, {dtype.scale})"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "LONGTEXT" if dialect == "mysql" else "TEXT"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype) or pa.types.is_binary_view(dtype):
        return {"postgresql": "BYTEA", "mysql": "LONGBLOB", "sqlite": "BLOB"}[dialect]
    if pa.types.is_date(dtype):
        return "DATE"
    if pa.types.is_time(dtype):
        return "TIME(6)" if dialect == "mysql" else "TIME"
    if pa.types.is_timestamp(dtype):
        if dialect == "mysql":  # DATETIME: TIMESTAMP ends in 2038; tz-aware values are stored in UTC
            return "DATETIME(6)"
        return "TIMESTAMPTZ" if dtype.tz else "TIMESTAMP"
    if (pa.types.is_interval(dtype) or pa.types.is_duration(dtype)) and dialect == "postgresql":
        return "INTERVAL"
    if dialect == "postgresql" and (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and not pa.types.is_nested(dtype.value_type):
        return ddl_type(dialect, dtype.value_type, column=column, where=where) + "[]"
    if pa.types.is_nested(dtype):
        shown = str(dtype) if len(str(dtype)) <= 100 else str(dtype)[:97] + "..."  # a deep struct's name runs to kilobytes
        raise DataError(f"column {column}: nested Arrow type {shown} has no {dialect} column type", where=where, hint=f"turn it into JSON text in a transform: to_json({column}) AS {column}")
    raise DataError(f"column {column}: Arrow type {dtype} has no {dialect} column type", where=where, hint=f"CAST {column} to a supported type in a transform (see docs/databases.md)")


def arrow_type(sql_type: Any) -> pa.DataType | None:
    """The Arrow type a reflected SQLAlchemy column type holds, or None if we cannot tell."""
    import sqlalchemy as sa

    name = type(sql_type).__name__.upper()
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, sa.SmallInteger) or name in {"TINYINT", "SMALLINT", "YEAR"}:
        return pa.int16()
    if isinstance(sql_type, sa.BigInteger):
        return pa.int64()
    if isinstance(sql_type, sa.Integer):
        return pa.int32() if name in {"INTEGER", "INT", "MEDIUMINT"} else pa.int64()
    if isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
        if sql_type.precision is None:
            return None
        return pa.decimal128(sql_type.precision, sql_type.scale or 0) if sql_type.precision <= 38 else pa.decimal256(sql_type.precision, sql_type.scale or 0)
    if isinstance(sql_type, sa.Float):
        return pa.float32() if name in {"REAL", "FLOAT"} else pa.float64()
    if isinstance(sql_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if sql_type.timezone else None)
    if isinstance(sql_type, sa.Date):
        return pa.date32()
    if isinstance(sql_type, sa.Time):
        return pa.time64("us")
    if isinstance(sql_type, sa.JSON):
        return pa.json_(pa.string())
    if isinstance(sql_type, sa.Uuid):
        return pa.uuid()
    if isinstance(sql_type, sa.LargeBinary) or name in {"BYTEA", "BLOB", "LONGBLOB", "VARBINARY", "BINARY"}:
        return pa.binary()
    if isinstance(sql_type, sa.String):
        return pa.string()
    return None


def widened(target: pa.DataType, incoming: pa.DataType) -> pa.DataType | None:
    """The type to hold both, when that is a safe widening of ``target``; else None.

    Returns ``target`` itself when incoming values already fit.
    """
    target, incoming = plain(target), plain(incoming)
    if target == incoming:
        return target
    if pa.types.is_integer(target) and pa.types.is_integer(incoming):
        if _int_fits(incoming, target):
            return target
        return pa.int64() if _int_fits(incoming, pa.int64()) else None
    if pa.types.is_floating(target) and (pa.types.is_floating(incoming) or pa.types.is_integer(incoming)):
        return target if incoming.bit_width <= target.bit_width and pa.types.is_floating(incoming) else pa.float64()
    if pa.types.is_decimal(target) and (pa.types.is_decimal(incoming) or pa.types.is_integer(incoming)):
        scale = max(target.scale, incoming.scale if pa.types.is_decimal(incoming) else 0)
        whole = max(target.precision - target.scale, incoming.precision - incoming.scale if pa.types.is_decimal(incoming) else _int_digits(incoming))
        if scale + whole > 76:
            return None
        return target if (scale, whole) == (target.scale, target.precision - target.scale) else pa.decimal128(whole + scale, scale) if whole + scale <= 38 else pa.decimal256(whole + scale, scale)
    if pa.types.is_decimal(incoming) and pa.types.is_integer(target):
        return None
    if _is_text(target) and _is_text(incoming):
        return target
    if _is_binary(target) and _is_binary(incoming):
        return target
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(incoming) and bool(target.tz) == bool(incoming.tz):
        return target
    if pa.types.is_timestamp(target) and pa.types.is_date(incoming):
        return target
    return None


def plain(dtype: pa.DataType) -> pa.DataType:
    """The type without the wrappers that do not change the values (extensions, dictionaries, large)."""
    ext = _extension(dtype)
    if ext is not None:
        return pa.string() if ext in (JSON, UUID) else dtype.storage_type
    if pa.types.is_dictionary(dtype):
        return dtype.value_type
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    return dtype


def _int_fits(incoming: pa.DataType, target: pa.DataType) -> bool:
    signed_in, signed_target = pa.types.is_signed_integer(incoming), pa.types.is_signed_integer(target)
    if signed_in == signed_target:
        return incoming.bit_width <= target.bit_width
    return signed_target and incoming.bit_width < target.bit_width


def _int_digits(dtype: pa.DataType) -> int:
    return {8: 3, 16: 5, 32: 10, 64: 19}[dtype.bit_width] + (1 if pa.types.is_unsigned_integer(dtype) and dtype.bit_width == 64 else 0)


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _is_binary(dtype: pa.DataType) -> bool:
    return pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype)
