"""Suggested checks are valid YAML, each with its reason, and hold on the data they came from."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from agent_orchestrated_etl.cli import app
from agent_orchestrated_etl.profiling.profile import profile_stream
from agent_orchestrated_etl.profiling.suggest import as_yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "transform"))
from chain_helpers import CHECKS, run_chain  # noqa: E402

NOW = datetime.now()
DATA = pa.table(
    {
        "order_id": list(range(1, 401)),
        "status": ["paid", "new", "refunded", "paid"] * 100,
        "amount": [round(i * 0.25, 2) for i in range(400)],
        "email": [f"c{i}@shop.example" if i % 40 else None for i in range(400)],
        "updated_at": [NOW - timedelta(hours=i) for i in range(400)],
    }
)


def test_suggestions_parse_as_checks_and_pass_on_their_own_data(tmp_path: Path) -> None:
    profile = profile_stream("orders", DATA.schema, iter(DATA.to_batches()))
    text = as_yaml(profile, "orders")
    parsed = yaml.safe_load(text)["quality"]
    checks = CHECKS.validate_python(parsed)
    kinds = [c.kind for c in checks]
    assert (
        kinds.count("not_null") == 5
        and "unique" in kinds
        and "accepted_values" in kinds
        and "regex" in kinds
        and "freshness" in kinds
    )
    assert {"row_count": {"min": 200}, "input": "orders"} in parsed
    assert {"accepted_values": {"column": "status", "values": ["new", "paid", "refunded"]}, "input": "orders"} in parsed
    assert {"not_null": ["email"], "threshold": 0.05, "input": "orders"} in parsed
    lines = text.splitlines()
    assert all(lines[i - 1].lstrip().startswith("# ") for i, line in enumerate(lines) if line.startswith("  - "))
    assert "# email looks like PII (email)" in text
    for check in parsed:
        check.pop("input")  # run_chain applies unnamed checks to its output
    verdicts = run_chain(tmp_path, DATA, checks=parsed).verdicts()
    assert all(passed for passed, _ in verdicts.values()), verdicts


def test_suggest_checks_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(DATA, tmp_path / "orders.parquet")
    assert app(["suggest-checks", str(tmp_path / "orders.parquet")], standalone_mode=False) in (0, None)
    printed = capsys.readouterr().out
    assert printed.startswith("# Suggested from a profile of")
    assert all(c["input"] == "orders" for c in yaml.safe_load(printed)["quality"])
