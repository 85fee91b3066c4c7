"""`agent-etl schema` accepts every example spec in the repository, pipelines and workflows, and refuses bad ones."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from agent_orchestrated_etl.exceptions import SpecError
from agent_orchestrated_etl.spec import json_schema, parse_spec

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def example_specs() -> list[tuple[str, str]]:
    """The bundled demo, and every YAML block of README.md and docs/ that is a whole spec the loader accepts."""
    found = [("demo/shop.yaml", resources.files("agent_orchestrated_etl.demo").joinpath("shop.yaml").read_text())]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, match in enumerate(_BLOCK.finditer(doc.read_text())):
            text = match.group(1)
            data = yaml.safe_load(text)
            if isinstance(data, dict) and ("sources" in data or "workflow" in data):
                try:
                    parse_spec(text, file=doc.name)
                except SpecError:
                    continue  # a fragment or a deliberately wrong example; the docs say which
                found.append((f"{doc.relative_to(ROOT)}#{number}", text))
    return found


EXAMPLES = example_specs()


def test_the_examples_include_pipelines_and_a_workflow() -> None:
    kinds = {"workflow" if "workflow" in yaml.safe_load(text) else "pipeline" for _, text in EXAMPLES}
    assert kinds == {"pipeline", "workflow"} and len(EXAMPLES) >= 3, [name for name, _ in EXAMPLES]


@pytest.mark.parametrize(("name", "text"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_the_schema_accepts_every_example_spec(name: str, text: str) -> None:
    jsonschema.Draft202012Validator(json_schema()).validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "p", "sources": {"s": {"type": "file", "path": "a.csv"}}, "destination": {"type": "nope"}},
        {"workflow": "w", "pipelines": []},
        {
            "name": "p",
            "sources": {"s": {"type": "file", "path": "a.csv"}},
            "quality": [{"unique": ["id"], "severity": "fatal"}],
            "destination": {"type": "duckdb", "path": "o.duckdb", "table": "t"},
        },
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(bad: dict) -> None:
    assert not jsonschema.Draft202012Validator(json_schema()).is_valid(bad)
