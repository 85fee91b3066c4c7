"""The layers of docs/architecture.md, read off the import graph.

A module may import its own layer and the layers below it; there are no import cycles between
modules. The graph is read with ast, so imports inside functions count as well: a lazy import
hides a dependency from the reader, not from the layering.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "agent_orchestrated_etl"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Longest prefix wins, so a package can hold a module of a higher layer.
LAYERS: dict[str, int] = {
    # 1. vocabulary
    "model": 1,
    "exceptions": 1,
    # 2. infrastructure
    # Settings read the environment and a .env file and bound YAML loading (yaml_locations.SpecLimits).
    "config": 2,
    "retry": 2,
    "circuit_breaker": 2,
    "redaction": 2,
    "yaml_locations": 2,
    "logging_config": 2,
    "secrets": 2,
    "confinement": 2,
    "encryption": 2,
    # 3. stages
    "connectors": 3,
    "transform": 3,
    "quality": 3,
    "profiling": 3,
    "verify": 3,
    # 4. store
    "store": 4,
    # 5. engine
    "spec": 5,
    "planning": 5,
    "execution": 5,
    "engine": 5,
    "settlement": 5,
    "verify.after_commit": 5,
    "verify.stored": 5,
    "profiling.sources": 5,
    "profiling.run": 5,
    "profiling.tools": 5,
    # 6. agents
    "agents": 6,
    "monitoring": 6,
    "orchestrator": 6,
    "workflow": 6,
    "run_result": 6,
    # 7. interfaces
    "cli": 7,
    "pipeline": 7,
    "cli_memory": 7,
    "api": 7,
    "reports": 7,
    "demo": 7,
    "mcp": 7,
    "__main__": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Our modules that `path` imports, as dotted names inside the package."""
    here = module.split(".") if module else []
    if path.name != "__init__.py":
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(here[: len(here) - (node.level - 1)] + ([node.module] if node.module else []))
            names = [f"{PACKAGE}.{base}".rstrip(".") + f".{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n[len(PACKAGE) + 1 :] for n in names if n.startswith(PACKAGE + "."))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges = set()
        for name in _imports(path, module):
            # "from pkg import name" imports the module pkg.name when there is one, else pkg.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
        graph[module] = edges
    return graph


def layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in {__file__}")
    return LAYERS[best]


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        if module:
            layer(module)


def test_no_module_imports_a_higher_layer() -> None:
    graph = _graph()
    upward = {f"{a} -> {b}" for a, targets in graph.items() for b in targets if a and b and layer(b) > layer(a)}
    assert sorted(upward) == []


def test_the_vocabulary_imports_only_exceptions() -> None:
    # model/ is what every layer shares, so of ours it may lean on nothing but the exception tree.
    graph = _graph()
    model = {m for m in graph if m == "model" or m.startswith("model.")}
    assert {"model.messages", "model.failure", "model.outcome", "model.vocabulary"} <= model
    outside = {f"{a} -> {b}" for a in model for b in graph[a] if b and b != "exceptions" and b not in model}
    assert sorted(outside) == []


def test_no_import_cycles() -> None:
    graph = {a: {b for b in bs if b} for a, bs in _graph().items() if a}
    # Tarjan's strongly connected components; any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert sorted(cycles) == []
