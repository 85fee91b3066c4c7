"""``agent-etl memory`` (search, show, forget the agents' episodes) and ``agent-etl init`` (a starter spec)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent_orchestrated_etl.exceptions import ConfigurationError

if TYPE_CHECKING:
    from agent_orchestrated_etl.agents.memory import Memory

memory_app = typer.Typer(
    help="The agents' memory of past runs, failures, recoveries and profiles, searched by meaning.",
    no_args_is_help=True,
)
out = Console()

TEMPLATES = ("postgres-to-duckdb", "api-to-postgres", "s3-to-warehouse", "files-to-parquet", "workflow")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _memory() -> Memory:
    # Imported here: numpy and the store stay out of the start of every other command.
    from agent_orchestrated_etl.agents.memory import memory_for
    from agent_orchestrated_etl.config import load_settings  # not at import: `agent-etl --help` stays light

    return memory_for(load_settings().store_url)


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help='What to look for, in words: "timeouts on the orders API".')],
    k: Annotated[int, typer.Option("--limit", "-k", min=1, max=100, help="How many episodes.")] = 5,
    kind: Annotated[str | None, typer.Option(help="Only run, failure, profile or note episodes.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The episodes nearest a query; one whose system or error class the query names comes first."""
    found = _memory().recall(query, k, kind=kind)
    if as_json:
        print(json.dumps([{**r.episode.as_dict(), "score": round(r.score, 4)} for r in found], default=str))
        return
    if not found:
        out.print("no episode in memory yet: runs leave theirs when they finish")
        return
    table = Table("id", "score", "kind", "when", "run", "episode")
    for r in found:
        e = r.episode
        table.add_row(str(e.id), f"{r.score:.3f}", e.kind, f"{e.at:%Y-%m-%d %H:%M}", e.run_id or "", escape(e.text))
    out.print(table)


@memory_app.command("show")
def memory_show(episode_id: Annotated[int, typer.Argument(help="An id from `agent-etl memory search`.")]) -> None:
    """One episode with its detail, as JSON."""
    episode = _memory().show(episode_id)
    if episode is None:
        raise ConfigurationError(
            f"no episode {episode_id} in memory", hint='find one with `agent-etl memory search "..."`'
        )
    print(json.dumps(episode.as_dict(), indent=2, default=str))


@memory_app.command("forget")
def memory_forget(
    before: Annotated[
        datetime, typer.Option(help="Forget episodes older than this date (UTC unless it has an offset).")
    ],
) -> None:
    """Delete the episodes from before a date (AGENT_ETL_MEMORY_RETENTION_DAYS does it as runs go)."""
    when = before if before.tzinfo else before.replace(tzinfo=UTC)
    gone = _memory().forget(when)
    out.print(f"forgot {gone} episode(s) from before {when.isoformat()}")


def init(
    template: Annotated[str, typer.Option(help=f"One of: {', '.join(TEMPLATES)}.")] = "files-to-parquet",
    output: Annotated[Path, typer.Option("--output", "-o", help="The spec to write.")] = Path("pipeline.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented starter spec to edit, then `agent-etl validate` it."""
    if template not in TEMPLATES:
        raise ConfigurationError(
            f"unknown template {template!r}",
            where="agent-etl init --template",
            hint=f"use one of {', '.join(TEMPLATES)}",
        )
    if output.exists() and not force:
        raise ConfigurationError(
            f"{output} exists already", where="agent-etl init", hint="give another --output, or --force to overwrite it"
        )
    text = resources.files("agent_orchestrated_etl").joinpath("templates", f"{template}.yaml").read_text()
    output.write_text(text)
    out.print(f"wrote {output} ({template}); next: agent-etl validate {output}")
