"""Map a validation error's location (``('sources', 'orders', 'file', 'table')``) to a YAML line.

PyYAML's composed node tree keeps the marks that ``safe_load`` throws away,
and Pydantic's error locations follow the data, so walking both together
gives the line of the offending key (or of its parent, for a missing key).

The node tree is also where a spec's size is bounded (``compose_bounded``):
composing shares an anchored node among its aliases, so a few hundred bytes
of nested aliases stand for billions of nodes, and every later pass that
follows them (these line numbers, building the dict, validation) would
expand them. Counting expanded nodes up to the limit first costs at most
that limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml

from agent_orchestrated_etl.exceptions import SpecError, SpecProblem

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecLimits:
    """How much a spec may cost to load; the defaults are documented in docs/security.md."""

    max_bytes: int = 1024 * 1024
    max_nodes: int = 100_000
    max_depth: int = 64


def check_size(text: str, limits: SpecLimits, file: str) -> None:
    size = len(text.encode("utf-8"))
    if size > limits.max_bytes:
        raise SpecError(
            [
                SpecProblem(
                    file,
                    None,
                    "",
                    f"the spec is {size:,} bytes; specs are limited to {limits.max_bytes:,} (AGENT_ETL_SPEC_MAX_BYTES)",
                )
            ]
        )


def compose_bounded(text: str, loader: type, limits: SpecLimits, file: str) -> tuple[yaml.Node | None, object]:
    """The document's node tree and its data, refused before building the data if it is too large or too deep."""
    check_size(text, limits, file)
    parser = loader(text)
    try:
        root = parser.get_single_node()
        if root is not None:
            _check_expanded(root, limits, file)
        return root, parser.construct_document(root) if root is not None else None
    finally:
        parser.dispose()


def _check_expanded(root: yaml.Node, limits: SpecLimits, file: str) -> None:
    """Walk the tree as aliases expand it, stopping at the first node over a limit.

    The stack holds one iterator per level, so it is never deeper than the
    depth limit however wide a node is. ``line`` is where the walk came from
    (the key a value sits under), so an alias is reported where it is used,
    not where its anchor is.
    """
    count = 0

    def children(node: yaml.Node, line: int) -> Iterator[tuple[yaml.Node, int]]:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                yield key, key.start_mark.line + 1
                yield value, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                yield item, max(line, item.start_mark.line + 1)

    def enter(node: yaml.Node, line: int, depth: int) -> None:
        nonlocal count
        count += 1
        if count > limits.max_nodes:
            raise SpecError(
                [
                    SpecProblem(
                        file,
                        line,
                        "",
                        f"the spec expands to more than {limits.max_nodes:,} YAML nodes (an alias *name repeats its"
                        " anchor's whole value) (AGENT_ETL_SPEC_MAX_NODES)",
                    )
                ]
            )
        if depth > limits.max_depth:
            raise SpecError(
                [
                    SpecProblem(
                        file,
                        line,
                        "",
                        f"the spec nests deeper than {limits.max_depth} levels (AGENT_ETL_SPEC_MAX_DEPTH)",
                    )
                ]
            )

    enter(root, root.start_mark.line + 1, 1)
    stack = [children(root, root.start_mark.line + 1)]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            continue
        node, line = step
        enter(node, line, len(stack) + 1)
        stack.append(children(node, line))


def node_lines(root: yaml.Node | None) -> dict[Path, int]:
    """Every key and item path in the document, with its 1-based line."""
    lines: dict[Path, int] = {}

    def walk(node: yaml.Node, path: Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                lines[child] = item.start_mark.line + 1
                walk(item, child)

    if root is not None:
        lines[()] = root.start_mark.line + 1
        walk(root, ())
    return lines


def locate_problem(
    loc: Sequence[str | int], lines: dict[Path, int], *, missing_key: bool = False
) -> tuple[str, int | None]:
    """Return the dotted YAML path and its line for a Pydantic error location.

    Parts of ``loc`` that are not in the document (a discriminated union's tag,
    a model name) are skipped; a missing key reports its parent's line. A tag
    can also be a key of the document (the check ``- unique: [id]`` is tagged
    ``unique``), so the path kept is the one reaching the deepest part of
    ``loc``: ``severity`` of ``quality[2]``, not its ``unique``.
    """
    path = _deepest(tuple(loc), lines)
    missing = [loc[-1]] if missing_key and loc and tuple(loc[-1:]) != path[-1:] else []
    dotted = ""
    for part in (*path, *missing):
        dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
    return dotted, lines.get(path)


def _deepest(loc: Path, lines: dict[Path, int]) -> Path:
    """The document path made of parts of ``loc`` in order that matches its latest part, then the longest."""
    best: tuple[int, int, Path] = (-1, 0, ())

    def walk(index: int, path: Path, last: int) -> None:
        nonlocal best
        if index == len(loc):
            best = max(best, (last, len(path), path), key=lambda b: b[:2])
            return
        part = loc[index]
        for key in (part, int(part)) if isinstance(part, str) and part.isdigit() else (part,):
            if (*path, key) in lines:
                walk(index + 1, (*path, key), index)
                break
        walk(index + 1, path, last)  # or skip it, as a tag or model name

    walk(0, (), -1)
    return best[2]
