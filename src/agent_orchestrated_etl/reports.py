"""Rich renderings of runs for the terminal: live progress, the summary, stored runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from agent_orchestrated_etl.monitoring.live import RunState, TaskState
from agent_orchestrated_etl.quality.verdicts import report
from agent_orchestrated_etl.run_result import RunResult

_STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "cancelled": "magenta", "pending": "dim"}


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


#: A folding column (a task's name) is counted this wide when deciding which columns fit.
FOLD_WIDTH = 14


def fit(table: Table, width: int, drop: Sequence[str]) -> Table:
    """The table without the columns of ``drop``, dropped in that order, until it fits ``width``.

    Every other column keeps all its characters: a column made with ``overflow="fold"`` (a task's
    name, an error) wraps onto more lines, and the rest (a run id, a count) are never cut.
    """
    for header in (None, *drop):
        if header is not None:
            table.columns[:] = [c for c in table.columns if c.header != header]
        if _width(table) <= width:
            break
    return table


def _width(table: Table) -> int:
    """How wide ``table`` is once its folding columns are wrapped to ``FOLD_WIDTH``."""
    total = 0
    for column in table.columns:
        cells = [column.header, *column.cells]
        natural = max(Text.from_markup(c).cell_len if isinstance(c, str) else FOLD_WIDTH for c in cells)
        if column.overflow == "fold" and not column.no_wrap:
            natural = min(natural, FOLD_WIDTH)
        natural = max(natural, column.min_width or 0)
        total += min(natural, column.max_width or natural) + sum(table.padding[1::2])
    if table.box is None:
        return total
    return total + len(table.columns) - 1 + (2 if table.show_edge else 0)


def _name(header: str) -> Column:
    """A column of names (tasks, pipelines) that wraps rather than lose the part that tells two apart."""
    return Column(header, overflow="fold")


def _value(header: str, justify: Literal["left", "right"] = "left") -> Column:
    return Column(header, no_wrap=True, justify=justify)


#: Dropped in this order when the terminal is too narrow (README: "Narrow terminals").
PROGRESS_DROP = ("agent", "attempt", "quarantined", "elapsed", "rows/s")
SUMMARY_DROP = ("rows/s", "seconds")
RUNS_DROP = ("started", "seconds", "quarantined", "written")
TASKS_DROP = ("agent", "kind", "attempts", "written")
PROFILE_DROP = ("top values", "mean", "semantic", "max", "min")


def progress_table(state: RunState, width: int | None = None) -> Table | Text:
    """One frame of live progress: before the plan, what the run is doing; then a row per task."""
    if not state.tasks:
        doing = state.decisions[-1]["subject"] if state.decisions else "reading the spec"
        return Text(f"{state.pipeline or 'run'} · planning… ({doing}; connecting to the sources)", style="dim")
    table = Table(
        _name("task"),
        _value("agent"),
        _name("status"),
        *(_value(column, "right") for column in ("rows", "rows/s", "elapsed", "quarantined", "attempt")),
        # The run's total as the dashboard, the API and /metrics count it (RunState.source_rows).
        title=f"{state.pipeline} · {state.run_id} · {state.source_rows:,} rows read",
        title_justify="left",
    )
    now = time.monotonic()
    for task in state.tasks.values():
        table.add_row(
            escape(task.id),
            task.agent or "",
            _status(task.status) + _waiting(state, task),
            f"{task.rows:,}",
            f"{task.rows_per_second:,.0f}" if task.started is not None else "-",
            _elapsed(task, now),
            f"{task.rows_quarantined:,}" if task.status == "succeeded" else "-",
            str(task.attempt) if task.attempt else "-",
        )
    return fit(table, width, PROGRESS_DROP) if width is not None else table


def _elapsed(task: TaskState, now: float) -> str:
    if task.seconds is not None:
        return f"{task.seconds:.1f}s"
    return f"{now - task.started:.1f}s" if task.started is not None else "-"


def _waiting(state: RunState, task: TaskState) -> str:
    """What a task waits for: its progress note while it runs (an HTTP retry), its unfinished inputs before."""
    if task.status == "running" and task.note:
        return f" · {escape(task.note)}"
    if task.status == "pending":
        waits = [d for d in task.depends_on if d in state.tasks and state.tasks[d].status != "succeeded"]
        return f" · waits for {escape(', '.join(waits))}" if waits else " · waits for an agent"
    return ""


def summary(console: Console, result: RunResult) -> None:
    table = Table(
        _name("task"),
        _value("status"),
        *(_value(column, "right") for column in ("read", "written", "quarantined", "seconds", "rows/s")),
        title=f"run {result.run_id} · {result.pipeline} · {_status(result.status)} in {result.seconds:.1f}s",
        title_justify="left",
    )
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
    console.print(fit(table, console.width, SUMMARY_DROP))
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


def runs_table(rows: list[dict[str, Any]], width: int) -> Table:
    """Recent runs; the run id, which `runs show` takes, is never cut (its first characters are the start time)."""
    table = Table(
        _value("run id"),
        _name("pipeline"),
        _value("status"),
        _value("started"),
        *(_value(column, "right") for column in ("seconds", "written", "quarantined")),
        title="runs",
    )
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
    return fit(table, width, RUNS_DROP)


def run_details(console: Console, run: dict[str, Any]) -> None:
    console.print(f"run [bold]{run['run_id']}[/] · pipeline {run['pipeline']} · {_status(run['status'])}")
    console.print(f"spec {escape(str(run['spec_file']))} (sha256 {str(run['spec_sha256'])[:12]})")
    if run["error"]:
        console.print(f"[red]error:[/] {escape(run['error'])}")
    if run.get("failure"):
        console.print(f"next step: {escape(run['failure']['next_step'])}", soft_wrap=True)
    tasks = Table(
        _name("task"),
        _value("kind"),
        _value("status"),
        _value("agent"),
        _value("attempts", "right"),
        *(_value(column, "right") for column in ("read", "written", "quarantined")),
        _name("error"),
        title="tasks",
        title_justify="left",
    )
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
    console.print(fit(tasks, console.width, TASKS_DROP))
    from agent_orchestrated_etl.verify.stored import latest

    quality = report([*(c for t in run["tasks"] for c in t.get("checks") or []), *latest(run["events"])])
    if quality:
        console.print(quality_table(quality))
    decisions = Table(
        _value("by"), _name("subject"), _name("choice"), _name("reason"), title="decisions", title_justify="left"
    )
    for event in run["events"]:
        if event["kind"] == "decision":
            decisions.add_row(
                event["sender"], escape(event["subject"]), escape(event["choice"]), escape(event["reason"])
            )
    console.print(decisions)
