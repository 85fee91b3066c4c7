"""Rich renderings of runs for the terminal: live progress, the summary, stored runs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent_orchestrated_etl.monitoring.live import RunState
from agent_orchestrated_etl.quality.verdicts import report
from agent_orchestrated_etl.run_result import RunResult

_STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "cancelled": "magenta", "pending": "dim"}


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def progress_table(state: RunState) -> Table:
    table = Table(title=f"{state.pipeline} · {state.run_id}", title_justify="left")
    for column in ("task", "agent", "status"):
        table.add_column(column)
    for column in ("rows", "rows/s"):
        table.add_column(column, justify="right")
    for task in state.tasks.values():
        status = _status(task.status) + (f" · {escape(task.note)}" if task.note and task.status == "running" else "")
        table.add_row(escape(task.id), task.agent or "", status, f"{task.rows:,}", f"{task.rows_per_second:,.0f}")
    return table


def summary(console: Console, result: RunResult) -> None:
    table = Table(
        title=f"run {result.run_id} · {result.pipeline} · {_status(result.status)} in {result.seconds:.1f}s",
        title_justify="left",
    )
    table.add_column("task")
    table.add_column("status")
    for column in ("read", "written", "quarantined", "seconds", "rows/s"):
        table.add_column(column, justify="right")
    for task in result.tasks:
        seconds = f"{task.seconds:.2f}" if task.seconds is not None else ""
        table.add_row(
            escape(task.id),
            _status(task.status),
            f"{task.rows:,}",
            f"{task.rows_written:,}",
            f"{task.rows_quarantined:,}",
            seconds,
            f"{task.rows_per_second:,.0f}",
        )
    console.print(table)
    for commit in result.commits:
        quarantined = f", {commit['quarantined_rows']:,} quarantined" if commit["quarantined_rows"] else ""
        console.print(f"  committed [bold]{escape(commit['destination'])}[/]: {commit['rows']:,} rows{quarantined}")
    if result.quality:
        console.print(quality_table(result.quality))


def quality_table(quality: list[dict[str, Any]]) -> Table:
    """Every check of a run: on what, for which destination, its verdict and why."""
    table = Table(title="quality", title_justify="left")
    table.add_column("check", overflow="fold")
    table.add_column("on > for")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in quality:
        if check["passed"]:
            verdict = "[green]pass[/]"
        else:
            verdict = "[red]FAIL[/]" if check["severity"] == "error" else "[yellow]warn[/]"
        table.add_row(
            escape(check["check"]), escape(f"{check['input']} > {check['scope']}"), verdict, escape(check["message"])
        )
    return table


def runs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="runs")
    for column in ("run id", "pipeline", "status", "started", "seconds", "written", "quarantined"):
        table.add_column(column)
    for row in rows:
        seconds = (row["finished_at"] - row["started_at"]).total_seconds() if row["finished_at"] else None
        table.add_row(
            row["run_id"],
            row["pipeline"],
            _status(row["status"]),
            f"{row['started_at']:%Y-%m-%d %H:%M:%S}",
            f"{seconds:.1f}" if seconds is not None else "",
            f"{row['rows_written'] or 0:,}",
            f"{row['rows_quarantined'] or 0:,}",
        )
    return table


def run_details(console: Console, run: dict[str, Any]) -> None:
    console.print(f"run [bold]{run['run_id']}[/] · pipeline {run['pipeline']} · {_status(run['status'])}")
    console.print(f"spec {escape(str(run['spec_file']))} (sha256 {str(run['spec_sha256'])[:12]})")
    if run["error"]:
        console.print(f"[red]error:[/] {escape(run['error'])}")
    if run.get("failure"):
        console.print(f"next step: {escape(run['failure']['next_step'])}", soft_wrap=True)
    tasks = Table(title="tasks", title_justify="left")
    for column in ("task", "kind", "status", "agent", "attempts", "read", "written", "quarantined", "error"):
        tasks.add_column(column)
    for t in run["tasks"]:
        tasks.add_row(
            escape(t["task_id"]),
            t["kind"],
            _status(t["status"]),
            t["agent"] or "",
            str(t["attempts"]),
            f"{t['rows_read'] or 0:,}",
            f"{t['rows_written'] or 0:,}",
            f"{t['rows_quarantined'] or 0:,}",
            escape(t["error"] or ""),
        )
    console.print(tasks)
    from agent_orchestrated_etl.verify.stored import latest

    quality = report([*(c for t in run["tasks"] for c in t.get("checks") or []), *latest(run["events"])])
    if quality:
        console.print(quality_table(quality))
    decisions = Table(title="decisions", title_justify="left")
    for column in ("by", "subject", "choice", "reason"):
        decisions.add_column(column)
    for event in run["events"]:
        if event["kind"] == "decision":
            decisions.add_row(
                event["sender"], escape(event["subject"]), escape(event["choice"]), escape(event["reason"])
            )
    console.print(decisions)
