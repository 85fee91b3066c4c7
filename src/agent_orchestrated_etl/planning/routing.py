"""How the rows for one destination travel: the planner's choice, and the reason it records.

- ``source``: a source with no transform or check goes straight into staging, batch by batch;
- ``stream``: one source through streaming steps and row checks, each partition in its own task;
- ``single``: one source through a blocking step (dedupe, aggregate, sort) or a check that
  compares rows (unique): one task streams every partition into one DuckDB query, which
  spills, so nothing is staged;
- ``workspace``: several inputs (a join, a SQL transform, a referential check): the sources
  are staged in the run workspace first, in parallel, and one task runs the rest there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agent_orchestrated_etl.quality.checks import Check, ReferentialCheck
from agent_orchestrated_etl.transform.steps import JoinStep, TransformSpec


@dataclass(frozen=True)
class Route:
    kind: Literal["source", "stream", "single", "workspace"]
    #: Source to transform, ending with the destination's input (stream and single routes).
    chain: tuple[str, ...]
    #: Every source the destination needs (workspace route: the ones to stage).
    sources: tuple[str, ...]
    reason: str

    @property
    def source(self) -> str:
        return self.chain[0]


def checks_at(quality: Sequence[Check], name: str, *, final: bool) -> list[tuple[int, Check]]:
    """Checks evaluated where data is called ``name``; the unnamed ones apply to a destination's input."""
    return [(i, c) for i, c in enumerate(quality) if c.input == name or (c.input is None and final)]


def route(sources: set[str], transforms: list[TransformSpec], quality: Sequence[Check], target: str) -> Route:
    by_name = {t.name: t for t in transforms}
    chain = [target]
    while chain[0] in by_name and _linear(by_name[chain[0]]):
        chain.insert(0, by_name[chain[0]].input or "")
    needed = _needed_sources(sources, by_name, quality, target)
    checks = [(name, c) for name in chain for _, c in checks_at(quality, name, final=name == target)]
    if chain[0] not in sources or any(isinstance(c, ReferentialCheck) for _, c in checks):
        why = _several_inputs_reason(by_name, chain, checks)
        return Route("workspace", (), tuple(sorted(needed)), why)
    blocking = [
        f"{step.op} in transform {name}" for name in chain[1:] for step in by_name[name].steps or [] if step.blocking
    ]
    blocking += [
        f"check {c.label} on {name} compares rows across the whole input" for name, c in checks if c.level == "all_rows"
    ]
    if blocking:
        return Route(
            "single",
            tuple(chain),
            (chain[0],),
            f"{blocking[0]} needs every row at once; one DuckDB query reads all partitions and spills past its memory limit, so nothing is staged",
        )
    if len(chain) == 1 and not checks:
        return Route("source", tuple(chain), (chain[0],), f"it reads source {chain[0]} with no transform or check")
    what = f"transforms {', '.join(chain[1:])}" if len(chain) > 1 else "its checks"
    return Route(
        "stream",
        tuple(chain),
        (chain[0],),
        f"{what} work batch by batch, so each partition of {chain[0]} runs in its own task",
    )


def _linear(transform: TransformSpec) -> bool:
    return transform.steps is not None and not any(isinstance(s, JoinStep) for s in transform.steps)


def _needed_sources(
    sources: set[str], by_name: dict[str, TransformSpec], quality: Sequence[Check], target: str
) -> set[str]:
    needed: set[str] = set()
    pending, seen = [target], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in sources:
            needed.add(name)
        else:
            pending.extend(by_name[name].inputs or [])
        pending.extend(
            c.referential.target[0]
            for _, c in checks_at(quality, name, final=name == target)
            if isinstance(c, ReferentialCheck)
        )
    return needed


def _several_inputs_reason(by_name: dict[str, TransformSpec], chain: list[str], checks: list[tuple[str, Check]]) -> str:
    start = by_name.get(chain[0])
    if start is not None and start.sql is not None:
        why = f"SQL transform {start.name} reads {', '.join(start.inputs or [])}"
    elif start is not None:
        joined = [s.join.with_ for s in start.steps or [] if isinstance(s, JoinStep)]
        why = f"transform {start.name} joins {', '.join(joined)}"
    else:
        ref = next(c for _, c in checks if isinstance(c, ReferentialCheck))
        why = f"check {ref.label} reads {ref.referential.target[0]}"
    return f"{why}; the inputs are staged in the run workspace in parallel, and DuckDB spills past its memory limit"
