"""Turn a pipeline spec into a plan: a DAG of tasks (tasks.py), and the decisions that shaped it.

A task is the unit of placement, retry and checkpoint. Three kinds:
- ``extract_load``: one partition of a source streamed (through streaming transforms
  and checks) into a destination's staging;
- ``stage``: one partition of a source written into the run workspace, for a transform;
- ``transform_load``: a transform's result streamed into a destination; it reads the
  workspace, or (with ``source`` and ``partitions`` set) every partition of one source itself;
- ``pushdown``: one partition copied by the destination's engine itself (``Destination.pull``),
  chosen when no Python step (quality check, incremental window) sits between source and destination.
How the rows for a destination travel is chosen in ``routing.py``, except that a
source several destinations need is read once when it is staged in the run workspace
anyway (for a transform) or costly to read twice (``Source.reread_cost``: an API): it is
staged once and every one of those destinations reads the workspace (a parent table and
the child tables an ``unnest`` step with ``parent_key`` makes from it).
Each destination is committed once every task feeding it has finished.
"""

from __future__ import annotations

from typing import Any

from agent_orchestrated_etl.connectors.base import Partition, Source
from agent_orchestrated_etl.connectors.incremental import Window
from agent_orchestrated_etl.planning.preflight import preflight
from agent_orchestrated_etl.planning.routing import route
from agent_orchestrated_etl.planning.tasks import Plan, PlannedDecision, Task
from agent_orchestrated_etl.quality.engine import engine_blocker
from agent_orchestrated_etl.spec import PipelineSpec


def fed_by(spec: PipelineSpec, index: int) -> set[str]:
    """The sources whose rows reach destination ``index`` (directly or through transforms)."""
    transforms = {t.name: t for t in spec.transforms}

    def needed(name: str) -> set[str]:
        return {name} if name in spec.sources else set().union(*(needed(i) for i in transforms[name].inputs or []))

    return needed(spec.all_destinations[index].input)


def destination_label(spec: PipelineSpec, index: int) -> str:
    dest = spec.all_destinations[index]
    label = getattr(dest, "table", None) or f"{dest.type}{index}"
    labels = [getattr(d, "table", None) or f"{d.type}{i}" for i, d in enumerate(spec.all_destinations)]
    return label if labels.count(label) == 1 else f"{label}{index}"


def pushdown_blocker(
    spec: PipelineSpec, index: int, sources: dict[str, Source], windows: dict[str, Window], *, partitions: int
) -> str | None:
    """Why destination ``index`` must receive batches through Python; None when its engine may copy by itself."""
    from agent_orchestrated_etl.connectors.registry import destination_class

    dest = spec.all_destinations[index]
    source: Any = spec.sources.get(dest.input)  # the union of source specs is built at run time (spec.py)
    if source is None:
        return "it reads a transform"
    if source.type not in destination_class(dest.type).capabilities.pulls_from:
        return f"a {dest.type} destination cannot read {source.type} by itself"
    if (reason := sources[dest.input].pushdown_blocker()) is not None:
        return reason
    if dest.input in windows:
        return "the incremental window filters its batches"
    checks = [c for c in spec.quality if c.input in (dest.input, None)]
    if checks and (reason := engine_checks_blocker(spec, index, partitions)) is not None:
        return f"quality checks run on its batches: {reason}"
    return None


def engine_checks_blocker(spec: PipelineSpec, index: int, partitions: int) -> str | None:
    """Why destination ``index``'s checks cannot run as SQL over its staged rows in its own engine (None: they can).

    Only a DuckDB destination evaluates them (it stages the raw rows, then flags,
    quarantines and deletes in SQL); a destination reading a transform keeps the
    checks with the transform's batches.
    """
    dest = spec.all_destinations[index]
    if dest.type != "duckdb":
        return f"a {dest.type} destination does not evaluate checks itself"
    if dest.input not in spec.sources:
        return "it reads a transform"
    return engine_blocker([c for c in spec.quality if c.input in (dest.input, None)], partitions)


def make_plan(
    spec: PipelineSpec, sources: dict[str, Source], windows: dict[str, Window] | None = None, *, pushdown: bool = True
) -> Plan:
    """The task DAG; ``windows`` are the incremental windows of the sources that have one."""
    if spec.transforms or spec.quality:
        preflight(spec, sources)  # a bad expression fails the run before any task, with its step and column
    plan = Plan(tasks=[])
    windows = windows or {}
    # Only incremental sources, whose partitions() take a window, have one.
    partitions = {
        name: source.partitions(windows[name]) if name in windows else source.partitions()  # type: ignore[call-arg]
        for name, source in sources.items()
    }
    for name, win in windows.items():
        start = "the beginning" if win.start is None else f"{win.cursor} {'>' if win.strict else '>='} {win.start}"
        skipped = f", skipping {len(win.exclude)} row(s) already loaded at that value" if win.exclude else ""
        plan.decisions.append(
            PlannedDecision(
                f"source {name}",
                f"read incrementally from {start}{skipped}",
                (
                    "the destination committed this high-water mark with the last run's data"
                    if win.previous
                    else "no state committed yet"
                ),
            )
        )
    for name, parts in partitions.items():
        if len(parts) > 1:
            plan.decisions.append(
                PlannedDecision(
                    f"source {name}",
                    f"read in {len(parts)} parallel tasks",
                    f"it has {len(parts)} independent partitions ({sources[name].describe()})",
                )
            )

    staged: dict[str, list[str]] = {}
    read_once = _read_once(spec, sources)
    for name, (labels, cost) in read_once.items():
        plan.decisions.append(
            PlannedDecision(
                f"source {name}",
                f"read once into the run workspace for destinations {', '.join(labels)}",
                f"{cost}; each destination then reads the staged rows",
            )
        )
    for index, dest in enumerate(spec.all_destinations):
        label = destination_label(spec, index)
        subject = f"destination {label}"
        way = route(set(sources), spec.transforms, spec.quality, dest.input)
        shared = sorted(set(way.sources) & read_once.keys())
        if shared and way.kind != "workspace":  # a workspace route reads the stage anyway, for its own reason
            _load_from_workspace(plan, staged, way.sources, partitions, dest.input, index, label)
            plan.decisions.append(
                PlannedDecision(
                    subject,
                    f"read {dest.input} from the run workspace",
                    f"source {', '.join(shared)} feeds other destinations too and is read only once",
                )
            )
            continue
        blocker = (
            pushdown_blocker(spec, index, sources, windows, partitions=len(partitions.get(dest.input, [])))
            if pushdown
            else "pushdown is off (AGENT_ETL_PUSHDOWN)"
        )
        checked = any(c.input in (dest.input, None) for c in spec.quality)
        if dest.input in sources and blocker is None:
            for i, part in enumerate(partitions[dest.input]):
                plan.tasks.append(
                    Task(
                        f"{dest.input}[{i}]>{label}",
                        "pushdown",
                        source=dest.input,
                        partition=part,
                        destination=index,
                        engine_checks=checked,
                    )
                )
            plan.decisions.append(
                PlannedDecision(
                    subject,
                    f"push the copy down: the {dest.type} engine reads {sources[dest.input].spec.type} itself, "
                    "one task per partition"
                    + (", then evaluates the checks as SQL over the staged rows" if checked else ""),
                    (
                        "its checks all judge rows DuckDB can flag in SQL, so only failing rows come to Python (for"
                        " their quarantine entries, which name the row's number in the staged copy, kept in source order)"
                        if checked
                        else "no quality check, incremental window or transform touches the rows, so no batch needs to"
                        " pass through Python; nothing can be quarantined"
                    )
                    + "; each partition still stages separately (checkpoint and retry per partition),"
                    " progress is counted per finished partition",
                )
            )
            continue
        # Rows no engine reads still stage raw in a DuckDB destination, which then checks them in SQL.
        in_engine = (
            pushdown
            and checked
            and len(way.chain) == 1
            and dest.input not in windows
            and engine_checks_blocker(spec, index, 1 if way.kind == "single" else len(partitions[dest.input])) is None
        )
        if in_engine:
            plan.decisions.append(
                PlannedDecision(
                    subject,
                    "stage the raw rows in DuckDB, then evaluate the checks there as SQL",
                    "its checks all judge rows DuckDB can flag in SQL, so the batches skip the per-batch check in"
                    " Python; failing rows keep their source position"
                    + (f"; no pushdown: {blocker}" if blocker and "cannot read" not in blocker else ""),
                )
            )
        if way.kind in ("source", "stream"):
            for i, part in enumerate(partitions[way.source]):
                plan.tasks.append(
                    Task(
                        f"{dest.input}[{i}]>{label}",
                        "extract_load",
                        source=way.source,
                        partition=part,
                        transform=None if way.kind == "source" else dest.input,
                        destination=index,
                        engine_checks=in_engine,
                    )
                )
            if len(way.chain) == 1:  # the source itself, with or without checks
                no_pushdown = f"; no pushdown: {blocker}" if blocker and "cannot read" not in blocker else ""
                plan.decisions.append(
                    PlannedDecision(
                        subject,
                        "stream source batches straight into staging",
                        f"it reads source {dest.input} with no transform, so no workspace is needed{no_pushdown}",
                    )
                )
            else:
                plan.decisions.append(
                    PlannedDecision(subject, f"stream {' > '.join(way.chain)} batch by batch into staging", way.reason)
                )
            continue
        if way.kind == "single":
            plan.tasks.append(
                Task(
                    f"{dest.input}>{label}",
                    "transform_load",
                    source=way.source,
                    transform=dest.input,
                    destination=index,
                    partitions=tuple(partitions[way.source]),
                    engine_checks=in_engine,
                )
            )
            plan.decisions.append(
                PlannedDecision(subject, f"run {' > '.join(way.chain)} in one task over every partition", way.reason)
            )
            continue
        _load_from_workspace(plan, staged, way.sources, partitions, dest.input, index, label)
        plan.decisions.append(
            PlannedDecision(
                subject,
                f"materialise {', '.join(way.sources)} in the run workspace, then run {dest.input} there",
                way.reason,
            )
        )
    plan.order()
    return plan


def _load_from_workspace(
    plan: Plan,
    staged: dict[str, list[str]],
    names: tuple[str, ...],
    partitions: dict[str, list[Partition]],
    transform: str,
    index: int,
    label: str,
) -> None:
    """Stage the sources a transform reads, then one task that runs it in the workspace into the destination."""
    _stage_sources(plan, staged, names, partitions)
    plan.tasks.append(
        Task(
            f"{transform}>{label}",
            "transform_load",
            transform=transform,
            destination=index,
            depends_on=tuple(t for n in names for t in staged[n]),
        )
    )


def _stage_sources(
    plan: Plan, staged: dict[str, list[str]], names: tuple[str, ...], partitions: dict[str, list[Partition]]
) -> None:
    """Stage tasks for the sources not staged yet: each source is staged once, whatever reads it there."""
    for name in names:
        if name not in staged:
            staged[name] = [f"{name}[{i}]>workspace" for i in range(len(partitions[name]))]
            plan.tasks.extend(
                Task(tid, "stage", source=name, partition=part)
                for tid, part in zip(staged[name], partitions[name], strict=True)
            )


def _read_once(spec: PipelineSpec, sources: dict[str, Source]) -> dict[str, tuple[list[str], str]]:
    """The sources that several destinations need and that are read once into the run workspace,
    with those destinations and why one read is cheaper.

    Staging is chosen over fanning one stream out to several destinations: a source staged
    anyway for a transform (or a referential check) costs only a local DuckDB scan per extra
    destination, against parsing the file or running the query again; and a source costly
    to read twice (an API, a download) is staged once as before. Every destination then
    loads the same rows, with the row checks run once at the stage and the quarantined rows'
    origins kept for the rows loaded from it.
    """
    users: dict[str, list[str]] = {}
    staged_for: dict[str, list[str]] = {}
    for index, dest in enumerate(spec.all_destinations):
        label = destination_label(spec, index)
        for name in fed_by(spec, index):
            users.setdefault(name, []).append(label)
        way = route(set(sources), spec.transforms, spec.quality, dest.input)
        if way.kind == "workspace":
            for name in way.sources:
                staged_for.setdefault(name, []).append(label)
    found = {}
    for name, labels in users.items():
        if len(labels) < 2:
            continue
        if (cost := sources[name].reread_cost()) is None and name in staged_for:
            cost = (
                f"it is staged in the run workspace anyway for {', '.join(staged_for[name])}, so loading the others"
                " from there costs a local scan instead of a second read of the source"
            )
        if cost is not None:
            found[name] = (labels, cost)
    return found
