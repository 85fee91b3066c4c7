"""Input validation as a property (issue 12): whatever a spec's text or an API request body holds, the
answer is a result or a clear error with a location; never a crash, a traceback or a 5xx, and always
in bounded time and memory."""

from __future__ import annotations

import json
import resource
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN

from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.exceptions import ConfigurationError, SpecError
from agent_orchestrated_etl.spec import parse_spec

# Each example must finish within this (hypothesis fails a slower one); the machine is shared and loaded.
DEADLINE_MS = 3000
MEMORY_GROWTH = 256 * 1024 * 1024
KEYS = [
    "name",
    "sources",
    "destination",
    "destinations",
    "type",
    "path",
    "table",
    "write",
    "url",
    "query",
    "quality",
    "transform",
    "schedule",
    "cron",
    "sla",
    "max_duration",
    "workflow",
    "pipelines",
    "depends_on",
    "incremental",
    "not_null",
    "threshold",
    "alerts",
    "format",
    "columns",
    "<<",
]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.sampled_from(KEYS)
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=40,
)


def _mutated(text: str, cuts: list[tuple[int, str]]) -> str:
    for at, insert in cuts:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + len(insert) :]
    return text


spec_texts = st.one_of(
    st.text(max_size=300),
    documents.map(lambda d: yaml.safe_dump(d, sort_keys=False)),
    st.builds(
        _mutated,
        st.just(PEOPLE_YAML),
        st.lists(
            st.tuples(
                st.integers(0, 400),
                st.sampled_from(
                    [
                        "&x ",
                        "*x",
                        ": ",
                        "\n  ",
                        "[",
                        "{",
                        "'",
                        "!!python/object ",
                        "- ",
                        "\t",
                        "\x00",
                        "<<: *x\n",
                        "%YAML 1.1\n",
                    ]
                ),
            ),
            max_size=6,
        ),
    ),
)


@pytest.fixture(scope="module")
def memory() -> Iterator[None]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    yield
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < MEMORY_GROWTH, f"the peak memory grew by {grown:,} bytes"


@settings(
    max_examples=300,
    deadline=DEADLINE_MS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(BOMB)
@example("a: &a [*a]")
@example("\x1f")  # refused by YAML's reader, which has a position and no mark: the line came back None
@example("[" * 10_000)
@given(spec_texts)
def test_the_spec_loader_answers_every_text_with_a_spec_or_located_problems(memory: None, text: str) -> None:
    try:
        parse_spec(text, file="fuzz.yaml")
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.message
            assert problem.line is not None or problem.path, problem
            assert "Traceback" not in problem.message
    except ConfigurationError as exc:  # e.g. an unset ${env:...}: says where
        assert exc.where or exc.hint, exc


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["yaml", "base_dir", "pipeline", "x"]) | st.text(max_size=6), children, max_size=4
        ),
    ),
    max_leaves=20,
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda y, b: json.dumps({"yaml": y, "base_dir": b}).encode(),
        spec_texts,
        st.none() | st.sampled_from([".", "..", "/", "sub", "\x00", "~"]),
    ),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    (data_dir / "people.csv").write_text("id,name,email\n1,a,a@example.com\n")
    options = ServeOptions(
        settings=Settings(AGENT_ETL_MEMORY_LIMIT="16GB", AGENT_ETL_HOME=str(data_dir / "home")),
        token=TOKEN,
        base_dir=data_dir,
        rate_per_minute=0,
    )
    with TestClient(create_app(options), raise_server_exceptions=False) as client:
        yield client


@settings(
    max_examples=150,
    deadline=DEADLINE_MS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example("/api/v1/pipelines/validate", json.dumps({"yaml": BOMB}).encode())
@example("/api/v1/pipelines", json.dumps({"yaml": PEOPLE_YAML, "base_dir": "\x00"}).encode())  # was a 500 (ValueError)
@example("/api/v1/pipelines/validate", json.dumps({"yaml": PEOPLE_YAML.replace("people.csv", "a\x00.csv")}).encode())
@given(st.sampled_from(["/api/v1/pipelines/validate", "/api/v1/pipelines", "/api/v1/runs"]), bodies)
def test_the_api_answers_every_body_without_a_server_error_and_with_where(
    api: TestClient, memory: None, route: str, body: bytes
) -> None:
    response = api.post(route, content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    assert "traceback" not in response.text.lower()
    if response.status_code < 400:
        if route.endswith("/validate") and not response.json()["valid"]:
            _located(response.json()["problems"])
        return
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["detail"] and problem["instance"] == route
    if response.status_code == 422:
        if "problems" in problem:
            _located(problem["problems"])
        else:
            assert problem["errors"] and all(e["where"] and e["message"] for e in problem["errors"]), problem


def _located(problems: list[dict[str, Any]]) -> None:
    assert problems
    for p in problems:
        assert p["message"] and (p["line"] is not None or p["path"]), p
