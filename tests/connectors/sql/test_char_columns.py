"""char(n) from PostgreSQL and MariaDB lands without its pad spaces in every destination (docs/databases.md)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import run_sql
from tests.connectors.conftest import KINDS, make_harness

from agent_orchestrated_etl.connectors.mysql import MySQLSource, MySQLSourceSpec
from agent_orchestrated_etl.connectors.postgres import PostgresSource, PostgresSourceSpec

VALUES = "('TRUCK', 1), ('MAIL ', 2), ('', 3), (NULL, 4)"


def _read(source: PostgresSource | MySQLSource) -> pa.Table:
    return pa.Table.from_batches([b for p in source.partitions() for b, _ in source.read(p)])


@pytest.mark.parametrize("origin", ["postgres", "mysql"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_destination_stores_char_n_without_its_pad_spaces(
    origin: str, kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if origin == "postgres":
        url, schema = request.getfixturevalue("pg_schema")
        run_sql(
            url, f"CREATE TABLE {schema}.modes (mode char(10), id int)", f"INSERT INTO {schema}.modes VALUES {VALUES}"
        )
        source = PostgresSource(
            "modes",
            PostgresSourceSpec.model_validate({"type": "postgres", "url": url, "table": f"{schema}.modes"}),
            batch_rows=100,
        )
    else:
        url = request.getfixturevalue("mysql_database")
        run_sql(url, "CREATE TABLE modes (mode char(10), id int)", f"INSERT INTO modes VALUES {VALUES}")
        source = MySQLSource(
            "modes", MySQLSourceSpec.model_validate({"type": "mysql", "url": url, "table": "modes"}), batch_rows=100
        )
    data = _read(source)
    assert data.column("mode").to_pylist() == ["TRUCK", "MAIL", "", None]
    harness = make_harness(kind, request, tmp_path, table="stored")
    assert harness.load("r1", data) == 4
    back = harness.read().sort_by("id")
    assert back.column("mode").to_pylist() == ["TRUCK", "MAIL", "", None]
