"""Every code block of README.md and docs/ that claims to run, run.

The convention, by the fenced block's info string:

- ```` ```python ````: runs. The blocks of one file run in order in one namespace, as
  the cells of a notebook do, in a fresh working directory with its own AGENT_ETL_HOME;
  a block fails the test by raising (write ``assert`` for what the reader is promised).
- ```` ```python no-run ````: an excerpt shown, not run (it needs a server, credentials or
  a file of the reader's).
- ```` ```python venv=NAME ````: runs in the virtualenv of an orchestrator, by
  tests/test_orchestrators.py.
- Every other language (``bash``, ``console``, ``yaml``, ``json``...) is not run here.

Any other word after ``python`` fails the test, so a typo cannot hide a block.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)
KNOWN = re.compile(r"python( no-run| venv=\w+)?")


def python_blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line, info, code) of every python block of a Markdown file."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        if info.split(" ")[0] == "python":
            found.append((text.count("\n", 0, match.start()) + 2, info, match["code"]))
    return found


def runnable() -> list[Path]:
    return [path for path in FILES if any(info == "python" for _, info, _ in python_blocks(path))]


def test_every_python_block_is_marked_by_the_convention() -> None:
    unknown = [
        f"{path.relative_to(ROOT)}:{line}: ```{info}"
        for path in FILES
        for line, info, _ in python_blocks(path)
        if not KNOWN.fullmatch(info)
    ]
    assert unknown == []


def test_there_are_blocks_to_run() -> None:
    names = {path.name for path in runnable()}
    assert {"README.md", "python-api.md", "orchestrators.md"} <= names


@pytest.mark.parametrize("path", runnable(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_blocks_of_a_file_run_as_a_notebook(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for line, info, code in python_blocks(path):
        if info != "python":
            continue
        compiled = compile(code, f"{path.relative_to(ROOT)}:{line}", "exec")
        exec(compiled, namespace)  # noqa: S102 - running the docs is the test
