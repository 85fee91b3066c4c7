import json
from pathlib import Path

import pytest

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.exceptions import ConfigurationError, SpecError
from agent_orchestrated_etl.spec import json_schema, load_spec, parse_spec, resolve_env

GOOD = """\
name: shop_orders
sources:
  orders:    {type: sqlite, url: "sqlite:///shop.db", table: orders}
  customers: {type: file, path: data/customers.csv}
transforms:
  - name: enriched
    sql: SELECT o.*, c.email FROM orders o JOIN customers c USING (customer_id)
quality:
  - not_null: [order_id]
  - unique: [order_id]
destination: {type: duckdb, path: warehouse.duckdb, table: orders_enriched, write: merge, primary_key: [order_id]}
"""

THREE_MISTAKES = """\
name: shop_orders
sources:
  orders:
    type: sqlite
    url: "sqlite:///shop.db"
    table: orders
  customers:
    type: file
    delimiter: ";"
transforms:
  - name: enriched
    sql: SELECT * FROM orders JOIN customers USING (customer_id)
destination:
  type: duckdb
  path: warehouse.duckdb
  table: orders_enriched
  write: upsert
retry: {attempts: 0}
"""


def test_the_issue_example_is_valid_and_wired() -> None:
    spec = parse_spec(GOOD, file="p.yaml").pipeline
    assert spec.transforms[0].inputs == ["customers", "orders"]
    assert spec.destination.input == "enriched"
    assert [c.label for c in spec.quality] == ["not_null(order_id)", "unique(order_id)"]


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(THREE_MISTAKES, file="pipeline.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "pipeline.yaml:7: sources.customers.path: field required",
        "pipeline.yaml:17: destination.write: Input should be 'append', 'replace' or 'merge'",
        "pipeline.yaml:18: retry.attempts: Input should be greater than or equal to 1",
    ]


def test_validate_command_lists_all_problems_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(THREE_MISTAKES)
    code = app(["validate", str(spec)], standalone_mode=False)
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(str(spec))]
    assert [line.split(":")[1] for line in lines] == ["7", "17", "18"]


def test_unknown_types_and_fields_name_the_choices() -> None:
    text = GOOD.replace("type: file", "type: fil").replace(
        "table: orders_enriched", "table: orders_enriched, colour: red"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, file="p.yaml")
    messages = [str(p) for p in caught.value.problems]
    assert (
        messages[0]
        == "p.yaml:4: sources.customers: unknown type fil; expected one of 'duckdb', 'file', 'graphql', 'mysql',"
        " 'postgres', 'python', 'rest', 'sql', 'sqlite'"
    )
    assert messages[1].startswith("p.yaml:11: destination.colour: unknown field")


def test_yaml_syntax_errors_have_a_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("name: x\nsources: [\n", file="p.yaml")
    assert caught.value.problems[0].line == 3


def test_a_transform_reading_an_unknown_input_is_an_error() -> None:
    text = GOOD.replace("sql: SELECT", "inputs: [orders, refunds]\n    sql: SELECT")
    with pytest.raises(SpecError, match="reads 'refunds'"):
        parse_spec(text)


def test_env_references_resolve_at_run_time_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = GOOD.replace("data/customers.csv", '"${env:DATA_DIR}/customers.csv"')
    loaded = parse_spec(text)
    assert loaded.pipeline.sources["customers"].path == "${env:DATA_DIR}/customers.csv"
    monkeypatch.setenv("DATA_DIR", "/srv/data")
    assert resolve_env(loaded.pipeline).sources["customers"].path == "/srv/data/customers.csv"
    assert "${env:DATA_DIR}" in loaded.text  # the raw text, kept for the record, is untouched
    monkeypatch.delenv("DATA_DIR")
    with pytest.raises(ConfigurationError, match="DATA_DIR is not set") as caught:
        resolve_env(loaded.pipeline)
    assert caught.value.where == "sources.customers.path"


def test_relative_paths_are_relative_to_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(GOOD)
    spec = load_spec(tmp_path / "p.yaml").pipeline.rebased(tmp_path)
    assert spec.sources["customers"].path == str(tmp_path / "data/customers.csv")
    assert spec.sources["orders"].database == tmp_path / "shop.db"
    assert spec.destination.path == str(tmp_path / "warehouse.duckdb")


def test_json_schema_covers_connectors() -> None:
    schema = json.dumps(json_schema())
    assert '"sqlite"' in schema and '"duckdb"' in schema and '"primary_key"' in schema


SCHEMA_SOURCE = """\
name: crm_copy
sources:
  crm:
    type: postgres
    url: postgresql://etl@db/crm
    schema: public
    exclude: [audit_log]
destination:
  type: duckdb
  path: w.duckdb
  write: replace
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, file="p.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_schema_source_loads_into_a_destination_without_table() -> None:
    spec = parse_spec(SCHEMA_SOURCE).pipeline
    crm = spec.sources["crm"]
    assert (crm.schema_, crm.exclude, crm.reads_tables) == ("public", ["audit_log"], True)
    assert spec.destination.input == "crm" and spec.destination.table is None


def test_multi_table_mistakes_name_their_key_and_line() -> None:
    assert problems(SCHEMA_SOURCE.replace("    schema: public\n", "    table: orders\n    schema: public\n")) == [
        "p.yaml:3: sources.crm: give exactly one of table, query, tables or schema (not table and schema)"
    ]
    assert problems(SCHEMA_SOURCE.replace("  write: replace", "  write: replace\n  table: everything")) == [
        "p.yaml:12: destination.table: input 'crm' reads several tables, each into a table of its own name: drop table:"
        " (table_prefix: puts a prefix before each name)"
    ]
    single = SCHEMA_SOURCE.replace("    schema: public\n    exclude: [audit_log]\n", "    table: orders\n")
    assert problems(single) == [
        "p.yaml:7: destination.table: field required (only an input with tables: or schema: lands in tables named after"
        " its own)"
    ]
    assert problems(single.replace("  write: replace", "  table: orders\n  table_prefix: raw_")) == [
        "p.yaml:11: destination.table_prefix: table_prefix only applies when the input reads several tables (tables: or"
        " schema:); name the target with table:"
    ]
    assert problems(single.replace("  write: replace", "  table: orders\n  write: merge")) == [
        "p.yaml:7: destination.primary_key: write: merge needs primary_key: [column, ...]"
    ]
    assert problems(SCHEMA_SOURCE.replace("    exclude: [audit_log]", "    tables: [a, b, public.a]")) == [
        "p.yaml:7: sources.crm.tables: two tables would land in one destination table 'a'; read one of them through a"
        " source of its own"
    ]
    assert problems(SCHEMA_SOURCE.replace("    schema: public\n", "    tables: [a]\n")) == [
        "p.yaml:3: sources.crm: exclude only applies with schema:; list the tables you want under tables: instead"
    ]


def test_a_transform_cannot_read_a_multi_table_source_yet() -> None:
    text = SCHEMA_SOURCE.replace("destination:", "transforms:\n  - {name: t, sql: SELECT * FROM crm}\ndestination:")
    assert problems(text) == [
        "p.yaml:9: transforms[0]: transform 't' reads 'crm', which reads several tables; transforms over tables: or"
        " schema: are not supported yet: give the table a source of its own (table: ...)"
    ]


def test_a_file_destination_takes_one_table() -> None:
    text = SCHEMA_SOURCE.replace("  type: duckdb\n  path: w.duckdb", "  type: file\n  path: out")
    assert problems(text) == [
        "p.yaml:8: destination: a file destination takes one table, and input 'crm' reads several; load them into a"
        " database destination"
    ]
