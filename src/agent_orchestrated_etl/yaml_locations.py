"""Map a validation error's location (``('sources', 'orders', 'file', 'table')``) to a YAML line.

PyYAML's composed node tree keeps the marks that ``safe_load`` throws away,
and Pydantic's error locations follow the data, so walking both together
gives the line of the offending key (or of its parent, for a missing key).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

Path = tuple[str | int, ...]


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


def locate_problem(loc: Sequence[str | int], lines: dict[Path, int], *, missing_key: bool = False) -> tuple[str, int | None]:
    """Return the dotted YAML path and its line for a Pydantic error location.

    Parts of ``loc`` that are not in the document (a discriminated union's tag,
    a model name) are skipped; a missing key reports its parent's line.
    """
    path: Path = ()
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
        elif isinstance(part, str) and part.isdigit() and (*path, int(part)) in lines:
            path = (*path, int(part))
    missing = [loc[-1]] if missing_key and loc and tuple(loc[-1:]) != path[-1:] else []
    dotted = ""
    for part in (*path, *missing):
        dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
    return dotted, lines.get(path)
