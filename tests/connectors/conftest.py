"""One harness per connector, so the contract suite runs the same tests over every source and destination.

A harness makes a destination writing into a fresh place (a file, a
PostgreSQL schema, a MariaDB database) and the source that reads the same
table back; the suite writes through the destination and reads through the
source, so both directions are covered by one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.connectors.base import Destination, Source
from agent_orchestrated_etl.connectors.registry import destination_class, source_class
from server_fixtures import _fault_server, _fresh_host_state, fault_api, graphql_url, json_server_url, s3_server  # noqa: F401 - the test servers' fixtures

MB = 1 << 20


@dataclass
class Harness:
    kind: str
    destination_fields: dict[str, Any]
    source_fields: dict[str, Any]
    table: str

    def destination(self, **spec: Any) -> Destination:
        cls = destination_class(self.kind)
        model = cls.spec_model.model_validate({"type": self.kind, **self.destination_fields, **spec})
        return cls(model, memory_limit_bytes=256 * MB)

    def source(self, **spec: Any) -> Source:
        cls = source_class(self.kind)
        model = cls.spec_model.model_validate({"type": self.kind, **self.source_fields, **spec})
        return cls("src", model, batch_rows=50_000)

    def read(self, **spec: Any) -> pa.Table:
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


KINDS = ["duckdb", "sqlite", "file", "postgres", "mysql"]


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return make_harness(request.param, request, tmp_path)


def make_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path, table: str = "t") -> Harness:
    if kind == "duckdb":
        path = str(tmp_path / "db.duckdb")
        return Harness(kind, {"path": path, "table": table}, {"path": path, "table": table}, table)
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        return Harness(kind, {"url": url, "table": table}, {"url": url, "table": table}, table)
    if kind == "file":
        out = tmp_path / "files"
        return Harness(kind, {"path": str(out)}, {"path": str(out / "*.parquet")}, table)
    if kind == "postgres":
        url, schema = request.getfixturevalue("pg_schema")
        return Harness(kind, {"url": url, "table": f"{schema}.{table}"}, {"url": url, "table": f"{schema}.{table}"}, f"{schema}.{table}")
    url = request.getfixturevalue("mysql_database")
    return Harness(kind, {"url": url, "table": table}, {"url": url, "table": table}, table)


__all__ = ["Harness", "make_harness", "unique"]
