"""MySQL and MariaDB as a source: connectorx, streamed (the destination's bulk path is in ``client.py``).

connectorx turns the MySQL wire protocol into Arrow batches in Rust, streamed
with ``return_type="arrow_stream"``, so memory follows the batch size. Types
come from ``SHOW COLUMNS`` first: DECIMAL is selected as text and cast to its
exact ``decimal128(p, s)`` (connectorx would round to scale 10), TIMESTAMP is
read in UTC and marked so, JSON is marked as JSON, and a type with no Arrow
mapping (geometry, ...) is refused with the cast to use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property

import pyarrow as pa

from agent_orchestrated_etl.connectors.mysql.spec import MySQLSourceSpec
from agent_orchestrated_etl.connectors.sql.source import SQLSource
from agent_orchestrated_etl.connectors.sql.types import cast_columns
from agent_orchestrated_etl.exceptions import DataError, MissingDependencyError

_NATIVE = re.compile(
    r"^(tinyint|smallint|mediumint|int|integer|bigint|float|double|real|char|varchar|tinytext|text|mediumtext|longtext|"
    r"binary|varbinary|tinyblob|blob|mediumblob|longblob|date|time|datetime|timestamp|year|enum|set|bit|uuid|bool|boolean)\b"
)


def connectorx_url(url: str) -> str:
    head, _, rest = url.partition("://")
    return f"mysql://{rest}"


class MySQLSource(SQLSource[MySQLSourceSpec]):
    spec_model = MySQLSourceSpec
    label = "mysql"

    @cached_property
    def _layout(self) -> tuple[str, dict[str, pa.DataType]]:
        """The SELECT list and the Arrow type each specially read column must end as."""
        with self._engine().connect() as conn:
            if self.spec.table:
                described = conn.exec_driver_sql(f"SHOW COLUMNS FROM {self.quote(self.spec.table)}").all()
            else:
                conn.exec_driver_sql(
                    self.raw(f"CREATE TEMPORARY TABLE _aetl_probe AS SELECT * FROM {self.relation()} LIMIT 0")
                )
                described = conn.exec_driver_sql("SHOW COLUMNS FROM _aetl_probe").all()
                conn.exec_driver_sql("DROP TEMPORARY TABLE _aetl_probe")
        listed: list[str] = []
        casts: dict[str, pa.DataType] = {}
        for name, declared, *_ in described:
            declared = declared.lower()
            column = self.quote(name)
            if match := re.match(r"^decimal\((\d+),(\d+)\)", declared):
                precision, scale = int(match.group(1)), int(match.group(2))
                casts[name] = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
                listed.append(f"CAST({column} AS CHAR) AS {column}")
            elif declared.startswith("timestamp"):
                casts[name] = pa.timestamp("us", tz="UTC")
                listed.append(column)
            elif declared == "json":  # MySQL's own JSON; MariaDB's is a longtext and arrives as text
                casts[name] = pa.json_(pa.string())
                listed.append(column)
            elif _NATIVE.match(declared):
                listed.append(column)
            else:
                raise DataError(
                    f"column {name}: MySQL type {declared} has no Arrow mapping",
                    where=self.where,
                    hint=f"read it through query: with CAST({name} AS CHAR) AS {name} (or ST_AsText for geometry)",
                )
        return ", ".join(listed), casts

    def select_list(self) -> str:
        return self._layout[0]

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        try:
            import connectorx
        except ImportError:
            raise MissingDependencyError("MySQL", "mysql") from None
        casts = self._layout[1]
        reader = connectorx.read_sql(
            connectorx_url(self.spec.url),
            sql,
            return_type="arrow_stream",
            batch_size=self.batch_rows,
            pre_execution_query=["SET time_zone = '+00:00'"],
        )
        for batch in reader:
            yield cast_columns(batch, casts) if casts else batch
