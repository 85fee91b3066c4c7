"""SQL sources keep to AGENT_ETL_BATCH_ROWS whatever their driver's own batch sizes (issue 14, item 3)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from tests.conftest import run_sql

from agent_orchestrated_etl.connectors.mysql import MySQLSource, MySQLSourceSpec
from agent_orchestrated_etl.connectors.postgres import PostgresSource, PostgresSourceSpec
from agent_orchestrated_etl.connectors.sql.source import rebatch

ROWS = 50_000


def _sizes(source: PostgresSource | MySQLSource) -> tuple[list[int], list[int]]:
    batches, rows = [], []
    for part in source.partitions():
        for batch, position in source.read(part):
            batches.append(batch.num_rows)
            rows.append(position.row)
    return batches, rows


@pytest.mark.parametrize("batch_rows", [1_000, 7_777, 60_000])
def test_postgres_batches_have_the_configured_size(pg_schema: tuple[str, str], batch_rows: int) -> None:
    # ADBC cuts batches by 16 MB of COPY data by default: about 190,000 of these rows.
    url, schema = pg_schema
    run_sql(
        url,
        f"CREATE TABLE {schema}.t (id int, v text)",
        f"INSERT INTO {schema}.t SELECT i, repeat('x', 40) FROM generate_series(1, {ROWS}) i",
    )
    spec = PostgresSourceSpec.model_validate({"type": "postgres", "url": url, "table": f"{schema}.t"})
    sizes, starts = _sizes(PostgresSource("t", spec, batch_rows=batch_rows))
    whole, rest = divmod(ROWS, batch_rows)
    assert sizes == [batch_rows] * whole + ([rest] if rest else [])
    assert starts == [1 + i * batch_rows for i in range(len(sizes))]


@pytest.mark.parametrize("batch_rows", [1_000, 7_777])
def test_mysql_batches_have_the_configured_size(mysql_database: str, batch_rows: int) -> None:
    run_sql(
        mysql_database,
        "CREATE TABLE t (id int, v text)",
        f"INSERT INTO t SELECT seq, repeat('x', 40) FROM seq_1_to_{ROWS}",
    )
    spec = MySQLSourceSpec.model_validate({"type": "mysql", "url": mysql_database, "table": "t"})
    sizes, _ = _sizes(MySQLSource("t", spec, batch_rows=batch_rows))
    whole, rest = divmod(ROWS, batch_rows)
    assert sizes == [batch_rows] * whole + ([rest] if rest else [])


def test_rebatch_joins_and_splits_in_order_and_drops_empty_batches() -> None:
    batches = [pa.record_batch({"i": list(range(a, b))}) for a, b in [(0, 3), (3, 3), (3, 10), (10, 11), (11, 25)]]
    out = list(rebatch(iter(batches), 4))
    assert [b.num_rows for b in out] == [4, 4, 4, 4, 4, 4, 1]
    assert [v for b in out for v in b.column("i").to_pylist()] == list(range(25))
    same = pa.record_batch({"i": [1, 2, 3, 4]})
    assert next(rebatch(iter([same]), 4)) is same
    nothing = pa.record_batch({"i": pa.array([], pa.int64())})
    assert list(rebatch(iter([nothing, nothing]), 4)) == [nothing]  # an empty table keeps its schema
