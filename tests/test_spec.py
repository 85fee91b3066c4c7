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
    text = GOOD.replace("type: file", "type: fil").replace("table: orders_enriched", "table: orders_enriched, colour: red")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, file="p.yaml")
    messages = [str(p) for p in caught.value.problems]
    assert messages[0] == "p.yaml:4: sources.customers: unknown type fil; expected one of 'duckdb', 'file', 'graphql', 'mysql', 'postgres', 'rest', 'sql', 'sqlite'"
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
    text = GOOD.replace("data/customers.csv", "\"${env:DATA_DIR}/customers.csv\"")
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
