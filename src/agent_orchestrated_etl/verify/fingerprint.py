"""Order-independent fingerprints of a relation, computed as aggregates inside its own engine.

Each value is put in one canonical text form (the same in DuckDB, PostgreSQL
and MariaDB/MySQL for the same value), a row's texts are joined and hashed
with md5, and the first 15 hex digits of each row's hash are combined by a sum
mod 2**60 and a bit_xor. The key columns are hashed the same way, so the key
set has a fingerprint of its own. When two fingerprints differ, buckets of the
key hash (1,024 per level, each level splitting one differing bucket) narrow
the difference down until a bucket is small enough to list its keys; only
aggregates and that bounded list ever leave an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Dialect = Literal["duckdb", "postgresql", "mysql"]
Family = Literal["bool", "int", "decimal", "float", "date", "timestamp", "timestamptz", "time", "text"]

MODULUS = 1 << 60
BUCKETS = 1024
#: A differing bucket with at most this many rows on each side has its keys listed.
LIST_LIMIT = 200
#: How many differing keys a result names.
MAX_KEYS = 10
_TS = {"duckdb": "%Y-%m-%d %H:%M:%S.%f", "postgresql": "YYYY-MM-DD HH24:MI:SS.US", "mysql": "%Y-%m-%d %H:%i:%s.%f"}


class Side(Protocol):
    """One relation in one engine: the rows of a source's window, or of a target."""

    dialect: Dialect
    relation: str
    where: list[str]

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    def types(self) -> dict[str, str]: ...

    def quote(self, name: str) -> str: ...


def family(type_name: str) -> Family:
    """The canonical form a column's values take, from the engine's own name for its type."""
    name = type_name.lower()
    if name.startswith("bool"):
        return "bool"
    if "with time zone" in name or name.startswith("timestamptz") or name == "timestamp with tz":
        return "timestamptz"
    if name.startswith(("timestamp", "datetime")):
        return "timestamp"
    if name == "date":
        return "date"
    if name.startswith("time"):
        return "time"
    if name.startswith(("numeric", "decimal")):
        return "decimal"
    if name.startswith(("double", "float", "real")):
        return "float"
    if name.split("(")[0].split(" ")[0] in {
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "hugeint",
        "int2",
        "int4",
        "int8",
        "ubigint",
        "uinteger",
        "usmallint",
        "utinyint",
        "uhugeint",
        "year",
    }:
        return "int"
    return "text"


def canonical(column: str, kind: Family, dialect: Dialect) -> str:
    """SQL for one value's canonical text (NULL stays NULL)."""
    if dialect == "mysql":
        return f"CONVERT({_mysql(column, kind)} USING utf8mb4)"
    text = "CAST({} AS VARCHAR)" if dialect == "duckdb" else "CAST({} AS TEXT)"
    if kind == "bool":
        return f"CASE WHEN {column} THEN '1' WHEN NOT {column} THEN '0' END"
    if kind in ("int", "text"):
        return text.format(column)
    if kind in ("decimal", "float"):
        # Scale is the engine's business (numeric(10,2) in one, DECIMAL(18,3) in another): trailing zeros go.
        number = (
            column
            if kind == "decimal"
            else (
                f"CAST(round({column}, 9) AS DECIMAL(38, 9))"
                if dialect == "duckdb"
                else f"round(CAST({column} AS NUMERIC), 9)"
            )
        )
        as_text = text.format(number)
        return f"CASE WHEN strpos({as_text}, '.') > 0 THEN rtrim(rtrim({as_text}, '0'), '.') ELSE {as_text} END"
    if dialect == "duckdb":
        if kind == "date":
            return f"strftime({column}, '%Y-%m-%d')"
        if kind == "time":
            return f"strftime(DATE '2000-01-01' + {column}, '%H:%M:%S.%f')"
        value = f"timezone('UTC', {column})" if kind == "timestamptz" else column
        return f"strftime({value}, '{_TS['duckdb']}')"
    if kind == "date":
        return f"to_char({column}, 'YYYY-MM-DD')"
    if kind == "time":
        return f"to_char({column}, 'HH24:MI:SS.US')"
    value = f"({column} AT TIME ZONE 'UTC')" if kind == "timestamptz" else column
    return f"to_char({value}, '{_TS['postgresql']}')"


def _mysql(column: str, kind: Family) -> str:
    if kind in ("bool", "int", "text"):
        return f"CAST({column} AS CHAR)"
    if kind in ("decimal", "float"):
        number = f"CAST({column} AS CHAR)" if kind == "decimal" else f"CAST(ROUND({column}, 9) AS DECIMAL(65, 9))"
        as_text = f"CAST({number} AS CHAR)"
        return (
            f"CASE WHEN LOCATE('.', {as_text}) > 0 THEN TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {as_text})) ELSE"
            f" {as_text} END"
        )
    if kind == "date":
        return f"DATE_FORMAT({column}, '%Y-%m-%d')"
    if kind == "time":
        return f"TIME_FORMAT({column}, '%H:%i:%s.%f')"
    # TIMESTAMP columns are read in the session's zone, which the MySQL side sets to UTC.
    return f"DATE_FORMAT({column}, '{_TS['mysql']}')"


def row_text(columns: list[tuple[str, Family]], dialect: Dialect, quote: Callable[[str], str]) -> str:
    """SQL joining the canonical texts of ``columns``; NULL has a text of its own (chr(30))."""
    sep, null = ("CHAR(31 USING utf8mb4)", "CHAR(30 USING utf8mb4)") if dialect == "mysql" else ("chr(31)", "chr(30)")
    parts = [f"coalesce({canonical(quote(name), kind, dialect)}, {null})" for name, kind in columns]
    return f"concat_ws({sep}, {', '.join(parts)})"


def hash_int(text: str, dialect: Dialect) -> str:
    """SQL: the first 15 hex digits of md5(text) as an integer below 2**60."""
    if dialect == "duckdb":
        return f"CAST(('0x' || substr(md5({text}), 1, 15)) AS UBIGINT)"
    if dialect == "postgresql":
        return f"('x' || lpad(substr(md5({text}), 1, 15), 16, '0'))::bit(64)::bigint"
    return f"CAST(CONV(SUBSTR(MD5({text}), 1, 15), 16, 10) AS UNSIGNED)"


@dataclass(frozen=True)
class Shape:
    """What is compared: the key columns and the loaded columns, each with its canonical family."""

    key: list[tuple[str, Family]]
    columns: list[tuple[str, Family]]


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    row_sum: int
    row_xor: int
    key_sum: int
    key_xor: int

    def as_dict(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "row_sum": self.row_sum,
            "row_xor": self.row_xor,
            "key_sum": self.key_sum,
            "key_xor": self.key_xor,
        }


def _hashed(side: Side, shape: Shape, kinds: dict[str, Family], extra: str = "") -> str:
    def typed(cols: list[tuple[str, Family]]) -> list[tuple[str, Family]]:
        # The same column may be a different type on each side (decimal here, float there): each side's own.
        return [(name, kinds.get(name, kind)) for name, kind in cols]

    h = hash_int(row_text(typed(shape.columns), side.dialect, side.quote), side.dialect)
    k = hash_int(row_text(typed(shape.key), side.dialect, side.quote), side.dialect)
    where = f" WHERE {' AND '.join(side.where)}" if side.where else ""
    return f"SELECT {h} AS h, {k} AS k{extra} FROM {side.relation}{where}"


def _kinds(side: Side) -> dict[str, Family]:
    return {name: family(t) for name, t in side.types().items()}


def fingerprint(side: Side, shape: Shape) -> Fingerprint:
    kinds = _kinds(side)
    sql = (
        f"SELECT count(*), coalesce(sum(h), 0) % {MODULUS}, coalesce(bit_xor(h), 0), coalesce(sum(k), 0) % {MODULUS},"
        f" coalesce(bit_xor(k), 0) FROM ({_hashed(side, shape, kinds)}) AS _aetl_h"
    )
    (row,) = side.query(sql)
    return Fingerprint(*(int(v) for v in row))


@dataclass(frozen=True)
class Difference:
    key: dict[str, str | None]
    #: "missing in the target", "not in the source", "values differ", or how many rows each side holds with it.
    what: str

    def __str__(self) -> str:
        values = ", ".join(f"{k}={'NULL' if v is None else v}" for k, v in self.key.items())
        return f"{values} ({self.what})"


def first_differences(source: Side, target: Side, shape: Shape, *, limit: int = MAX_KEYS) -> list[Difference]:
    """Up to ``limit`` keys whose rows differ, found by narrowing buckets of the key hash in both engines."""
    kinds = (_kinds(source), _kinds(target))
    found: list[Difference] = []
    pending: list[tuple[int, int]] = [(1, 0)]  # (modulus of the parent level, parent bucket)
    while pending and len(found) < limit:
        parent_mod, parent = pending.pop(0)
        modulus = parent_mod * BUCKETS
        here = [
            _buckets(side, shape, kind, parent_mod, parent, modulus)
            for side, kind in zip((source, target), kinds, strict=True)
        ]
        for bucket in sorted(set(here[0]) | set(here[1])):
            a, b = here[0].get(bucket), here[1].get(bucket)
            if a == b:
                continue
            if max((a or (0,))[0], (b or (0,))[0]) <= LIST_LIMIT or modulus * BUCKETS > MODULUS:
                found += _listed(source, target, shape, kinds, modulus, bucket)
                if len(found) >= limit:
                    break
            else:
                pending.append((modulus, bucket))
    return sorted(found, key=lambda d: tuple("" if v is None else v for v in d.key.values()))[:limit]


def _buckets(
    side: Side, shape: Shape, kinds: dict[str, Family], parent_mod: int, parent: int, modulus: int
) -> dict[int, tuple[int, int, int]]:
    inner = _hashed(side, shape, kinds)
    where = f" WHERE k % {parent_mod} = {parent}" if parent_mod > 1 else ""
    sql = (
        f"SELECT k % {modulus} AS b, count(*), sum(h) % {MODULUS}, bit_xor(h) FROM ({inner}) AS _aetl_h{where} GROUP BY"
        f" k % {modulus}"
    )
    return {int(b): (int(n), int(s), int(x)) for b, n, s, x in side.query(sql)}


def _listed(
    source: Side,
    target: Side,
    shape: Shape,
    kinds: tuple[dict[str, Family], dict[str, Family]],
    modulus: int,
    bucket: int,
) -> list[Difference]:
    names = [name for name, _ in shape.key]
    sides = []
    for side, kind in zip((source, target), kinds, strict=True):
        values = ", ".join(
            f"{canonical(side.quote(n), kind.get(n, k), side.dialect)} AS {side.quote('_aetl_k' + str(i))}"
            for i, (n, k) in enumerate(shape.key)
        )
        sql = (
            f"SELECT * FROM ({_hashed(side, shape, kind, ', ' + values)}) AS _aetl_h WHERE k % {modulus} = {bucket}"
            f" ORDER BY k, h LIMIT {LIST_LIMIT + 1}"
        )
        rows: dict[tuple[Any, ...], list[int]] = {}
        for row in side.query(sql):
            rows.setdefault(tuple(row[2:]), []).append(int(row[0]))
        sides.append(rows)
    found = []
    for key in sorted(set(sides[0]) | set(sides[1]), key=lambda k: tuple("" if v is None else str(v) for v in k)):
        a, b = sorted(sides[0].get(key, [])), sorted(sides[1].get(key, []))
        if a == b:
            continue
        if len(a) != len(b) and a and b:
            what = f"{len(a)} in the source, {len(b)} in the target"
        else:
            what = "not in the source" if not a else "missing in the target" if not b else "values differ"
        found.append(Difference(dict(zip(names, (None if v is None else str(v) for v in key), strict=True)), what))
    return found
