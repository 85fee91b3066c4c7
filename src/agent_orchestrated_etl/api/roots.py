"""Where a spec given to serve may read and write: inside ``--data-root`` only.

A spec POSTed to the API comes from whoever holds the token, not from the
operator who started serve, so its ``base_dir`` and every local path in it
(file sources and destinations, DuckDB and SQLite files) must resolve inside
the data root, symlinks followed, ``..`` refused. Remote paths (s3://) and
database servers are not files of this machine and are not checked here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from agent_orchestrated_etl import confinement, secrets
from agent_orchestrated_etl.exceptions import SpecError, SpecProblem
from agent_orchestrated_etl.spec import LoadedSpec
from agent_orchestrated_etl.yaml_locations import locate_problem, node_lines

_GLOB = re.compile(r"[*?\[{]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, symlinks resolved, is ``root`` or under it."""
    return path.resolve().is_relative_to(root.resolve())


def check_base_dir(root: Path, base_dir: Path) -> Path:
    """The base directory a request names, resolved; a 422 problem (raised as SpecError) if it is outside the root."""
    if "\x00" in str(base_dir):  # no file name holds one; resolving it raises ValueError
        message = "base_dir contains a NUL character; give a directory inside the data root"
        raise SpecError([SpecProblem("<request body>", None, "base_dir", message)])
    if not base_dir.is_absolute():
        base_dir = root / base_dir
    if not inside(root, base_dir):
        raise SpecError(
            [
                SpecProblem(
                    "<request body>",
                    None,
                    "base_dir",
                    f"{base_dir} is outside the server's data root {root.resolve()} (agent-etl serve --data-root)",
                )
            ]
        )
    return base_dir.resolve()


def check_paths(loaded: LoadedSpec, base_dir: Path, root: Path, secrets_roots: list[Path]) -> None:
    """Every local path of the spec, relative ones taken from ``base_dir``, must stay inside ``root``,
    and every ``${file:...}`` it refers to inside ``root`` or one of ``secrets_roots``."""
    problems = _secret_files_outside(loaded, [root, *secrets_roots])
    lines: dict[Any, int] | None = None
    for key, value in _local_paths(loaded):
        reason = _escapes(value, base_dir, root)
        if reason is None:
            continue
        if lines is None:
            lines = node_lines(yaml.compose(loaded.text))  # parse_spec bounded the text already
        dotted, line = locate_problem(key, lines)
        problems.append(
            SpecProblem(
                loaded.file,
                line,
                dotted,
                f"{value!r} {reason}; a served spec reads and writes only inside the data root {root.resolve()} (agent-etl serve --data-root)",
            )
        )
    if problems:
        raise SpecError(problems)


def _secret_files_outside(loaded: LoadedSpec, allowed: list[Path]) -> list[SpecProblem]:
    """A ``${file:...}`` reads the file when the run starts, and a URL or header can carry it to the
    spec's author: a served spec may name only files under the allowed directories."""
    found: list[SpecProblem] = []
    for node, path in _scalar_nodes(yaml.compose(loaded.text), ""):  # parse_spec bounded the text already
        for provider, reference in secrets.references(node.value):
            if provider == "file" and not _secret_allowed(reference, allowed):
                found.append(
                    SpecProblem(
                        loaded.file,
                        node.start_mark.line + 1,
                        path,
                        f"${{file:{reference}}} is outside the directories a served spec may read secrets from"
                        f" ({', '.join(str(p.resolve()) for p in allowed)}); mount the secret under one"
                        " (by its absolute path), or add its directory to AGENT_ETL_SECRETS_DIR",
                    )
                )
    return found


def _scalar_nodes(node: yaml.Node | None, path: str) -> Iterator[tuple[yaml.ScalarNode, str]]:
    """Each string scalar of a composed YAML tree, with its dotted key path."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalar_nodes(value, f"{path}.{key.value}" if path else str(key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalar_nodes(item, f"{path}[{index}]")
    elif isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
        yield node, path


def _scalars(node: yaml.Node | None) -> list[str]:
    return [scalar.value for scalar, _ in _scalar_nodes(node, "")]


def _secret_allowed(reference: str, allowed: list[Path]) -> bool:
    if "\x00" in reference or reference.startswith("~"):
        return False
    return any(inside(root, Path(reference)) for root in allowed if Path(reference).is_absolute())


def _local_paths(loaded: LoadedSpec) -> list[tuple[tuple[str | int, ...], str]]:
    found = []
    members = (
        [(("pipelines", i), p) for i, p in enumerate(loaded.workflow.pipelines)]
        if loaded.workflow
        else [((), loaded.pipeline)]
    )
    for at, pipeline in members:
        if pipeline is None:
            continue
        connectors: list[tuple[tuple[str | int, ...], Any]] = [
            ((*at, "sources", name), s) for name, s in pipeline.sources.items()
        ]
        if pipeline.destination is not None:
            connectors.append(((*at, "destination"), pipeline.destination))
        connectors += [((*at, "destinations", i), d) for i, d in enumerate(pipeline.destinations)]
        for key, connector in connectors:
            for field_name in ("path", "url"):
                value = getattr(connector, field_name, None)
                if not isinstance(value, str):
                    continue
                if field_name == "url":
                    if not value.startswith("sqlite:///"):
                        continue
                    value = value.removeprefix("sqlite:///")
                found.append(((*key, field_name), value))
    return found


def _escapes(value: str, base_dir: Path, root: Path) -> str | None:
    """Why ``value`` is not a path inside ``root``, or None when it is (or is not a local path)."""
    scheme = _SCHEME.match(value)
    if scheme and scheme.group(1).lower() != "file":
        return None
    local = value[len("file://") :] if scheme else value
    if "\x00" in local:
        return "contains a NUL character, which no file name holds"
    if ".." in re.split(r"[/\\]", local):
        return "goes up with '..'"
    if local.startswith("~"):
        return "is in a home directory"
    glob = _GLOB.search(local)
    fixed = os.path.dirname(local[: glob.start()]) if glob else local
    path = Path(fixed) if os.path.isabs(fixed) else base_dir / fixed
    if not inside(root, path):
        return (
            "is outside the data root"
            if path.resolve() == path.absolute()
            else "leads outside the data root through a symlink"
        )
    return None


def operator_dirs(loaded: LoadedSpec, base_dir: Path) -> confinement.Roots:
    """The directories a spec given on serve's command line reads from: its local paths' and its secret files'."""
    files = []
    for _, value in _local_paths(loaded):
        scheme = _SCHEME.match(value)
        if scheme and scheme.group(1).lower() != "file":
            continue
        local = value[len("file://") :] if scheme else value
        glob = _GLOB.search(local)
        fixed = os.path.dirname(local[: glob.start()]) if glob else os.path.dirname(local)
        files.append(Path(fixed).expanduser() if os.path.isabs(fixed) or fixed.startswith("~") else base_dir / fixed)
    secret_dirs = [
        Path(reference).expanduser().parent
        for scalar in _scalars(yaml.compose(loaded.text))
        for provider, reference in secrets.references(scalar)
        if provider == "file"
    ]
    return confinement.Roots(tuple(files), tuple(secret_dirs))
