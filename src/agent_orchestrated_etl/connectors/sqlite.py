"""SQLite as a source, read through ADBC so rows arrive as Arrow batches without Python objects."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from agent_orchestrated_etl.connectors.base import ConnectorSpec, Partition, Position, Source
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError, SourceNotFoundError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class SQLiteSourceSpec(ConnectorSpec):
    type: Literal["sqlite"]
    url: str | None = Field(None, description="sqlite:///relative.db or sqlite:////absolute.db")
    path: str | None = Field(None, description="The database file, instead of url.")
    table: str | None = Field(None, description="Read the whole table.")
    query: str | None = Field(None, description="Or read the result of a query.")

    @model_validator(mode="after")
    def _one_of_each(self) -> SQLiteSourceSpec:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if self.table is not None and not _IDENTIFIER.match(self.table):
            raise ValueError(f"table {self.table!r} is not a plain identifier; use query: for anything else")
        if self.url is not None and not self.url.startswith("sqlite:///"):
            raise ValueError("url must start with sqlite:/// (e.g. sqlite:///shop.db)")
        return self

    def rebased(self, base: Path) -> SQLiteSourceSpec:
        if self.url is not None and not os.path.isabs(os.path.expanduser(self.url.removeprefix("sqlite:///"))):
            return self.model_copy(update={"url": f"sqlite:///{base / self.url.removeprefix('sqlite:///')}"})
        return super().rebased(base)

    @property
    def database(self) -> Path:
        return Path(self.path if self.path is not None else self.url.removeprefix("sqlite:///")).expanduser()  # type: ignore[union-attr]


class SQLiteSource(Source):
    spec_model = SQLiteSourceSpec

    def describe(self) -> str:
        return f"sqlite {self.spec.database}" + (f" table {self.spec.table}" if self.spec.table else " query")

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        import adbc_driver_sqlite.dbapi as adbc

        database = self.spec.database
        if not database.exists():
            raise SourceNotFoundError(f"database file not found: {database}", where=f"source {self.name}", hint="check url/path in the spec")
        query = self.spec.query or f'SELECT * FROM "{self.spec.table}"'
        origin = f"{database}:{self.spec.table or 'query'}"
        # Open read-only through a URI so a typo never creates an empty database.
        with adbc.connect(f"file:{database}?mode=ro") as conn, conn.cursor() as cursor:
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(self.batch_rows)})
            try:
                cursor.execute(query)
            except Exception as exc:  # the driver raises its own DB-API error classes
                message = str(exc)
                if "no such table" in message:
                    raise SourceNotFoundError(message, where=f"source {self.name}", hint="check `table:`; `sqlite3 FILE .tables` lists them") from exc
                raise ConfigurationError(message, where=f"source {self.name}", hint="check `query:`") from exc
            reader = cursor.fetch_record_batch()
            row = 1
            try:
                for batch in reader:
                    yield batch, Position(origin=origin, row=row)
                    row += batch.num_rows
            except pa.ArrowInvalid as exc:
                # SQLite lets a column hold several types; ADBC fixes a column's type from the first batch.
                raise DataError(str(exc), where=f"source {self.name}", hint="CAST the column in a query: source") from exc
