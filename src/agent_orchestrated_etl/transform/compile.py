"""Compile transform steps to DuckDB SQL, binding each step against its input's schema.

Every step becomes a SELECT over the previous one, so a chain of streaming steps
is a single query DuckDB runs as one pipeline. Each step is bound (not run) in a
``Binder``, a sandboxed DuckDB over empty tables of the input schemas, which
gives its output schema and names the step and the column of a bad expression
before any data moves. ``agent-etl validate`` and the run use the same code.

Python steps cannot be compiled; ``split_at_python`` cuts a chain around them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from agent_orchestrated_etl.exceptions import StepError
from agent_orchestrated_etl.transform import steps as s
from agent_orchestrated_etl.transform.sql import HIDDEN_PREFIX, ROW, ident, is_hidden, literal
from agent_orchestrated_etl.transform.workspace import sandboxed_connection

_DEDUPE_ROW = "__agent_etl_dedupe_row"


@dataclass(frozen=True)
class Relation:
    """A compiled relation: its SQL, its output schema (with hidden columns) and what its ROW means."""

    sql: str
    schema: pa.Schema
    #: ROW holds distinct values, so it can stand for the row (dedupe keeps rows by it).
    unique_rows: bool = False

    @property
    def has_row(self) -> bool:
        return ROW in self.schema.names

    @property
    def columns(self) -> list[str]:
        return [n for n in self.schema.names if not is_hidden(n)]

    def subquery(self) -> str:
        return f"({self.sql}\n)"  # the newline ends a `-- comment` the SQL may end with


def duckdb_message(exc: Exception) -> str:
    """DuckDB's first line, plus its suggestion of a column or function name when it makes one."""
    lines = str(exc).splitlines()
    hints = [line.strip() for line in lines[1:] if line.strip().startswith(("Candidate bindings", "Did you mean"))]
    # The engine's hidden columns are no name a user should be told to use.
    hints = [re.sub(r',? ?"__agent_etl_\w+"', "", hint).replace(": ,", ":") for hint in hints]
    return " ".join([lines[0], *hints[:1]]) if lines else str(exc)


class Binder:
    """A sandboxed DuckDB holding empty stand-ins of the inputs, for binding SQL without data."""

    def __init__(self) -> None:
        self._conn = sandboxed_connection(memory_limit_bytes=256 << 20, threads=1)
        self.variables: dict[str, str] = {}

    def stand_in(self, name: str, schema: pa.Schema) -> None:
        self._conn.register(name, schema.empty_table())

    def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value
        self._conn.execute(f"SET VARIABLE {ident(name)} = ?", [value])

    def parse(self, sql: str) -> None:
        """Raise duckdb.ParserException if ``sql`` is not valid syntax (no binding)."""
        self._conn.extract_statements(sql)

    def statement_type(self, sql: str) -> str:
        """The kind of the one statement in ``sql`` (SELECT, COPY, ATTACH...); raises on several."""
        statements = self._conn.extract_statements(sql)
        if len(statements) != 1:
            raise duckdb.ParserException(f"expected one statement, found {len(statements)}")
        return statements[0].type.name

    def bind(self, sql: str) -> pa.Schema:
        """The output schema of ``sql``; raises duckdb.Error when it does not bind."""
        # An expression closing our parenthesis and adding a statement must not reach execute().
        if self.statement_type(sql) != "SELECT":
            raise duckdb.ParserException("an expression must not end the query")
        return self._conn.execute(f"SELECT * FROM ({sql}\n) LIMIT 0").to_arrow_table().schema

    def evaluate(self, sql: str) -> None:
        """Run ``sql`` (a SELECT over the stand-ins, a row at most) for the errors only execution raises."""
        if self.statement_type(sql) != "SELECT":
            raise duckdb.ParserException("an expression must not end the query")
        self._conn.execute(sql).fetchall()

    def close(self) -> None:
        self._conn.close()


def expression_problem(text: str) -> str | None:
    """Why ``text`` is not exactly one SQL expression, or None.

    Pasted into a query, ``true UNION ALL SELECT ...`` or ``x) OR (y`` would change the query
    around it; parsed alone, they are refused as what they are.
    """
    try:
        duckdb.SQLExpression(text)
    except duckdb.Error as exc:
        message = duckdb_message(exc)
        if "Expected a single SELECT" in message:  # DuckDB's words for a query or a second statement
            return "a query or a statement where one expression belongs"
        return message
    return None


@dataclass
class StepCompiler:
    """Compiles the steps of one transform; ``resolve`` gives other inputs (for joins) by name."""

    binder: Binder
    transform: str
    index: int  # the transform's position in the spec, for YAML paths
    resolve: Callable[[str], Relation]

    def where(self, number: int, step: s._Step, key: str | None = None) -> str:
        place = f"transform {self.transform}: step {number + 1} ({step.op}"
        return place + (f" {key})" if key else ")")

    def fail(
        self, exc: Exception | str, number: int, step: s._Step, key: str | None = None, hint: str | None = None
    ) -> StepError:
        message = duckdb_message(exc) if isinstance(exc, Exception) else exc
        path: tuple[str | int, ...] = ("transforms", self.index, "steps", number, step.op)
        return StepError(message, path=(*path, key) if key else path, where=self.where(number, step, key), hint=hint)

    def _expr(self, text: str, number: int, step: s._Step, key: str | None = None) -> str:
        """A user's expression, parenthesized, once DuckDB has parsed it as exactly one expression."""
        if (problem := expression_problem(text)) is not None:
            what = f"{step.op} {key}" if key else step.op
            hint = f"the {what} is one SQL expression over the input's columns"
            raise self.fail(problem, number, step, key, hint=hint)
        return f"({text}\n)"

    def _bind(self, sql: str, number: int, step: s._Step, key: str | None = None, **flags: bool) -> Relation:
        try:
            return Relation(sql, self.binder.bind(sql), **flags)
        except duckdb.Error as exc:
            raise self.fail(exc, number, step, key) from None

    def _need(self, rel: Relation, columns: list[str], number: int, step: s._Step) -> None:
        for column in columns:
            if column not in rel.columns:
                raise self.fail(f"no column {column!r}; the input has {rel.columns}", number, step, column)

    def compile(self, rel: Relation, number: int, step: s._Step) -> Relation:
        method = getattr(self, f"_{step.op}")
        return method(rel, number, step)

    def _select(self, rel: Relation, number: int, step: s.SelectStep) -> Relation:
        self._need(rel, step.select, number, step)
        keep = [*step.select, *(n for n in rel.schema.names if is_hidden(n))]
        return self._bind(
            f"SELECT {', '.join(ident(c) for c in keep)} FROM {rel.subquery()}",
            number,
            step,
            unique_rows=rel.unique_rows,
        )

    def _rename(self, rel: Relation, number: int, step: s.RenameStep) -> Relation:
        self._need(rel, list(step.rename), number, step)
        pairs = ", ".join(f"{ident(old)} AS {ident(new)}" for old, new in step.rename.items())
        return self._bind(f"SELECT * RENAME ({pairs}) FROM {rel.subquery()}", number, step, unique_rows=rel.unique_rows)

    def _replace(self, rel: Relation, number: int, step: s._Step, exprs: dict[str, str]) -> Relation:
        """Replace columns in place, binding each expression alone so an error names its column."""
        self._need(rel, list(exprs), number, step)
        for column, expr in exprs.items():
            self._bind(f"SELECT {expr} AS {ident(column)} FROM {rel.subquery()}", number, step, column)
        replaced = ", ".join(f"{expr} AS {ident(column)}" for column, expr in exprs.items())
        return self._bind(
            f"SELECT * REPLACE ({replaced}) FROM {rel.subquery()}", number, step, unique_rows=rel.unique_rows
        )

    def _cast(self, rel: Relation, number: int, step: s.CastStep) -> Relation:
        function = "TRY_CAST" if step.mode == "safe" else "CAST"
        return self._replace(rel, number, step, {c: f"{function}({ident(c)} AS {t})" for c, t in step.cast.items()})

    def _fill_null(self, rel: Relation, number: int, step: s.FillNullStep) -> Relation:
        return self._replace(
            rel, number, step, {c: f"coalesce({ident(c)}, {literal(v)})" for c, v in step.fill_null.items()}
        )

    def _mask(self, rel: Relation, number: int, step: s.MaskStep) -> Relation:
        exprs = {}
        for column, style in step.styles.items():
            text = f"CAST({ident(column)} AS VARCHAR)"
            if style == "email":  # keep the first character and the domain: j***@example.com
                exprs[column] = f"regexp_replace({text}, '^(.)[^@]*', '\\1***')"
            elif style == "last4":
                exprs[column] = f"repeat('*', greatest(length({text}) - 4, 0)) || right({text}, 4)"
            else:
                exprs[column] = f"repeat('*', length({text}))"
        return self._replace(rel, number, step, exprs)

    def _hash(self, rel: Relation, number: int, step: s.HashStep) -> Relation:
        # The salt reaches DuckDB as a session variable, so it never appears in SQL text or errors.
        variable = f"agent_etl_salt_{self.transform}_{number}"
        self.binder.set_variable(variable, step.salt)
        salted = f"getvariable('{variable}')"
        return self._replace(
            rel, number, step, {c: f"sha256({salted} || CAST({ident(c)} AS VARCHAR))" for c in step.hash}
        )

    def _filter(self, rel: Relation, number: int, step: s.FilterStep) -> Relation:
        condition = self._expr(step.filter, number, step)
        out = self._bind(f"SELECT * FROM {rel.subquery()} WHERE {condition}", number, step, unique_rows=rel.unique_rows)
        test = self._bind(f"SELECT {condition} AS f FROM {rel.subquery()}", number, step).schema
        if not pa.types.is_boolean(test.field("f").type) and not pa.types.is_null(test.field("f").type):
            raise self.fail(f"the filter is {test.field('f').type}, not a condition", number, step)
        return out

    def _derive(self, rel: Relation, number: int, step: s.DeriveStep) -> Relation:
        for column, text in step.derive.items():
            expr = self._expr(text, number, step, column)
            if column in rel.columns:
                sql = f"SELECT * REPLACE ({expr} AS {ident(column)}) FROM {rel.subquery()}"
            else:
                sql = f"SELECT *, {expr} AS {ident(column)} FROM {rel.subquery()}"
            rel = self._bind(sql, number, step, column, unique_rows=rel.unique_rows)
        return rel

    def _unnest(self, rel: Relation, number: int, step: s.UnnestStep) -> Relation:
        self._need(rel, [step.unnest], number, step)
        if not pa.types.is_list(rel.schema.field(step.unnest).type) and not pa.types.is_large_list(
            rel.schema.field(step.unnest).type
        ):
            raise self.fail(
                f"{step.unnest} is {rel.schema.field(step.unnest).type}, not a list", number, step, step.unnest
            )
        column = ident(step.unnest)
        if step.parent_key is None:
            return self._bind(f"SELECT * REPLACE (unnest({column}) AS {column}) FROM {rel.subquery()}", number, step)
        # The child table of connectors/nested.py's unnest shape, from rows already loaded,
        # so a parent and its child tables come from one read of the source.
        self._need(rel, step.parent_key, number, step)
        hidden = [ident(n) for n in rel.schema.names if is_hidden(n)]
        keys = [f"{ident(k)} AS {ident('_parent_' + k)}" for k in step.parent_key]
        element = ident(HIDDEN_PREFIX + "element")
        inner = ", ".join(
            [*hidden, *keys, f"generate_subscripts({column}, 1) - 1 AS _index", f"unnest({column}) AS {element}"]
        )
        fields = (
            f"unnest({element})"
            if pa.types.is_struct(rel.schema.field(step.unnest).type.value_type)
            else f"{element} AS value"
        )
        outer = ", ".join([*hidden, *(ident("_parent_" + k) for k in step.parent_key), "_index", fields])
        return self._bind(f"SELECT {outer} FROM (SELECT {inner} FROM {rel.subquery()})", number, step)

    def _sort(self, rel: Relation, number: int, step: s.SortStep) -> Relation:
        for item in step.sort:
            self._bind(f"SELECT * FROM {rel.subquery()} ORDER BY {item}", number, step, item)
        return self._bind(
            f"SELECT * FROM {rel.subquery()} ORDER BY {', '.join(step.sort)}", number, step, unique_rows=rel.unique_rows
        )

    def _aggregate(self, rel: Relation, number: int, step: s.AggregateStep) -> Relation:
        options = step.aggregate
        self._need(rel, options.group_by, number, step)
        by = [ident(c) for c in options.group_by]
        measures = {name: self._expr(text, number, step, name) for name, text in options.measures.items()}
        for name, expr in measures.items():
            self._bind(
                f"SELECT {', '.join([*by, f'{expr} AS {ident(name)}'])} FROM {rel.subquery()}{_group(by)}",
                number,
                step,
                name,
            )
        items = [*by, *(f"{expr} AS {ident(name)}" for name, expr in measures.items())]
        if rel.has_row:  # a group is found again by its first row
            items.append(f"min({ident(ROW)}) AS {ident(ROW)}")
        return self._bind(
            f"SELECT {', '.join(items)} FROM {rel.subquery()}{_group(by)}", number, step, unique_rows=rel.has_row
        )

    def _join(self, rel: Relation, number: int, step: s.JoinStep) -> Relation:
        options = step.join
        other = self.resolve(options.with_)
        left_keys, right_keys = zip(*options.pairs, strict=True)
        self._need(rel, list(left_keys), number, step)
        for key in right_keys:
            if key not in other.columns:
                raise self.fail(f"no column {key!r} in {options.with_}; it has {other.columns}", number, step, "on")
        taken = options.columns if options.columns is not None else [c for c in other.columns if c not in right_keys]
        for column in taken:
            if column not in other.columns:
                raise self.fail(
                    f"no column {column!r} in {options.with_}; it has {other.columns}", number, step, "columns"
                )
        if options.how in ("semi", "anti"):
            taken = []
        clash = sorted(set(taken) & set(rel.columns))
        if clash:
            raise self.fail(
                f"{options.with_} brings columns the input already has: {clash}",
                number,
                step,
                "columns",
                hint="list `columns:` to take, or rename them in an earlier step",
            )
        on = " AND ".join(f"l.{ident(a)} = r.{ident(b)}" for a, b in options.pairs)
        picked = "".join(f", r.{ident(c)}" for c in taken)
        sql = (
            f"SELECT l.*{picked} FROM {rel.subquery()} AS l {options.how.upper()} JOIN {other.subquery()} AS r ON {on}"
        )
        return self._bind(sql, number, step, unique_rows=rel.unique_rows and options.how in ("semi", "anti"))

    def _dedupe(self, rel: Relation, number: int, step: s.DedupeStep) -> Relation:
        options = step.dedupe
        self._need(rel, [*options.keys, *options.order_by], number, step)
        if rel.unique_rows:
            row, source, drop = ident(ROW), rel.sql, ""
        else:  # number the rows in arrival order; DuckDB streams row_number() OVER () without sorting
            row, drop = ident(_DEDUPE_ROW), f" EXCLUDE ({ident(_DEDUPE_ROW)})"
            source = f"SELECT *, row_number() OVER () AS {row} FROM {rel.subquery()}"
        if options.order_by:
            order = ", ".join([*(ident(c) for c in options.order_by), row])
            pick = f"{'arg_min' if options.keep == 'first' else 'arg_max'}({row}, ({order}))"
        else:
            pick = f"{'min' if options.keep == 'first' else 'max'}({row})"
        keys = ", ".join(ident(k) for k in options.keys)
        # The survivors are found by row number, so the aggregate keeps one integer per key
        # and spills like any hash aggregate, whatever the width of the rows.
        sql = (
            f"WITH _dedupe_{number} AS MATERIALIZED ({source}) SELECT *{drop} FROM _dedupe_{number}"
            f" WHERE {row} IN (SELECT {pick} FROM _dedupe_{number} GROUP BY {keys})"
        )
        return self._bind(sql, number, step, unique_rows=rel.unique_rows)


_PRAGMA = re.compile(r"(\s|--[^\n]*(\n|$)|/\*.*?\*/)*PRAGMA\b", re.IGNORECASE | re.DOTALL)


def _without_final_semicolon(sql: str) -> str:
    """The query without a closing ``;`` (comments after it included), so it can be a subquery."""
    tokens = duckdb.tokenize(sql)
    if tokens and sql[tokens[-1][0]] == ";":
        return sql[: tokens[-1][0]]
    return sql


def _group(by: list[str]) -> str:
    return f" GROUP BY {', '.join(by)}" if by else ""


def compile_sql(binder: Binder, transform: s.TransformSpec, index: int, inputs: dict[str, Relation]) -> Relation:
    """A ``sql:`` transform over its inputs, which it sees by name without hidden columns."""
    assert transform.sql is not None
    body = _without_final_semicolon(transform.sql)
    try:
        kind = binder.statement_type(body)
    except duckdb.Error as exc:
        raise StepError(
            duckdb_message(exc), path=("transforms", index, "sql"), where=f"transform {transform.name}"
        ) from None
    if _PRAGMA.match(body):  # DuckDB parses a PRAGMA as a SELECT of a pragma function, which cannot nest
        raise StepError(
            "a sql: transform is one SELECT query over its inputs, not a PRAGMA",
            path=("transforms", index, "sql"),
            where=f"transform {transform.name}",
            hint="select from the inputs by name (SELECT ... FROM orders); a table's columns: agent-etl profile",
        )
    if kind != "SELECT":
        raise StepError(
            f"a sql: transform is one SELECT query, not {body.split()[0].upper()}",
            path=("transforms", index, "sql"),
            where=f"transform {transform.name}",
            hint="transforms cannot write files, attach databases or install extensions; a destination writes the result",
        )
    ctes = []
    for name, rel in inputs.items():
        hidden = [n for n in rel.schema.names if is_hidden(n)]
        exclude = f" EXCLUDE ({', '.join(ident(h) for h in hidden)})" if hidden else ""
        ctes.append(f"{ident(name)} AS (SELECT *{exclude} FROM {rel.subquery()})")
    sql = f"WITH {', '.join(ctes)} SELECT * FROM ({body}\n)" if ctes else body
    try:
        return Relation(sql, binder.bind(sql))
    except duckdb.Error as exc:
        raise StepError(
            duckdb_message(exc),
            path=("transforms", index, "sql"),
            where=f"transform {transform.name}",
            hint="fix the transform's sql:",
        ) from None


def split_at_python(steps: list[s._Step]) -> list[list[tuple[int, s._Step]] | tuple[int, s.PythonStep]]:
    """Runs of SQL-compilable steps (with their numbers), and each python step alone between them."""
    parts: list[list[tuple[int, s._Step]] | tuple[int, s.PythonStep]] = []
    for number, step in enumerate(steps):
        if isinstance(step, s.PythonStep):
            parts.append((number, step))
        elif parts and isinstance(parts[-1], list):
            parts[-1].append((number, step))
        else:
            parts.append([(number, step)])
    return parts
