"""Every table of the CLI is readable at 80 and 100 columns: nothing runs off the edge, no id is cut."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """\
name: a_fairly_long_pipeline_name
sources:
  orders_with_a_long_name: {type: file, path: orders_with_a_long_name.csv}
quality:
  - {not_null: [note]}
destinations:
  - {type: duckdb, path: out.duckdb, table: lineitem_archive_one}
  - {type: duckdb, path: out2.duckdb, table: lineitem_archive_two}
"""
TASKS = [
    "orders_with_a_long_name[0]>lineitem_archive_one",
    "orders_with_a_long_name[0]>lineitem_archive_two",
]


def agent_etl(cwd: Path, columns: int, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def first_column(output: str, number: int = 1) -> str:
    """The cells of a column of a table's rows, joined: a folded name reads whole again."""
    return "".join(line.split("│")[number].strip() for line in output.splitlines() if line.startswith("│"))


def fits(output: str, columns: int) -> bool:
    return all(len(line) <= columns for line in output.splitlines()) and "…" not in first_column(output)


@pytest.mark.parametrize("columns", [80, 100])
def test_run_runs_runs_show_and_profile_fit_the_terminal(tmp_path: Path, columns: int) -> None:
    with (tmp_path / "orders_with_a_long_name.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_identifier_long", "customer_email_address", "amount", "created_at_timestamp", "note"])
        writer.writerows([i, f"user{i}@example.com", i * 1.5, "2024-01-01 10:00:00", "text"] for i in range(500))
    (tmp_path / "p.yaml").write_text(SPEC)

    run = agent_etl(tmp_path, columns, "run", "p.yaml")
    assert fits(run, columns), run
    [run_id] = re.findall(r"^run (\S+) ·", run, re.MULTILINE)
    summary = run.split("  committed")[0]
    assert all(task in first_column(summary) for task in TASKS), summary  # the two tasks told apart
    assert "quarantined" in summary  # dropped only after rows/s and seconds

    runs = agent_etl(tmp_path, columns, "runs")
    assert fits(runs, columns), runs
    assert run_id in runs.split()  # whole, on one line: `runs show` takes it as printed
    assert "a_fairly_long_pipeline_name" in first_column(runs, 2)

    shown = agent_etl(tmp_path, columns, "runs", "show", run_id)
    assert fits(shown, columns), shown
    tasks_table = shown.split("decisions")[0].split("tasks", 1)[1]
    assert all(task in first_column(tasks_table) for task in TASKS), tasks_table

    profile = agent_etl(tmp_path, columns, "profile", "orders_with_a_long_name.csv")
    assert fits(profile, columns), profile
    names = first_column(profile)
    assert all(n in names for n in ("order_identifier_long", "customer_email_address", "created_at_timestamp"))
    [head] = [line for line in profile.splitlines() if line.startswith("┃")]
    headers = [h.strip() for h in head.strip("┃").split("┃")]
    assert headers[:4] == ["column", "type", "nulls %", "distinct"]  # dropped last, after min, max, mean, top values
    assert len(headers) == (5 if columns == 80 else 6)
