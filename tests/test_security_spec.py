"""Loading a spec is bounded before anything expands: size, nodes after aliases, depth (issue 12, item 1).

The bombs are loaded in a subprocess under an address-space cap: unbounded,
they take gigabytes, and the cap makes that a failure instead of a swapping machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent_orchestrated_etl.exceptions import SpecError
from agent_orchestrated_etl.spec import parse_spec

CAP_BYTES = 1536 * 1024 * 1024  # the interpreter with pyarrow and the API imported maps about 0.5 GB


def alias_bomb(width: int = 9, levels: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels nodes in a few hundred bytes."""
    lines = ["name: bomb", "a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def capped(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({CAP_BYTES}, {CAP_BYTES}))\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        # One BLAS thread: numpy (which pyarrow imports when installed, as the clickhouse extra's chdb installs it)
        # maps a buffer per OpenBLAS thread, which counts against the cap without being the parser's memory.
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
    )


def test_an_alias_bomb_of_under_500_bytes_is_refused_naming_its_line_within_the_memory_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert len(bomb.read_bytes()) < 500
    result = capped(
        """
        import json, sys
        from agent_orchestrated_etl.exceptions import SpecError
        from agent_orchestrated_etl.spec import load_spec
        try:
            load_spec(sys.argv[1])
        except SpecError as exc:
            print(json.dumps([vars(p) for p in exc.problems]))
        """,
        str(bomb),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    problems = json.loads(result.stdout)
    assert problems == [
        {
            "file": str(bomb),
            "line": 7,
            "path": "",
            "message": "the spec expands to more than 100,000 YAML nodes (an alias *name repeats its anchor's whole value) (AGENT_ETL_SPEC_MAX_NODES)",
        }
    ]


def test_validate_and_run_refuse_the_bomb_with_exit_2_under_the_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    for command in ("validate", "run"):
        result = capped(
            "import sys; from agent_orchestrated_etl.cli import main; sys.argv = ['agent-etl', *sys.argv[1:]]; main()",
            command,
            str(bomb),
            env={"AGENT_ETL_HOME": str(tmp_path / "home")},
        )
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert f"{bomb}:7: the spec expands to more than 100,000 YAML nodes" in result.stderr.replace("\n", "")
        assert "MemoryError" not in result.stderr


def test_the_api_validate_route_answers_the_bomb_with_a_problem_under_the_cap(tmp_path: Path) -> None:
    result = capped(
        """
        import json, sys, warnings
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
        from agent_orchestrated_etl.api.app import create_app
        from agent_orchestrated_etl.api.service import ServeOptions
        from agent_orchestrated_etl.config import Settings
        options = ServeOptions(settings=Settings(), token="t", base_dir=__import__("pathlib").Path(sys.argv[2]))
        with TestClient(create_app(options)) as client:
            response = client.post("/api/v1/pipelines/validate", json={"yaml": sys.argv[1]}, headers={"Authorization": "Bearer t"})
            print(response.status_code, json.dumps(response.json()))
        """,
        alias_bomb(),
        str(tmp_path),
        env={"AGENT_ETL_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status, body = result.stdout.split(" ", 1)
    assert status == "200"
    assert json.loads(body) == {
        "valid": False,
        "problems": [
            {
                "file": "<request body>",
                "line": 7,
                "path": "",
                "message": "the spec expands to more than 100,000 YAML nodes (an alias *name repeats its anchor's whole value) (AGENT_ETL_SPEC_MAX_NODES)",
            }
        ],
    }


def test_aliases_within_the_limit_still_load() -> None:
    text = "name: shared\nsources:\n  a: &src {type: file, path: a.csv}\n  b: *src\ndestination: {type: duckdb, path: o.duckdb, table: t, input: a}\n"
    loaded = parse_spec(text)
    assert loaded.pipeline is not None and loaded.pipeline.sources["b"].path == "a.csv"  # type: ignore[union-attr]


def test_depth_is_bounded_and_names_the_line() -> None:
    text = "name: deep\nsources:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(70)) + "  " * 71 + "x: 1\n"
    with pytest.raises(SpecError) as caught:
        parse_spec(text, file="deep.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "deep.yaml:65: the spec nests deeper than 64 levels (AGENT_ETL_SPEC_MAX_DEPTH)"
    ]


def test_size_is_bounded_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: big\ndescription: '" + "x" * (1024 * 1024) + "'\n")
    from agent_orchestrated_etl.spec import load_spec

    with pytest.raises(SpecError) as caught:
        load_spec(big)
    assert [str(p) for p in caught.value.problems] == [
        f"{big}: the spec is 1,048,577 bytes; specs are limited to 1,048,576 (AGENT_ETL_SPEC_MAX_BYTES)"
    ]


def test_limits_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_orchestrated_etl.yaml_locations import SpecLimits

    monkeypatch.setenv("AGENT_ETL_SPEC_MAX_NODES", "50")
    with pytest.raises(SpecError) as caught:
        parse_spec(alias_bomb(width=3, levels=4), file="small.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "small.yaml:4: the spec expands to more than 50 YAML nodes (an alias *name repeats its anchor's whole value) (AGENT_ETL_SPEC_MAX_NODES)"
    ]
    with pytest.raises(SpecError):
        parse_spec("name: x\n", limits=SpecLimits(max_bytes=4))
