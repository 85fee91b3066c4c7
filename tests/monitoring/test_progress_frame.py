"""The live progress frame: something at once, then per task its rows, rate, elapsed, quarantined, attempt, wait."""

from __future__ import annotations

from rich.console import Console

from agent_orchestrated_etl.model.messages import RunStarted, TaskFinished, TaskStarted
from agent_orchestrated_etl.monitoring.live import RunState
from agent_orchestrated_etl.reports import progress_table


def rendered(state: RunState, width: int) -> str:
    console = Console(width=width, record=True)
    console.print(progress_table(state, width))
    return console.export_text()


def test_the_first_frame_says_the_run_is_planning_before_any_task_exists() -> None:
    frame = rendered(RunState(run_id=""), 80)
    assert "planning…" in frame and "connecting to the sources" in frame


def test_each_task_shows_rows_rate_elapsed_quarantined_attempt_and_what_it_waits_for() -> None:
    state = RunState("r1")
    tasks = [
        {"id": "orders[0]>workspace", "kind": "stage"},
        {"id": "totals>out", "kind": "transform_load", "depends_on": ["orders[0]>workspace"]},
        {"id": "lines[0]>out", "kind": "extract_load"},
    ]
    state.apply(RunStarted(sender="o", run_id="r1", pipeline="p", spec_sha256="x", tasks=tasks))
    state.apply(TaskStarted(sender="etl-1", run_id="r1", task_id="orders[0]>workspace", agent="etl-1", attempt=2))
    state.apply(TaskStarted(sender="etl-2", run_id="r1", task_id="lines[0]>out", agent="etl-2", attempt=1))
    state.apply(
        TaskFinished(
            sender="etl-2",
            run_id="r1",
            task_id="lines[0]>out",
            rows_read=1200,
            rows_written=1190,
            rows_quarantined=10,
            bytes=1,
            seconds=2.0,
            checks=[],
        )
    )
    wide = rendered(state, 160)
    header = next(line for line in wide.splitlines() if "task" in line and "rows/s" in line)
    assert all(h in header for h in ("rows", "rows/s", "elapsed", "quarantined", "attempt"))
    [orders] = [line for line in wide.splitlines() if line.startswith("│ orders[0]>workspace")]
    assert "running" in orders and "│       2 │" in orders  # attempt 2
    [totals] = [line for line in wide.splitlines() if "totals>out" in line]
    assert "pending · waits for orders[0]>workspace" in totals
    [lines] = [line for line in wide.splitlines() if "lines[0]>out" in line]
    assert "1,200" in lines and "600" in lines and "2.0s" in lines and "│          10 │" in lines
    assert "p · r1 · 1,200 rows read" in wide  # the run's total, as the dashboard and the API count it

    narrow = rendered(state, 80)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert "rows" in narrow
