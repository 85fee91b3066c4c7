"""Arrow types to SQL column types, by each engine's ``TypeTable``, and back from a reflected table.

The same table is in docs/databases.md; keep them together. Arrow is the
pivot: sources produce Arrow, destinations create columns from Arrow, and
schema changes are judged by comparing Arrow types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


#: The SQL standard's names, which PostgreSQL takes as they are and MySQL mostly; an engine's table starts from
#: them and says where it differs (``{**SQL_STANDARD, "float32": "FLOAT"}``).
SQL_STANDARD: Mapping[str, str] = {
    "bool": "BOOLEAN",
    "int8": "SMALLINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "REAL",
    "float64": "DOUBLE PRECISION",
    "decimal": "NUMERIC({precision}, {scale})",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class TypeTable:
    """How one engine stores each Arrow type: data, one table per engine, read by ``ddl_type``.

    ``columns`` maps a type's key (``type_key``: ``int32``, ``decimal``,
    ``timestamptz``, ``list``, ...) to the column type; ``{precision}``,
    ``{scale}`` and ``{item}`` (a list's element type) are filled in. A key
    missing from the table means the engine cannot store that type.
    """

    engine: str
    columns: Mapping[str, str]
    #: The engine's name in messages ("MySQL's 65 digits").
    title: str = ""
    #: The widest decimal the engine holds exactly (None: any precision Arrow has).
    max_decimal_digits: int | None = None
    #: The bounded text type of key columns (the ledger's run id and table name).
    key_text: str = "VARCHAR(300)"

    @property
    def text(self) -> str:
        return self.columns["string"]

    def ddl(self, dtype: pa.DataType) -> str:
        """The column type for ``dtype`` (for the engine's own columns, whose types always exist)."""
        return ddl_type(self, dtype, column="", where=self.engine)


def type_key(dtype: pa.DataType) -> str | None:
    """The key of ``dtype`` in a ``TypeTable`` (None: a type no table lists)."""
    ext = _extension(dtype)
    if ext == JSON:
        return "json"
    if ext == UUID:
        return "uuid"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        return f"{'u' if pa.types.is_unsigned_integer(dtype) else ''}int{dtype.bit_width}"
    if pa.types.is_floating(dtype):
        return "float32" if dtype.bit_width <= 32 else "float64"
    if pa.types.is_decimal(dtype):
        return "decimal"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if _is_binary(dtype) or pa.types.is_binary_view(dtype):
        return "binary"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_time(dtype):
        return "time"
    if pa.types.is_timestamp(dtype):
        return "timestamptz" if dtype.tz else "timestamp"
    if pa.types.is_interval(dtype) or pa.types.is_duration(dtype):
        return "interval"
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and not pa.types.is_nested(dtype.value_type):
        return "list"
    return None


def ddl_type(table: TypeTable, dtype: pa.DataType, *, column: str, where: str) -> str:
    """The column type a destination creates for an Arrow type; DataError if the engine has none."""
    if pa.types.is_dictionary(dtype):
        return ddl_type(table, dtype.value_type, column=column, where=where)
    key = type_key(dtype)
    found = table.columns.get(key) if key else None
    if found is None:
        if pa.types.is_nested(dtype):
            shown = (
                str(dtype) if len(str(dtype)) <= 100 else str(dtype)[:97] + "..."
            )  # a deep struct's name runs to kilobytes
            raise DataError(
                f"column {column}: nested Arrow type {shown} has no {table.engine} column type",
                where=where,
                hint=f"turn it into JSON text in a transform: to_json({column}) AS {column}",
            )
        raise DataError(
            f"column {column}: Arrow type {dtype} has no {table.engine} column type",
            where=where,
            hint=f"CAST {column} to a supported type in a transform (see docs/databases.md)",
        )
    if key == "decimal":
        if table.max_decimal_digits is not None and dtype.precision > table.max_decimal_digits:
            raise DataError(
                f"column {column}: decimal({dtype.precision}, {dtype.scale})"
                f" exceeds {table.title or table.engine}'s {table.max_decimal_digits} digits",
                where=where,
                hint=f"CAST({column} AS text) or round it in a transform",
            )
        return found.format(precision=dtype.precision, scale=dtype.scale)
    if key == "list":
        return found.format(item=ddl_type(table, dtype.value_type, column=column, where=where))
    return found


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
        return (
            pa.decimal128(sql_type.precision, sql_type.scale or 0)
            if sql_type.precision <= 38
            else pa.decimal256(sql_type.precision, sql_type.scale or 0)
        )
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
        whole = max(
            target.precision - target.scale,
            incoming.precision - incoming.scale if pa.types.is_decimal(incoming) else _int_digits(incoming),
        )
        if scale + whole > 76:
            return None
        return (
            target
            if (scale, whole) == (target.scale, target.precision - target.scale)
            else pa.decimal128(whole + scale, scale)
            if whole + scale <= 38
            else pa.decimal256(whole + scale, scale)
        )
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
    return {8: 3, 16: 5, 32: 10, 64: 19}[dtype.bit_width] + (
        1 if pa.types.is_unsigned_integer(dtype) and dtype.bit_width == 64 else 0
    )


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _is_binary(dtype: pa.DataType) -> bool:
    return pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype)
