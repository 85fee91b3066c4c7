"""A SQL table or query as a source: ranges of one column as partitions, incremental windows.

Subclasses give ``stream(sql)``, their fastest path from a SELECT to Arrow
batches (binary COPY for PostgreSQL, connectorx for MySQL, ADBC for SQLite).
This class builds that SELECT. Bounds (partition ranges, the incremental
window) are values the source found itself or parsed from the spec into
numbers, dates and timestamps; they are rendered by SQLAlchemy's literal
renderer because COPY and connectorx take no bound parameters. Nothing a
spec says as text reaches the SQL except through ``query:`` itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pyarrow as pa
from typing_extensions import TypeVar  # default= (PEP 696) before Python 3.13

from agent_orchestrated_etl.connectors.base import Partition, Position, Source, SourceCapabilities
from agent_orchestrated_etl.connectors.incremental import Window, decode, encode, window_predicates
from agent_orchestrated_etl.connectors.sql.common import SQLSourceSpec, connection_error, engine, quote_table, redact
from agent_orchestrated_etl.exceptions import AgentETLError, ConfigurationError, InternalError

_TYPED = (int, float, Decimal, dt.date, dt.datetime)


Q = TypeVar("Q", bound=SQLSourceSpec, default=SQLSourceSpec)


class SQLSource(Source[Q]):
    """Reads ``table:`` or ``query:`` of a database; see the module docstring."""

    capabilities = SourceCapabilities(partitioned_reads=True, incremental=True)
    #: The scheme that names the database in messages.
    label: ClassVar[str] = "sql"

    def describe(self) -> str:
        return f"{self.label} {redact(self.url)} " + (f"table {self.spec.table}" if self.spec.table else "query")

    @property
    def where(self) -> str:
        return f"source {self.name}"

    @property
    def url(self) -> str:
        return self.spec.connection_url

    # -- SQL text -------------------------------------------------------------
    def _engine(self) -> Any:
        return engine(self.url)

    def quote(self, name: str) -> str:
        return quote_table(self._engine().dialect.identifier_preparer, name)

    def literal(self, value: Any) -> str:
        import sqlalchemy as sa

        if not isinstance(value, _TYPED) or isinstance(value, bool):
            raise ConfigurationError(
                f"bound {value!r} is not a number, date or timestamp",
                where=self.where,
                hint="partition and incremental columns must be numeric, date or timestamp columns",
            )
        return str(sa.literal(value).compile(dialect=self._engine().dialect, compile_kwargs={"literal_binds": True}))

    def bound(self, column: str, value: Any) -> Any:
        """A min or max the database returned for ``column``, as the value it stands for (SQLite returns dates as text)."""
        return value

    def relation(self) -> str:
        if self.spec.table:
            return self.quote(self.spec.table)
        if self.spec.query is None:
            raise InternalError(
                "it reads several tables (tables: or schema:) and was not expanded into one source per table before its read",
                where=self.where,
            )
        return f"({self.spec.query.strip().rstrip(';')}) AS _aetl_q"

    def columns(self) -> str:
        """The SELECT list, with a failure to look up the columns it casts mapped as any read's."""
        try:
            return self.select_list()
        except AgentETLError:
            raise
        except Exception as exc:  # each driver has its own exception classes
            raise connection_error(exc, self.url, self.where) from exc

    def select_list(self) -> str:
        """The SELECT list; dialects override it to cast types Arrow cannot hold as they come."""
        return "*"

    def select(self, predicates: list[str], *, relation: str | None = None) -> str:
        where = f" WHERE {' AND '.join(predicates)}" if predicates else ""
        return f"SELECT {self.columns()} FROM {relation or self.relation()}{where}"

    def _window_predicates(self, window: Window | None) -> list[str]:
        return [] if window is None else window_predicates(window, self.quote, self.literal)

    def raw(self, sql: str) -> str:
        """SQL for ``exec_driver_sql`` without parameters: "format" drivers would read a % in a query as a placeholder."""
        return sql.replace("%", "%%") if self._engine().dialect.paramstyle in ("format", "pyformat") else sql

    def _scalar(self, sql: str) -> list[Any]:
        try:
            with self._engine().connect() as conn:
                return list(conn.exec_driver_sql(self.raw(sql)).one())
        except Exception as exc:
            raise connection_error(exc, self.url, self.where) from exc

    # -- several tables (tables:, schema:; expanded by planning/expansion.py) ----------
    def table_names(self, schema: str | None) -> list[str]:
        """The base tables of ``schema`` (the connection's default schema when None); views are left out."""
        import sqlalchemy as sa

        try:
            return sorted(sa.inspect(self._engine()).get_table_names(schema=schema))
        except Exception as exc:
            raise connection_error(exc, self.url, self.where) from exc

    def primary_key(self, table: str) -> list[str]:
        """The primary key columns of ``table`` (`name` or `schema.name`), in key order; [] without one."""
        import sqlalchemy as sa

        schema, _, name = table.rpartition(".")
        try:
            return list(
                sa.inspect(self._engine()).get_pk_constraint(name, schema=schema or None)["constrained_columns"]
            )
        except Exception as exc:
            raise connection_error(exc, self.url, self.where) from exc

    # -- planning -------------------------------------------------------------
    def partitions(self, window: Window | None = None) -> list[Partition]:
        """One partition per range of ``partition.column``, bounds found with min/max.

        With an incremental window, the highest cursor now in the table becomes
        the window's end, so every partition reads the same slice of time
        however long the run takes.
        """
        if window is not None:
            (high,) = self._scalar(
                f"SELECT max({self.quote(window.cursor)}) FROM {self.relation()}"
                + (f" WHERE {self._window_predicates(window)[0]}" if window.start is not None else "")
            )
            window = dataclasses.replace(window, end=self.bound(window.cursor, high))
        base = {"window": window.as_dict()} if window is not None else {}
        spec = self.spec.partition
        if spec is None or spec.parts == 1:
            return [Partition(key="all", description=self.describe(), options=base)]
        preds = self._window_predicates(window)
        column = self.quote(spec.column)
        low, high = (
            self.bound(spec.column, v)
            for v in self._scalar(
                f"SELECT min({column}), max({column}) FROM {self.relation()}"
                + (f" WHERE {' AND '.join(preds)}" if preds else "")
            )
        )
        if low is None:
            return [Partition(key="all", description=f"{self.describe()} (empty)", options=base)]
        bounds = split(low, high, spec.parts)
        return [
            Partition(
                key=f"{spec.column}:{i + 1}/{len(bounds)}",
                description=f"{self.describe()} where {spec.column} in [{lo}, {'...' if hi is None else hi})",
                options={**base, "range": [encode(lo), encode(hi)], "first": i == 0},
            )
            for i, (lo, hi) in enumerate(bounds)
        ]

    def subdivide(self, partition: Partition) -> list[Partition] | None:
        """Two halves of a range partition, split where its rows are (min and max found now)."""
        if "range" not in partition.options:
            return None
        name = self._range_column(partition)
        column = self.quote(name)
        low, high = (
            self.bound(name, v)
            for v in self._scalar(
                f"SELECT min({column}), max({column}) FROM {self.relation()} WHERE {' AND '.join(self.predicates(partition))}"
            )
        )
        if low is None or low == high:
            return None
        halves = split(low, high, 2)
        if len(halves) < 2:
            return None
        lo, hi = partition.options["range"]
        (_, middle), _ = halves
        bounds = [(lo, encode(middle)), (encode(middle), hi)]
        return [
            Partition(
                key=f"{partition.key}.{i + 1}",
                description=f"{self.describe()} where {name} in [{decode(a)}, {'...' if b is None else decode(b)})",
                options={
                    **partition.options,
                    "range": [a, b],
                    "first": bool(partition.options.get("first")) and i == 0,
                    "split_depth": partition.options.get("split_depth", 0) + 1,
                },
            )
            for i, (a, b) in enumerate(bounds)
        ]

    def predicates(self, partition: Partition) -> list[str]:
        options = partition.options
        preds = self._window_predicates(Window.from_dict(options["window"])) if "window" in options else []
        if "range" in options:
            column = self.quote(self._range_column(partition))
            lo, hi = (decode(v) for v in options["range"])
            part = f"{column} >= {self.literal(lo)}" + (f" AND {column} < {self.literal(hi)}" if hi is not None else "")
            # Rows whose partition column is NULL belong to the first range, or no range would read them.
            preds.append(f"({part} OR {column} IS NULL)" if options.get("first") else f"({part})")
        return preds

    def _range_column(self, partition: Partition) -> str:
        """The column a range partition splits on; the spec must still say ``partition:`` when it is read."""
        if self.spec.partition is None:
            raise ConfigurationError(
                f"partition {partition.key} is a range of a column, but the source has no partition: now",
                where=self.where,
                hint="put back the source's partition: as it was when the run was planned, or start a new run",
            )
        return self.spec.partition.column

    # -- reading --------------------------------------------------------------
    def sql_for(self, partition: Partition) -> str:
        """The SELECT that reads one partition (also what a pushed-down copy runs in the database)."""
        return self.select(self.predicates(partition))

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        sql = self.sql_for(partition)
        origin = f"{self.label} {self.spec.table or 'query'}" + (
            "" if partition.key == "all" else f" [{partition.key}]"
        )
        row = 1
        try:
            for batch in rebatch(self.stream(sql), self.batch_rows):
                yield batch, Position(origin=origin, row=row)
                row += batch.num_rows
        except AgentETLError:
            raise
        except Exception as exc:  # each driver has its own exception classes
            raise connection_error(exc, self.url, self.where) from exc

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        """Arrow batches of ``sql``; this generic path goes through a server-side SQLAlchemy cursor."""
        with self._engine().connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=self.batch_rows).exec_driver_sql(sql)
            names = list(result.keys())
            schema: pa.Schema | None = None
            while rows := result.fetchmany(self.batch_rows):
                # The generic path has only Python rows to start from; fast paths never come here.
                columns = list(zip(*rows, strict=True))
                if schema is None:
                    batch = pa.RecordBatch.from_arrays([pa.array(c) for c in columns], names=names)
                    schema = batch.schema
                else:
                    batch = pa.RecordBatch.from_arrays(
                        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
                    )
                yield batch


def rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` as batches of exactly ``rows`` rows (the last one shorter; an empty one only
    when no row came, so that the schema of an empty table still reaches the destination).

    Drivers size their batches by bytes or by their own defaults; AGENT_ETL_BATCH_ROWS
    (and the recovery agent's smaller retries) only bound memory if every source keeps to it.
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    empty: pa.RecordBatch | None = None
    sent = False
    for batch in batches:
        if not batch.num_rows:
            empty = batch if empty is None else empty
            continue
        sent = True
        if not pending and batch.num_rows == rows:
            yield batch  # the driver already keeps to it: no copy
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < rows:
            continue
        table = pa.Table.from_batches(pending)
        start = 0
        while held - start >= rows:
            yield table.slice(start, rows).combine_chunks().to_batches()[0]
            start += rows
        pending = table.slice(start).to_batches() if held > start else []
        held -= start
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
    elif not sent and empty is not None:
        yield empty


def split(low: Any, high: Any, parts: int) -> list[tuple[Any, Any]]:
    """``parts`` half-open ranges covering [low, high]; the last has no upper bound."""
    if isinstance(low, dt.datetime) or isinstance(low, dt.date) and not isinstance(low, dt.datetime):
        span = high - low
        step = span / parts if isinstance(low, dt.datetime) else dt.timedelta(days=math.ceil((span.days + 1) / parts))
        if not step:
            return [(low, None)]
        edges: list[Any] = [low + step * i for i in range(parts)]
    elif isinstance(low, int):
        step = max(1, math.ceil((high - low + 1) / parts))
        edges = list(range(low, high + 1, step))
    elif isinstance(low, float | Decimal):
        if low == high:
            return [(low, None)]
        step = (high - low) / parts
        edges = [low + step * i for i in range(parts)]
    else:
        raise ConfigurationError(
            f"cannot split on values like {low!r}", hint="partition on a numeric, date or timestamp column"
        )
    edges = sorted(set(edges))
    return [(lo, edges[i + 1] if i + 1 < len(edges) else None) for i, lo in enumerate(edges)]
