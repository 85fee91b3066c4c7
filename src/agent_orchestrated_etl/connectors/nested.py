"""Nested JSON records to Arrow: one schema that widens across batches, and three shapes.

- ``struct``: objects stay structs and arrays stay lists;
- ``flatten``: struct fields become columns named ``address__city`` (lists stay lists);
- ``unnest``: the elements of one list become the rows of a child table, each
  carrying its parent's key columns (``_parent_id``) and its ``_index`` in the list.

A field that appears on page 40 is added then; a type that widens (int to
float, null to anything, a struct that gains fields) is widened for the rest
of the stream. A value that cannot be widened safely (a string where earlier
pages had numbers) sends its row to quarantine with the field and both types,
and the rest of the batch loads. No field is dropped: columns missing from a
batch are filled with nulls.

pyarrow infers and merges the struct types in C++ (``pa.array`` of dicts),
so the common page costs one call; Python only walks the rows of a page that
holds a conflict or nests too deep.

Nesting is kept to ``max_depth`` levels below a column (16 by default): a
deeper object or array is kept as its JSON text, so no file or page fails
for its depth. Engines refuse deep types (DuckDB's Arrow import stops at 64
levels, with ``Recursion level in ArrowSchema struct exceeded``), and the cut
is by depth, so every record is cut at the same places.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

Shape = Literal["struct", "flatten", "unnest"]


class NestedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shape: Shape = Field("struct", description="struct: keep nesting; flatten: a__b columns; unnest: rows of one list.")
    separator: str = Field("__", description="Joins the names of flattened struct fields.")
    unnest: str | None = Field(
        None, description="With shape: unnest, the dotted path of the list whose elements become rows."
    )
    parent_key: list[str] = Field(
        default_factory=list, description="Parent fields copied into each unnested row as _parent_<name>."
    )
    max_depth: int = Field(
        16,
        ge=1,
        le=32,
        description="Levels of objects and arrays kept below a column; a deeper subtree is kept as JSON text.",
    )


Rejected = tuple[dict[str, Any], str, int]
"""A row that could not be converted: (record, reason, index within the records given)."""


class RecordsToArrow:
    """Converts lists of JSON records into record batches of one widening schema."""

    def __init__(self, options: NestedOptions | None = None) -> None:
        self.options = options or NestedOptions()
        self.schema: pa.Schema | None = None

    def convert(self, records: Sequence[Any]) -> tuple[pa.RecordBatch | None, list[Rejected]]:
        """A batch of the records that fit the (widened) schema, and the rows that did not."""
        if self.options.shape == "unnest" and self.options.unnest:
            reshaped = self._reshape(records)
            rows, origins = [row for row, _ in reshaped], [origin for _, origin in reshaped]
        else:
            rows, origins = list(records), list(range(len(records)))
        depth = self.options.max_depth
        try:  # the common page: one C++ call infers and merges every record's type
            array = pa.array(rows)
            if not pa.types.is_struct(array.type):
                raise pa.ArrowTypeError("not a list of objects")
            if too_deep(array.type, depth):
                rows = [cut_depth(row, depth) for row in rows]
                array = pa.array(rows)
            target = self._widen(array.type)
            rejected: list[Rejected] = []
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            rows = [cut_depth(row, depth) for row in rows]
            objects = [i for i, row in enumerate(rows) if isinstance(row, dict)]
            rejected = [
                ({"value": row}, f"expected a JSON object, got {_json_type(row)}", origins[i])
                for i, row in enumerate(rows)
                if not isinstance(row, dict)
            ]
            rows, origins = [rows[i] for i in objects], [origins[i] for i in objects]
            if not rows:
                return None, rejected
            array, target, bad = self._convert_slowly(rows)
            rejected += [(rows[i], reason, origins[i]) for i, reason in bad]
        if len(array) == 0:
            return None, rejected
        self.schema = pa.schema(list(target))
        batch = pa.RecordBatch.from_struct_array(array.cast(target) if array.type != target else array)
        return (flatten(batch, self.options.separator) if self.options.shape == "flatten" else batch), rejected

    def _reshape(self, records: Sequence[Any]) -> list[tuple[Any, int]]:
        assert self.options.unnest is not None
        path = self.options.unnest.split(".")
        out: list[tuple[Any, int]] = []
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                out.append((record, i))
                continue
            items = _dig(record, path)
            parent = {f"_parent_{key}": record.get(key) for key in self.options.parent_key}
            for position, item in enumerate(items if isinstance(items, list) else []):
                child = item if isinstance(item, dict) else {"value": item}
                out.append(({**parent, "_index": position, **child}, i))
        return out

    def _widen(self, found: pa.DataType) -> pa.StructType:
        """The running schema widened by a batch's inferred type; raises ArrowTypeError when unsafe."""
        if self.schema is None:
            return found
        merged = pa.unify_schemas([self.schema, pa.schema(list(found))], promote_options="permissive")
        return pa.struct(list(merged))

    def _convert_slowly(
        self, rows: list[dict[str, Any]]
    ) -> tuple[pa.StructArray, pa.StructType, list[tuple[int, str]]]:
        """Field by field: find each field's type and the rows whose value cannot take it."""
        names = list(self.schema.names) if self.schema is not None else []
        for row in rows:
            names += [name for name in row if name not in names]
        fields: list[pa.Field] = []
        bad: dict[int, str] = {}
        for name in names:
            values = [row.get(name) for row in rows]
            known = self.schema.field(name).type if self.schema is not None and name in self.schema.names else None
            field_type, misfits = _field_type(name, values, known)
            fields.append(pa.field(name, field_type))
            for i, reason in misfits:
                bad.setdefault(i, reason)
        target = pa.struct(fields)
        good = [row for i, row in enumerate(rows) if i not in bad]
        return pa.array(good, type=target), target, sorted(bad.items())


def too_deep(record_type: pa.DataType, max_depth: int) -> bool:
    """Whether a record type (a struct of columns) nests more than ``max_depth`` levels below a column."""
    return _depth(record_type) - 1 > max_depth


def cut_depth(record: Any, max_depth: int) -> Any:
    """A record whose objects and arrays deeper than ``max_depth`` levels below a column are JSON text."""
    if not isinstance(record, dict):
        return record
    return {key: _cut(value, max_depth) for key, value in record.items()}


def _cut(value: Any, levels: int) -> Any:
    if isinstance(value, dict | list):
        if levels == 0:
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict):
            return {key: _cut(item, levels - 1) for key, item in value.items()}
        return [_cut(item, levels - 1) for item in value]
    return value


def _depth(data_type: pa.DataType) -> int:
    if pa.types.is_struct(data_type):
        return 1 + max((_depth(f.type) for f in data_type), default=0)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type):
        return 1 + _depth(data_type.value_type)
    if pa.types.is_map(data_type):
        return 1 + max(_depth(data_type.key_type), _depth(data_type.item_type))
    return 0


def flatten(batch: pa.RecordBatch, separator: str = "__") -> pa.RecordBatch:
    """Struct fields as columns of their own, named parent__child, at every depth."""
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    names = [name.replace(".", separator) for name in table.column_names]
    return table.rename_columns(names).combine_chunks().to_batches()[0] if table.num_rows else batch


def _field_type(name: str, values: list[Any], known: pa.DataType | None) -> tuple[pa.DataType, list[tuple[int, str]]]:
    """The widest safe type of one field's values, and the values that do not fit it."""
    types: list[pa.DataType | None] = []
    for value in values:
        try:
            types.append(pa.array([value]).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            types.append(None)
    current = known or next(
        (t for t, v in zip(types, values, strict=True) if v is not None and t is not None), pa.null()
    )
    misfits: list[tuple[int, str]] = []
    for i, (value, found) in enumerate(zip(values, types, strict=True)):
        if value is None:
            continue
        widened = _unify(current, found) if found is not None else None
        if widened is None:
            misfits.append((i, f"field {name}: {_json_type(value)} {_short(value)} does not fit type {current}"))
        else:
            current = widened
    return current, misfits


def _unify(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    try:
        return (
            pa.unify_schemas([pa.schema([("f", a)]), pa.schema([("f", b)])], promote_options="permissive")
            .field("f")
            .type
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _dig(record: dict[str, Any], path: list[str]) -> Any:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _json_type(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
