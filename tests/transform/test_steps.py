"""Each declarative op through the streaming engine, with its boundary cases."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from agent_orchestrated_etl.exceptions import DataError, StepError

sys.path.insert(0, str(Path(__file__).parent))
from chain_helpers import run_chain  # noqa: E402

ORDERS = pa.table(
    {
        "id": [1, 2, 2, 3, 4],
        "amount": ["10.50", "oops", "3", None, "7.25"],
        "email": ["ann@example.com", "bob@shop.org", None, "c@z.net", "dee@x.io"],
        "tags": [["a", "b"], [], None, ["c"], ["d", "e", "f"]],
        "ts": [5, 1, 9, 2, 3],
    }
)


def test_select_keeps_columns_in_the_given_order(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"select": ["email", "id"]}])
    assert out.table.column_names == ["email", "id"]
    assert out.table.column("id").to_pylist() == [1, 2, 2, 3, 4]


def test_select_of_an_unknown_column_names_it(tmp_path: Path) -> None:
    with pytest.raises(StepError, match=r"no column 'emial'") as caught:
        run_chain(tmp_path, ORDERS, [{"select": ["id", "emial"]}])
    assert caught.value.where == "transform t: step 1 (select emial)"
    assert caught.value.path == ("transforms", 0, "steps", 0, "select", "emial")


def test_rename(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"rename": {"amount": "amount_text", "id": "order_id"}}])
    assert out.table.column_names == ["order_id", "amount_text", "email", "tags", "ts"]


def test_cast_safe_turns_bad_values_into_nulls(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"cast": {"amount": "DECIMAL(10,2)"}, "mode": "safe"}])
    assert out.table.schema.field("amount").type == pa.decimal128(10, 2)
    assert [None if v is None else str(v) for v in out.table.column("amount").to_pylist()] == [
        "10.50",
        None,
        "3.00",
        None,
        "7.25",
    ]


def test_cast_strict_fails_naming_the_column_and_the_value(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        run_chain(tmp_path, ORDERS, [{"cast": {"amount": "DOUBLE"}}])
    assert "Could not convert string 'oops' to DOUBLE" in caught.value.message
    assert "amount" in caught.value.message
    assert caught.value.where == "transform t"
    assert "mode: safe" in (caught.value.hint or "")


def test_cast_to_an_unknown_type_is_a_step_error(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="Type with name DOUBLEE does not exist") as caught:
        run_chain(tmp_path, ORDERS, [{"cast": {"ts": "BIGINT", "amount": "DOUBLEE"}}])
    assert caught.value.path[-1] == "amount"


def test_filter_keeps_true_rows_only(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"filter": "ts >= 3 AND email IS NOT NULL"}])
    assert out.table.column("id").to_pylist() == [1, 4]


def test_filter_must_be_a_condition(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="the filter is int64, not a condition"):
        run_chain(tmp_path, ORDERS, [{"filter": "ts + 1"}])


def test_filter_of_every_row_gives_an_empty_output(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"filter": "false"}])
    assert out.table.num_rows == 0


def test_derive_adds_and_replaces_and_may_use_earlier_entries(tmp_path: Path) -> None:
    out = run_chain(
        tmp_path, ORDERS, [{"derive": {"ts": "ts * 10", "late": "ts > 40", "domain": "split_part(email, '@', 2)"}}]
    )
    assert out.table.column_names == ["id", "amount", "email", "tags", "ts", "late", "domain"]
    assert out.table.column("ts").to_pylist() == [50, 10, 90, 20, 30]
    assert out.table.column("late").to_pylist() == [True, False, True, False, False]
    assert out.table.column("domain").to_pylist() == ["example.com", "shop.org", None, "z.net", "x.io"]


def test_derive_with_a_typo_names_the_column_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(StepError) as caught:
        run_chain(tmp_path, ORDERS, [{"filter": "id > 0"}, {"derive": {"total": "amont || 'x'"}}])
    assert caught.value.path == ("transforms", 0, "steps", 1, "derive", "total")
    assert 'Referenced column "amont" not found' in caught.value.message
    assert 'Candidate bindings: "amount"' in caught.value.message
    assert "__agent_etl" not in caught.value.message


def test_fill_null(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"fill_null": {"email": "unknown", "amount": "0"}}])
    assert out.table.column("email").to_pylist() == [
        "ann@example.com",
        "bob@shop.org",
        "unknown",
        "c@z.net",
        "dee@x.io",
    ]
    assert out.table.column("amount").to_pylist()[3] == "0"


def test_fill_null_of_an_all_null_column(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([None, None], pa.int64())})
    out = run_chain(tmp_path, table, [{"fill_null": {"x": 7}}])
    assert out.table.column("x").to_pylist() == [7, 7]


def test_mask_styles_keep_nulls(tmp_path: Path) -> None:
    table = pa.table({"email": ["ann@example.com", None], "card": ["4111111111111111", "12"], "name": ["Ann", "Bo"]})
    out = run_chain(tmp_path, table, [{"mask": {"email": "email", "card": "last4", "name": "full"}}])
    assert out.rows() == [
        {"email": "a***@example.com", "card": "************1111", "name": "***"},
        {"email": None, "card": "12", "name": "**"},
    ]


def test_hash_is_salted_sha256_and_keeps_nulls(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"hash": ["email"], "salt": "pepper"}])
    expected = hashlib.sha256(b"pepperann@example.com").hexdigest()
    assert out.table.column("email").to_pylist()[0] == expected
    assert out.table.column("email").to_pylist()[2] is None


def test_a_literal_salt_reference_must_be_a_whole_env_reference() -> None:
    from pydantic import ValidationError

    from agent_orchestrated_etl.transform.steps import HashStep

    with pytest.raises(ValidationError, match="exactly one"):
        HashStep.model_validate({"hash": ["email"], "salt": "x${env:SALT}"})


def test_unnest_makes_a_row_per_element_and_drops_empty_and_null_lists(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"select": ["id", "tags"]}, {"unnest": "tags"}])
    assert out.rows() == [
        {"id": 1, "tags": "a"},
        {"id": 1, "tags": "b"},
        {"id": 3, "tags": "c"},
        {"id": 4, "tags": "d"},
        {"id": 4, "tags": "e"},
        {"id": 4, "tags": "f"},
    ]


def test_unnest_with_a_parent_key_makes_a_child_table(tmp_path: Path) -> None:
    lines = pa.array([[{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], [], None, [{"sku": "c", "qty": 3}]])
    table = pa.table({"id": [7, 8, 9, 10], "lines": lines, "tags": [["x"], ["y", "z"], [], None]})
    out = run_chain(tmp_path, table, [{"unnest": "lines", "parent_key": ["id"]}])
    assert out.rows() == [
        {"_parent_id": 7, "_index": 0, "sku": "a", "qty": 1},
        {"_parent_id": 7, "_index": 1, "sku": "b", "qty": 2},
        {"_parent_id": 10, "_index": 0, "sku": "c", "qty": 3},
    ]
    scalars = run_chain(tmp_path / "2", table, [{"unnest": "tags", "parent_key": ["id"]}])
    assert scalars.rows() == [
        {"_parent_id": 7, "_index": 0, "value": "x"},
        {"_parent_id": 8, "_index": 0, "value": "y"},
        {"_parent_id": 8, "_index": 1, "value": "z"},
    ]


def test_unnest_of_a_scalar_column_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="ts is int64, not a list"):
        run_chain(tmp_path, ORDERS, [{"unnest": "ts"}])


def test_dedupe_keeps_the_first_row_in_input_order_by_default(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"dedupe": ["id"]}, {"select": ["id", "ts"]}])
    # Blocking steps do not keep row order (sort: if it matters), so rows compare sorted.
    assert sorted(out.rows(), key=lambda r: r["id"]) == [
        {"id": 1, "ts": 5},
        {"id": 2, "ts": 1},
        {"id": 3, "ts": 2},
        {"id": 4, "ts": 3},
    ]


def test_dedupe_keep_last_by_an_order(tmp_path: Path) -> None:
    table = pa.table({"k": ["a", "a", "b", "a", "b"], "v": [3, 9, 1, 5, 1], "n": [1, 2, 3, 4, 5]})
    out = run_chain(tmp_path, table, [{"dedupe": {"keys": ["k"], "keep": "last", "order_by": "v"}}])
    # b ties on v: the later row in input order is "last".
    assert sorted(out.rows(), key=lambda r: r["k"]) == [{"k": "a", "v": 9, "n": 2}, {"k": "b", "v": 1, "n": 5}]
    first = run_chain(tmp_path / "2", table, [{"dedupe": {"keys": ["k"], "keep": "first", "order_by": ["v"]}}])
    assert sorted(first.rows(), key=lambda r: r["k"]) == [{"k": "a", "v": 3, "n": 1}, {"k": "b", "v": 1, "n": 3}]


def test_dedupe_treats_null_keys_as_one_key(tmp_path: Path) -> None:
    table = pa.table({"k": [None, 1, None], "n": [1, 2, 3]})
    out = run_chain(tmp_path, table, [{"dedupe": ["k"]}])
    assert sorted(out.rows(), key=lambda r: r["n"]) == [{"k": None, "n": 1}, {"k": 1, "n": 2}]


def test_dedupe_after_unnest_numbers_rows_again(tmp_path: Path) -> None:
    table = pa.table({"id": [1, 2], "tags": [["x", "x", "y"], ["x"]]})
    out = run_chain(tmp_path, table, [{"unnest": "tags"}, {"dedupe": ["id", "tags"]}])
    assert sorted(out.rows(), key=lambda r: (r["id"], r["tags"])) == [
        {"id": 1, "tags": "x"},
        {"id": 1, "tags": "y"},
        {"id": 2, "tags": "x"},
    ]


def test_aggregate_by_group_and_in_total(tmp_path: Path) -> None:
    out = run_chain(
        tmp_path,
        ORDERS,
        [{"aggregate": {"group_by": ["id"], "measures": {"n": "count(*)", "newest": "max(ts)"}}}, {"sort": ["id"]}],
    )
    assert out.rows() == [
        {"id": 1, "n": 1, "newest": 5},
        {"id": 2, "n": 2, "newest": 9},
        {"id": 3, "n": 1, "newest": 2},
        {"id": 4, "n": 1, "newest": 3},
    ]
    total = run_chain(
        tmp_path / "2", ORDERS, [{"aggregate": {"measures": {"rows": "count(*)", "emails": "count(email)"}}}]
    )
    assert total.rows() == [{"rows": 5, "emails": 4}]


def test_aggregate_over_empty_input(tmp_path: Path) -> None:
    out = run_chain(
        tmp_path, ORDERS, [{"filter": "false"}, {"aggregate": {"group_by": ["id"], "measures": {"n": "count(*)"}}}]
    )
    assert out.table.num_rows == 0
    total = run_chain(tmp_path / "2", ORDERS, [{"filter": "false"}, {"aggregate": {"measures": {"n": "count(*)"}}}])
    assert total.rows() == [{"n": 0}]


def test_aggregate_measure_errors_name_the_measure(tmp_path: Path) -> None:
    with pytest.raises(StepError) as caught:
        run_chain(tmp_path, ORDERS, [{"aggregate": {"group_by": ["id"], "measures": {"n": "count(*)", "bad": "ts"}}}])
    assert caught.value.path == ("transforms", 0, "steps", 0, "aggregate", "bad")
    assert "must appear in the GROUP BY clause" in caught.value.message


def test_sort(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"sort": ["ts DESC"]}, {"select": ["ts"]}])
    assert out.table.column("ts").to_pylist() == [9, 5, 3, 2, 1]


def test_python_step_maps_batches_and_rows_keep_positions(tmp_path: Path) -> None:
    steps = [{"python": "batch_functions:upper_email", "args": {"suffix": "!"}}]
    out = run_chain(tmp_path, ORDERS, steps, [{"not_null": ["email"]}])
    assert out.table.column("email").to_pylist() == ["ANN@EXAMPLE.COM!", "BOB@SHOP.ORG!", "C@Z.NET!", "DEE@X.IO!"]
    [rejected] = out.quarantine
    assert rejected["origin"] == "in.csv record 3" and rejected["check_name"] == "not_null(email)"


def test_python_step_that_drops_rows(tmp_path: Path) -> None:
    out = run_chain(tmp_path, ORDERS, [{"python": "batch_functions:even_ids"}, {"derive": {"x": "id * 2"}}])
    assert out.table.column("x").to_pylist() == [4, 4, 8]


def test_python_step_errors_name_the_function_and_batch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"raised ZeroDivisionError") as caught:
        run_chain(tmp_path, ORDERS, [{"python": "batch_functions:explode"}])
    assert caught.value.where == "transform t: step 1 (python), batch 1"


def test_empty_input_goes_through_every_step(tmp_path: Path) -> None:
    empty = ORDERS.slice(0, 0)
    steps = [{"filter": "id > 0"}, {"derive": {"x": "id + 1"}}, {"dedupe": ["id"]}, {"sort": ["id"]}]
    out = run_chain(tmp_path, empty, steps)
    assert out.table.num_rows == 0
