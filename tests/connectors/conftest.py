"""One harness per registered destination, so the contract suite runs the same tests over every one of them.

A harness makes a destination writing into a fresh place (a file, a
PostgreSQL schema, a MariaDB database) and the source that reads the same
table back; the suite writes through the destination and reads through the
source, so both directions are covered by one round trip. A destination with
no source of its kind (ClickHouse) reads back through ``read_back``, the
engine's own query of the table.

``KINDS`` is the registry's list of destinations: a destination registered
without a factory in ``HARNESSES`` fails the suite until one is added.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.connectors.base import Destination, Source
from agent_orchestrated_etl.connectors.registry import DESTINATIONS, destination_class, source_class
from server_fixtures import _fault_server, _fresh_host_state, fault_api, graphql_url, json_server_url, s3_server  # noqa: F401 - the test servers' fixtures

MB = 1 << 20


@dataclass
class Harness:
    kind: str
    destination_fields: dict[str, Any]
    source_fields: dict[str, Any]
    table: str
    #: How to read the target back when the registry has no source of this kind.
    read_back: Callable[[], pa.Table] | None = None

    def destination(self, **spec: Any) -> Destination:
        cls = destination_class(self.kind)
        model = cls.spec_model.model_validate({"type": self.kind, **self.destination_fields, **spec})
        return cls(model, memory_limit_bytes=256 * MB)

    def source(self, **spec: Any) -> Source:
        cls = source_class(self.kind)
        model = cls.spec_model.model_validate({"type": self.kind, **self.source_fields, **spec})
        return cls("src", model, batch_rows=50_000)

    def read(self, **spec: Any) -> pa.Table:
        if self.read_back is not None:
            return self.read_back()
        source = self.source(**spec)
        batches = [b for p in source.partitions() for b, _ in source.read(p)]
        return pa.Table.from_batches(batches) if batches else pa.table({})

    def load(self, run_id: str, *tasks: pa.Table | pa.RecordBatch, **spec: Any) -> int:
        dest = self.destination(**spec)
        try:
            for i, data in enumerate(tasks):
                dest.begin(run_id, f"t{i}")
                for batch in data.to_batches() if isinstance(data, pa.Table) else [data]:
                    dest.write_batch(run_id, f"t{i}", batch)
                dest.finish(run_id, f"t{i}")
            return dest.commit(run_id, [f"t{i}" for i in range(len(tasks))]).rows
        finally:
            dest.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    schema = unique("aetl")
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield postgres_url, schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def mysql_database(mysql_url: str) -> Iterator[str]:
    database = unique("aetl")
    engine = sa.create_engine(mysql_url.replace("mysql://", "mysql+pymysql://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    yield mysql_url.rsplit("/", 1)[0] + f"/{database}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {database}")
    engine.dispose()


def _duckdb(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Harness:
    path = str(tmp_path / "db.duckdb")
    return Harness("duckdb", {"path": path, "table": table}, {"path": path, "table": table}, table)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Harness:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    return Harness("sqlite", {"url": url, "table": table}, {"url": url, "table": table}, table)


def _file(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Harness:
    out = tmp_path / "files"
    return Harness("file", {"path": str(out)}, {"path": str(out / "*.parquet")}, table)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Harness:
    url, schema = request.getfixturevalue("pg_schema")
    fields = {"url": url, "table": f"{schema}.{table}"}
    return Harness("postgres", fields, fields, f"{schema}.{table}")


def _mysql(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Harness:
    url = request.getfixturevalue("mysql_database")
    return Harness("mysql", {"url": url, "table": table}, {"url": url, "table": table}, table)


def _clickhouse(request: pytest.FixtureRequest, tmp_path: Path, table: str) -> Harness:
    path, database = request.getfixturevalue("clickhouse_database")
    fields = {"path": path, "table": f"{database}.{table}"}
    return Harness("clickhouse", fields, {}, f"{database}.{table}", lambda: clickhouse_table(path, database, table))


@pytest.fixture(scope="session")
def _chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    # chdb opens one data directory per process, so every test shares one and gets a database of its own.
    return str(tmp_path_factory.mktemp("chdb"))


@pytest.fixture
def clickhouse_database(_chdb_path: str) -> Iterator[tuple[str, str]]:
    pytest.importorskip("chdb", reason="the clickhouse extra: pip install 'agent-orchestrated-etl[clickhouse]'")
    import chdb

    database = unique("aetl")
    yield _chdb_path, database
    conn = chdb.connect(_chdb_path)
    try:
        conn.query(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


def clickhouse_table(path: str, database: str, table: str) -> pa.Table:
    """A ClickHouse table as Arrow, each column as the type its ClickHouse type (and comment) stands for."""
    import chdb

    from agent_orchestrated_etl.connectors.clickhouse.types import arrow_type

    conn = chdb.connect(path)
    try:
        described = conn.query(
            "SELECT name, type, comment FROM system.columns WHERE database = {d:String} AND table = {t:String}"
            " ORDER BY position",
            "ArrowTable",
            params={"d": database, "t": table},
        ).to_pylist()
        if not described:
            return pa.table({})
        # Strings as bytes: ClickHouse has one String type for both, and the comment tells which was meant.
        data = conn.query(
            f"SELECT * FROM `{database}`.`{table}` SETTINGS output_format_arrow_string_as_string = 0", "ArrowTable"
        )
    finally:
        conn.close()
    columns = []
    for column, info in zip(data.columns, described, strict=True):
        wanted = arrow_type(info["type"], info["comment"])
        columns.append(column if wanted is None or column.type == wanted else column.cast(wanted))
    return pa.table(columns, names=data.column_names)


#: One factory per registered destination: a destination in a fresh place, and how to read its target back.
HARNESSES: dict[str, Callable[[pytest.FixtureRequest, Path, str], Harness]] = {
    "duckdb": _duckdb,
    "sqlite": _sqlite,
    "file": _file,
    "postgres": _postgres,
    "mysql": _mysql,
    "clickhouse": _clickhouse,
}

KINDS = sorted(DESTINATIONS)


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return make_harness(request.param, request, tmp_path)


def make_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path, table: str = "t") -> Harness:
    if kind not in HARNESSES:
        pytest.fail(
            f"destination {kind!r} is registered (connectors/registry.py) but the contract suite has no harness for it:"
            " add a factory to HARNESSES in tests/connectors/conftest.py"
        )
    return HARNESSES[kind](request, tmp_path, table)


__all__ = ["HARNESSES", "KINDS", "Harness", "clickhouse_table", "make_harness", "unique"]
