"""The live view shows what a running task waits for (an HTTP retry), and forgets it when the task moves on."""

from __future__ import annotations

from rich.console import Console

from agent_orchestrated_etl.model.messages import RunStarted, TaskFinished, TaskProgress, TaskStarted
from agent_orchestrated_etl.monitoring.live import RunState
from agent_orchestrated_etl.reports import progress_table


def rendered(state: RunState) -> str:
    console = Console(width=200, record=True)
    console.print(progress_table(state))
    return console.export_text()


def test_a_retry_note_shows_while_the_task_runs() -> None:
    state = RunState("r1")
    state.apply(
        RunStarted(
            sender="o",
            run_id="r1",
            pipeline="p",
            spec_sha256="x",
            tasks=[{"id": "items[0]>items", "kind": "extract_load"}],
        )
    )
    state.apply(TaskStarted(sender="etl-1", run_id="r1", task_id="items[0]>items", agent="etl-1", attempt=1))
    note = "attempt 1 failed (connection failed: ConnectError: All connection attempts failed); next in 0.2s"
    state.apply(TaskProgress(sender="etl-1", run_id="r1", task_id="items[0]>items", rows=0, bytes=0, note=note))
    assert state.tasks["items[0]>items"].to_dict()["note"] == note
    assert f"running · {note}" in rendered(state)
    state.apply(TaskProgress(sender="etl-1", run_id="r1", task_id="items[0]>items", rows=100, bytes=10))
    assert "attempt 1 failed" not in rendered(state)  # pages flow again
    state.apply(
        TaskFinished(
            sender="etl-1",
            run_id="r1",
            task_id="items[0]>items",
            rows_read=100,
            rows_written=100,
            rows_quarantined=0,
            bytes=10,
            seconds=1.0,
        )
    )
    assert state.tasks["items[0]>items"].note is None
