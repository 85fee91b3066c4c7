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
from tests.connectors.server_fixtures import (  # noqa: F401 - the test servers' fixtures
    _fault_server,
    _fresh_host_state,
    fault_api,
    graphql_url,
    json_server_url,
    s3_server,
)

from agent_orchestrated_etl.connectors.base import Destination, Source
from agent_orchestrated_etl.connectors.registry import DESTINATIONS, SOURCES, destination_class, source_class

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


@dataclass
class SourceHarness:
    """Sources of one kind over ``ROWS`` rows with a unique ``id`` (1..ROWS), over none, and over nothing at all."""

    kind: str
    fields: dict[str, Any]
    empty: dict[str, Any]
    missing: dict[str, Any]
    #: Fields that split the read into several partitions (None: this kind declares no partitioned reads).
    partitioned: dict[str, Any] | None = None

    def source(self, fields: dict[str, Any]) -> Source:
        cls = source_class(self.kind)
        return cls("src", cls.spec_model.model_validate({"type": self.kind, **fields}), batch_rows=300)


ROWS = 1000


def _table_rows() -> pa.Table:
    ids = pa.array(range(1, ROWS + 1), pa.int64())
    return pa.table({"id": ids, "v": pa.array([f"row {i}" for i in range(1, ROWS + 1)])})


def _through_destination(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    """A database source over tables its own kind's destination wrote: one full, one emptied by a replace."""
    full, empty = make_harness(kind, request, tmp_path, "full"), make_harness(kind, request, tmp_path, "empty")
    data = _table_rows()
    full.load("r1", data.slice(0, ROWS // 2), data.slice(ROWS // 2))
    empty.load("r2", data.slice(0, 1))
    empty.load("r3", data.schema.empty_table(), write="replace", allow_empty=True)
    missing = {**full.source_fields, "table": full.source_fields["table"].replace("full", "nowhere")}
    partitioned = {**full.source_fields, "partition": {"column": "id", "parts": 4}}
    supports = source_class(kind).capabilities.partitioned_reads
    return SourceHarness(kind, full.source_fields, empty.source_fields, missing, partitioned if supports else None)


def _file_source(request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    import pyarrow.parquet as pq

    data, out, empty = _table_rows(), tmp_path / "full", tmp_path / "empty"
    out.mkdir()
    empty.mkdir()
    for i, start in enumerate(range(0, ROWS, 300)):  # one partition a file
        pq.write_table(data.slice(start, 300), out / f"part-{i}.parquet")
    pq.write_table(data.schema.empty_table(), empty / "part-0.parquet")
    full, missing = {"path": str(out / "*.parquet")}, {"path": str(tmp_path / "nowhere.parquet")}
    return SourceHarness("file", full, {"path": str(empty / "*.parquet")}, missing, full)


def _sql_source(request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    # type: sql reaches any SQLAlchemy URL; a SQLite file written by the sqlite destination is one.
    written = _through_destination("sqlite", request, tmp_path)
    fields = dict(written.fields)
    part = {**fields, "partition": {"column": "id", "parts": 4}}
    return SourceHarness("sql", fields, written.empty, written.missing, part)


def _rest_source(request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    url, _api = request.getfixturevalue("fault_api")
    fields = {"records": "results", "pagination": {"type": "offset", "total_path": "count"}}
    return SourceHarness(
        "rest",
        {"url": f"{url}/offset", **fields, "params": {"updated_gte": ""}},
        {"url": f"{url}/offset", **fields, "params": {"updated_gte": "9999"}},  # past every item's updated_at
        {"url": f"{url}/nowhere", **fields},
    )


GRAPHQL = (
    "query Items($first: Int, $after: String) { items(first: $first, after: $after)"
    " { edges { node { id name } } pageInfo { endCursor hasNextPage } } }"
)


# Starts past the last item; the cursor variable the source sends is not declared, so the server ignores it.
GRAPHQL_PAST_THE_END = (
    'query Items($first: Int) { items(first: $first, after: "1000000")'
    " { edges { node { id name } } pageInfo { endCursor hasNextPage } } }"
)


def _graphql_source(request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    url, elsewhere = request.getfixturevalue("graphql_url"), request.getfixturevalue("fault_api")[0]
    fields = {"url": url, "query": GRAPHQL, "connection": "items", "variables": {"first": 250}}
    return SourceHarness(
        "graphql",
        fields,
        {**fields, "query": GRAPHQL_PAST_THE_END},
        {**fields, "url": f"{elsewhere}/graphql"},  # a server with no GraphQL endpoint
    )


def _python_source(request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    from agent_orchestrated_etl.connectors.python import bind

    binding = bind({"full": _table_rows().to_pylist(), "empty": []})
    binding.__enter__()
    request.addfinalizer(lambda: binding.__exit__(None, None, None))
    return SourceHarness("python", {"ref": "full"}, {"ref": "empty"}, {"ref": "never_bound"})


#: One factory per registered source: the source over a known table, over an empty one, and over a missing one.
SOURCE_HARNESSES: dict[str, Callable[[pytest.FixtureRequest, Path], SourceHarness]] = {
    "duckdb": lambda request, tmp_path: _through_destination("duckdb", request, tmp_path),
    "sqlite": lambda request, tmp_path: _through_destination("sqlite", request, tmp_path),
    "postgres": lambda request, tmp_path: _through_destination("postgres", request, tmp_path),
    "mysql": lambda request, tmp_path: _through_destination("mysql", request, tmp_path),
    "file": _file_source,
    "sql": _sql_source,
    "rest": _rest_source,
    "graphql": _graphql_source,
    "python": _python_source,
}


@pytest.fixture(params=sorted(SOURCES))
def source_harness(request: pytest.FixtureRequest, tmp_path: Path) -> SourceHarness:
    kind = request.param
    if kind not in SOURCE_HARNESSES:
        pytest.fail(
            f"source {kind!r} is registered (connectors/registry.py) but the source contract has no harness for it:"
            " add a factory to SOURCE_HARNESSES in tests/connectors/conftest.py"
        )
    return SOURCE_HARNESSES[kind](request, tmp_path)


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


__all__ = [
    "HARNESSES",
    "KINDS",
    "ROWS",
    "SOURCE_HARNESSES",
    "Harness",
    "SourceHarness",
    "clickhouse_table",
    "make_harness",
    "unique",
]
