"""Incremental windows: what each incremental source reads this run, from the state its destinations committed.

The window itself, and how a task applies it, live in connectors/incremental.py: sources
turn it into their own predicates. Here the planner picks its start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_orchestrated_etl.connectors.base import Destination
from agent_orchestrated_etl.connectors.incremental import Window, decode, state_key, window
from agent_orchestrated_etl.exceptions import ConfigurationError
from agent_orchestrated_etl.planning.plan import fed_by
from agent_orchestrated_etl.spec import PipelineSpec


def run_windows(spec: PipelineSpec, destinations: Sequence[Destination]) -> dict[str, Window]:
    """The windows of ``spec``'s incremental sources, each from the destinations its rows reach."""
    fed: dict[str, list[Destination]] = {}
    for index, dest in enumerate(destinations):
        for source in fed_by(spec, index):
            fed.setdefault(source, []).append(dest)
    return plan_windows(spec.name, spec.sources, fed)


def plan_windows(pipeline: str, sources: dict[str, Any], fed: dict[str, list[Destination]]) -> dict[str, Window]:
    """The window of each incremental source, from the state its destinations committed.

    ``fed`` maps a source name to the destinations its rows reach. When they
    disagree (one commit failed after another succeeded), the lowest mark
    wins: the destination that is ahead re-reads rows, which ``merge``
    absorbs; that is why ``lag`` and several destinations want ``write: merge``.
    """
    windows = {}
    for name, spec in sources.items():
        incremental = getattr(spec, "incremental", None)
        if incremental is None:
            continue
        where = f"source {name}"
        if incremental.lag is not None:
            for dest in fed.get(name, []):
                if dest.spec.write != "merge":
                    raise ConfigurationError(
                        f"incremental.lag re-reads rows already loaded, and destination {dest.describe()} "
                        f"has write: {dest.spec.write}",
                        where=where,
                        hint="use write: merge with a primary_key, or drop lag",
                    )
        states = [dest.read_state(state_key(pipeline, name)) for dest in fed.get(name, [])]
        windows[name] = window(incremental, _lowest(states), where=where)
    return windows


def _lowest(states: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if not states or any(s is None or s.get("value") is None for s in states):
        return None
    return min((s for s in states if s is not None), key=lambda s: decode(s["value"]))
