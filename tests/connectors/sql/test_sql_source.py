"""SQL sources: partition ranges, type errors that name the column, identifiers and passwords."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.connectors.duckdb.spec import DuckDBSourceSpec
from agent_orchestrated_etl.connectors.postgres import PostgresSource, PostgresSourceSpec
from agent_orchestrated_etl.connectors.sql.common import redact, scrub
from agent_orchestrated_etl.connectors.sqlite.spec import SQLiteSourceSpec
from agent_orchestrated_etl.exceptions import AuthError, ConfigurationError, DataError, InternalError


def source(url: str, **spec: object) -> PostgresSource:
    return PostgresSource(
        "orders", PostgresSourceSpec.model_validate({"type": "postgres", "url": url, **spec}), batch_rows=1000
    )


def read_all(src: PostgresSource) -> tuple[list, pa.Table]:
    parts = src.partitions()
    return parts, pa.Table.from_batches([b for p in parts for b, _ in src.read(p)])


@pytest.fixture
def pg(pg_schema: tuple[str, str]) -> tuple[str, str, sa.Engine]:
    url, schema = pg_schema
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.t (id int, day date, v text)")
        conn.exec_driver_sql(
            f"INSERT INTO {schema}.t SELECT i, date '2024-01-01' + i, 'v' || i FROM generate_series(1, 1000) i"
        )
        conn.exec_driver_sql(f"INSERT INTO {schema}.t VALUES (NULL, NULL, 'no key')")
    return url, schema, engine


def test_numeric_partitions_cover_every_row_once_including_nulls(pg: tuple) -> None:
    url, schema, _ = pg
    parts, table = read_all(source(url, table=f"{schema}.t", partition={"column": "id", "parts": 4}))
    assert [p.key for p in parts] == ["id:1/4", "id:2/4", "id:3/4", "id:4/4"]
    assert [p.options["range"] for p in parts] == [[1, 251], [251, 501], [501, 751], [751, None]]
    assert table.num_rows == 1001
    assert sorted(i for i in table.column("id").to_pylist() if i is not None) == list(range(1, 1001))


def test_date_partitions(pg: tuple) -> None:
    url, schema, _ = pg
    parts, table = read_all(source(url, table=f"{schema}.t", partition={"column": "day", "parts": 3}))
    assert len(parts) == 3
    assert parts[0].options["range"][0] == {"date": "2024-01-02"}
    assert table.num_rows == 1001
    assert table.column("day").null_count == 1


def test_a_type_without_an_arrow_mapping_names_the_column_and_the_cast(pg: tuple) -> None:
    url, schema, engine = pg
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.odd (id int, addr inet, amount numeric)")
    with pytest.raises(DataError) as caught:
        read_all(source(url, table=f"{schema}.odd"))
    assert (
        str(caught.value)
        == "source orders: column addr: PostgreSQL type inet has no Arrow mapping (read it through query: with CAST(addr AS text) AS addr)"
    )
    with pytest.raises(
        DataError,
        match=r"column amount: it has no declared precision \(read it through query: with CAST\(amount AS numeric\(38, 9\)\) AS amount\)",
    ):
        read_all(source(url, query=f"SELECT id, addr::text AS addr, amount FROM {schema}.odd"))


@pytest.mark.parametrize(
    ("column", "value"), [("day", "infinity"), ("day", "-infinity"), ("at", "infinity"), ("at_tz", "-infinity")]
)
def test_infinity_is_refused_not_loaded_as_a_wrong_date(pg: tuple, column: str, value: str) -> None:
    url, schema, engine = pg
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.inf (id int, day date, at timestamp, at_tz timestamptz)")
        conn.exec_driver_sql(
            f"INSERT INTO {schema}.inf VALUES (1, '2024-01-01', '2024-01-01', '2024-01-01'), (2, NULL, NULL, NULL)"
        )
        conn.exec_driver_sql(f"UPDATE {schema}.inf SET {column} = '{value}' WHERE id = 2")
    with pytest.raises(DataError, match=f"column {column} holds infinity or -infinity.*CASE WHEN isfinite"):
        read_all(source(url, table=f"{schema}.inf"))
    hinted = f"SELECT id, CASE WHEN isfinite({column}) THEN {column} END AS {column} FROM {schema}.inf"
    _, table = read_all(source(url, query=hinted))
    assert table.column(column).null_count == 1


def test_enums_and_arrays_of_enums_arrive_as_text(pg: tuple) -> None:
    url, schema, engine = pg
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TYPE {schema}.mood AS ENUM ('sad', 'happy')")
        conn.exec_driver_sql(f"CREATE TABLE {schema}.m (id int, now {schema}.mood, past {schema}.mood[], at interval)")
        conn.exec_driver_sql(
            f"INSERT INTO {schema}.m VALUES (1, 'happy', ARRAY['sad', 'happy']::{schema}.mood[], interval '1 day 2 hours')"
        )
    _, table = read_all(source(url, table=f"{schema}.m"))
    assert table.schema.field("now").type == pa.string() and table.schema.field("past").type == pa.list_(pa.string())
    assert table.to_pylist()[0]["now"] == "happy" and table.to_pylist()[0]["past"] == ["sad", "happy"]
    assert table.to_pylist()[0]["at"] == pa.MonthDayNano([0, 1, 2 * 3600 * 10**9])


def test_table_names_are_validated_and_quoted() -> None:
    with pytest.raises(ValidationError, match="must be `name` or `schema.name`"):
        PostgresSourceSpec(type="postgres", url="postgresql://h/db", table='t"; DROP TABLE x; --')
    src = source("postgresql://h/db", table="Sales.Order")
    assert src.relation() == '"Sales"."Order"'


def test_passwords_never_show(postgres_url: str) -> None:
    url = "postgresql://postgres:s3cr3t-pw@127.0.0.1:5432/test"
    assert redact(url) == "postgresql://postgres:***@127.0.0.1:5432/test"
    assert (
        scrub(f"could not connect to {url}: password s3cr3t-pw refused", url)
        == "could not connect to postgresql://postgres:***@127.0.0.1:5432/test: password *** refused"
    )
    src = source(url.replace("postgres:s3cr3t", "nobody:s3cr3t"), table="t")
    assert "s3cr3t" not in src.describe()
    with pytest.raises(AuthError) as caught:
        src.partitions()
        read_all(src)
    assert "s3cr3t" not in str(caught.value)


def test_incremental_bounds_are_rendered_as_typed_literals(pg: tuple) -> None:
    url, schema, _ = pg
    src = source(url, table=f"{schema}.t")
    assert src.literal(dt.date(2024, 1, 2)) == "'2024-01-02'"
    with pytest.raises(Exception, match="is not a number, date or timestamp"):
        src.literal("1; DROP TABLE t")


def test_a_range_partition_read_without_partition_in_the_spec_says_so() -> None:
    # A resumed run replays the partitions it planned; the spec read now may have lost its partition:.
    planned = Partition(key="id:2/4", description="", options={"range": [250, 500], "first": False})
    with pytest.raises(ConfigurationError, match="no partition: now") as caught:
        source("postgresql://h/db", table="t").predicates(planned)
    assert "put back the source's partition:" in (caught.value.hint or "")


def test_a_source_of_several_tables_is_not_read_before_it_is_expanded() -> None:
    with pytest.raises(InternalError, match="not expanded into one source per table"):
        source("postgresql://h/db", tables=["a", "b"]).relation()


def test_duckdb_and_sqlite_name_their_database_by_a_url() -> None:
    duck = DuckDBSourceSpec(type="duckdb", path="/data/x.duckdb", table="t")
    lite = SQLiteSourceSpec(type="sqlite", path="/data/x.db", table="t")
    assert (duck.connection_url, lite.connection_url) == ("duckdb:////data/x.duckdb", "sqlite:////data/x.db")
    with pytest.raises(ValidationError, match="must be `name` or `schema.name`"):
        DuckDBSourceSpec(type="duckdb", path="x.duckdb", table="_agent_etl_stg_t")
