"""A planted secret is found nowhere we write or serve (issue 12, items 2 and 3).

One unique value, given through ``${env:PLANTED}`` in every place a spec takes
a secret (URL userinfo and query, params, headers, auth blocks, database
URLs), in pipelines that succeed and that fail; then every byte we wrote is
searched: the store (dumped), the workspace, the destinations, stdout and
stderr with and without --debug, serve's log and its API responses. Two more
values come from the other providers, a secret file (``${file:...}``) and AWS
Secrets Manager (``${aws-sm:...}``, moto's server), in pipelines of their own.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pyarrow.parquet as pq
import pytest
from tests.api.conftest import AUTH
from tests.api.serve_process import serve
from tests.aws_servers import MotoAWS
from tests.connectors.http_servers import fault_server

from agent_orchestrated_etl import encryption
from agent_orchestrated_etl.logging_config import setup_logging
from agent_orchestrated_etl.spec import parse_spec, resolve_env

SECRET = f"pl4nted-{uuid.uuid4().hex}"
FILE_SECRET = f"pl4nted-file-{uuid.uuid4().hex}"
SM_SECRET = f"pl4nted-sm-{uuid.uuid4().hex}"
SM_REF = "${aws-sm:etl/planted#token}"


def forms(secret: str) -> list[bytes]:
    return sorted({f.encode() for f in (secret, quote(secret, safe=""), quote_plus(secret))})


def rest_spec(name: str, url: str, *, dest: str, ref: str = "${env:PLANTED}") -> str:
    return f"""\
name: {name}
sources:
  api:
    type: rest
    url: "{url}"
    params: {{per_page: 10, k: "{ref}"}}
    headers: {{X-Api-Token: "{ref}", Authorization: "Bearer {ref}"}}
    auth: {{type: api_key, name: key, value: "{ref}", in: query}}
    records: data.items
    retry: {{attempts: 1}}
quality:
  - {{in_range: {{column: price, max: 5}}, threshold: 1.0}}
retry: {{attempts: 1}}
destination: {{type: duckdb, path: {dest}.duckdb, table: items, write: replace}}
"""


def sql_spec(name: str, url: str) -> str:
    return f"""\
name: {name}
sources:
  one: {{type: postgres, url: "{url}", query: "SELECT 1 AS x"}}
retry: {{attempts: 1}}
destination: {{type: duckdb, path: {name}.duckdb, table: one, write: replace}}
"""


def specs(tmp_path: Path, api: str, postgres_url: str, mysql_url: str, file_ref: str) -> dict[str, bool]:
    """Spec files, each with whether its run succeeds."""
    host = urlsplit(api).netloc
    pg = urlsplit(postgres_url)
    my = urlsplit(mysql_url)
    written = {
        "rest_file_fails": (
            rest_spec(
                "rest_file_fails",
                f"http://user:{file_ref}@{host}/missing?token={file_ref}",
                dest="rest_file_fails",
                ref=file_ref,
            ),
            False,
        ),
        "rest_sm_ok": (
            rest_spec("rest_sm_ok", f"http://user:{SM_REF}@{host}/pages?token={SM_REF}", dest="rest_sm_ok", ref=SM_REF),
            True,
        ),
        "pg_sm_fails": (
            sql_spec("pg_sm_fails", f"postgresql://{pg.username}:{SM_REF}@{pg.hostname}:{pg.port}/no_such_db_h7"),
            False,
        ),
        "rest_ok": (
            rest_spec("rest_ok", f"http://user:${{env:PLANTED}}@{host}/pages?token=${{env:PLANTED}}", dest="rest_ok"),
            True,
        ),
        "rest_files_ok": (  # a file destination: its staged and quarantine Parquet files are encrypted
            rest_spec(
                "rest_files_ok",
                f"http://user:${{env:PLANTED}}@{host}/pages?token=${{env:PLANTED}}",
                dest="rest_files_ok",
            ).replace(
                "{type: duckdb, path: rest_files_ok.duckdb, table: items, write: replace}",
                "{type: file, path: rest_files_ok, write: replace}",
            ),
            True,
        ),
        "rest_fails": (
            rest_spec(
                "rest_fails", f"http://user:${{env:PLANTED}}@{host}/missing?token=${{env:PLANTED}}", dest="rest_fails"
            ),
            False,
        ),
        "rest_refused": (
            rest_spec(
                "rest_refused", "http://user:${env:PLANTED}@127.0.0.1:9/x?token=${env:PLANTED}", dest="rest_refused"
            ),
            False,
        ),
        "pg_ok": (
            sql_spec("pg_ok", f"postgresql://{pg.username}:${{env:PLANTED}}@{pg.hostname}:{pg.port}{pg.path}"),
            True,
        ),
        "pg_fails": (
            sql_spec("pg_fails", f"postgresql://{pg.username}:${{env:PLANTED}}@{pg.hostname}:{pg.port}/no_such_db_h7"),
            False,
        ),
        "mysql_fails": (
            sql_spec("mysql_fails", f"postgresql://root:${{env:PLANTED}}@{my.hostname}:1/x")
            .replace("type: postgres", "type: mysql")
            .replace("postgresql://", "mysql://"),
            False,
        ),
    }
    for name, (text, _) in written.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return {name: ok for name, (_, ok) in written.items()}


#: What swept_files read from each Parquet file after decrypting it.
DECRYPTED: dict[Path, str] = {}


def leaks(where: str, data: bytes) -> list[str]:
    return [
        f"{where}: {form.decode()}"
        for secret in (SECRET, FILE_SECRET, SM_SECRET)
        for form in forms(secret)
        if form in data
    ]


def swept_files(root: Path) -> list[str]:
    """Every file under ``root`` (the SQLite store also dumped as SQL, so no page layout hides a value;
    Parquet files also decrypted with AGENT_ETL_ENCRYPTION_KEY, so encryption hides nothing from the sweep)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found += leaks(str(path), path.read_bytes())
        if path.suffix == ".parquet":
            rows = pq.ParquetFile(path, **encryption.parquet_reader_options()).read().to_pylist()
            DECRYPTED[path] = json.dumps(rows, default=str)
            found += leaks(f"{path} (decrypted)", DECRYPTED[path].encode())
        if path.suffix == ".db":
            with sqlite3.connect(path) as conn:
                found += leaks(f"{path} (dump)", "\n".join(conn.iterdump()).encode())
    return found


@pytest.fixture
def file_ref(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A secret file as Docker or Kubernetes mounts one: outside the directories swept, ending in a newline."""
    path = tmp_path_factory.mktemp("mounted-secrets") / "planted"
    path.write_text(FILE_SECRET + "\n")
    return f"${{file:{path}}}"


@pytest.fixture
def planted_aws(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch) -> MotoAWS:
    aws.client("secretsmanager").create_secret(Name="etl/planted", SecretString=json.dumps({"token": SM_SECRET}))
    monkeypatch.setenv("AWS_SECRETS_MANAGER_ENABLED", "true")
    return aws


@pytest.fixture
def api_url():
    server, url, _ = fault_server(30)
    yield url
    server.shutdown()


def agent_etl(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, bytes, bytes]:
    """The CLI's entry point in this process (a subprocess costs seconds of start-up per command)."""
    from agent_orchestrated_etl.cli import main

    capfd.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["agent-etl", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    out, err = capfd.readouterr()
    return code, out.encode(), err.encode()


def test_a_planted_secret_is_nowhere_in_what_the_cli_writes(
    tmp_path: Path,
    api_url: str,
    postgres_url: str,
    mysql_url: str,
    file_ref: str,
    planted_aws: MotoAWS,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    outcomes = specs(work, api_url, postgres_url, mysql_url, file_ref)
    home = tmp_path / "home"
    # No cache: each run, --debug ones too, fetches its AWS secret again.
    settings = {
        "PLANTED": SECRET,
        "AGENT_ETL_HOME": str(home),
        "AGENT_ETL_LOG_LEVEL": "INFO",
        "COLUMNS": "400",
        "AGENT_ETL_SECRETS_CACHE_TTL": "0",
        "ETL_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AGENT_ETL_ENCRYPTION_KEY": "${env:ETL_KEY}",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(work)
    found: list[str] = []
    statuses = {}
    for name in outcomes:
        for flags in (["--debug"], []):  # --debug first: a value leaks before it is known and registered
            for extra in ([], ["--json"]):
                command = [*flags, "run", f"{name}.yaml", *extra]
                code, out, err = agent_etl(capfd, *command)
                statuses[tuple(command)] = code
                found += leaks(f"{' '.join(command)} stdout", out) + leaks(f"{' '.join(command)} stderr", err)
    _, out, _ = agent_etl(capfd, "runs", "--json", "--limit", "100")
    run_ids = [r["run_id"] for r in json.loads(out)]
    assert len(run_ids) == 4 * len(outcomes)
    for run_id in run_ids:
        for flags in ([], ["--debug"]):
            _, out, err = agent_etl(capfd, *flags, "runs", "show", run_id, "--json")
            found += leaks(f"runs show {run_id} stdout", out) + leaks(f"runs show {run_id} stderr", err)
    DECRYPTED.clear()
    found += swept_files(tmp_path)
    assert found == []
    # The file destination's files were encrypted, and the sweep read them: the quarantine's origins, masked.
    quarantined = [text for path, text in DECRYPTED.items() if "_quarantine" in path.parts]
    assert quarantined and all("http://user:***@" in text for text in quarantined)
    for path in DECRYPTED:
        with pytest.raises(OSError, match="encrypted"):
            pq.ParquetFile(path)
    import duckdb

    with duckdb.connect(str(work / "rest_ok.duckdb"), read_only=True) as conn:
        # Each of the 4 runs quarantines prices 6.25 .. 12.5, each row naming its page's URL, masked.
        assert conn.sql(
            "SELECT count(*), count(*) FILTER (WHERE origin LIKE 'http://user:***@%k=***&key=*** record %') FROM items__quarantine"
        ).fetchone() == (24, 24)
    assert statuses == {
        k: (0 if outcomes[k[-2 if k[-1] == "--json" else -1].removesuffix(".yaml")] else 1) for k in statuses
    }
    # The store keeps the spec as written, with the reference of its secret's provider.
    with sqlite3.connect(home / "agent-etl.db") as conn:
        texts = {row[0]: row[1] for row in conn.execute("SELECT DISTINCT pipeline, spec_text FROM runs")}
    written = {"rest_file_fails": file_ref, "rest_sm_ok": SM_REF, "pg_sm_fails": SM_REF}
    assert len(texts) == len(outcomes) and all(
        written.get(name, "${env:PLANTED}") in text for name, text in texts.items()
    )


def test_a_planted_secret_is_nowhere_in_what_serve_writes_or_answers(
    tmp_path: Path, api_url: str, postgres_url: str, mysql_url: str, file_ref: str, planted_aws: MotoAWS
) -> None:
    outcomes = specs(tmp_path, api_url, postgres_url, mysql_url, file_ref)
    found: list[str] = []
    # A served spec reads ${file:...} only from the secrets directories (confinement.py): mount it there.
    mounted = str(Path(file_ref.removeprefix("${file:").removesuffix("}")).parent)
    env = {"PLANTED": SECRET, "AGENT_ETL_LOG_LEVEL": "DEBUG", "AGENT_ETL_SECRETS_DIR": mounted}
    with serve(tmp_path, env=env) as url:
        run_ids = []
        for name in outcomes:
            registered = httpx.post(
                f"{url}/api/v1/pipelines",
                json={"yaml": (tmp_path / f"{name}.yaml").read_text()},
                headers=AUTH,
                timeout=30,
            )
            assert registered.status_code == 201, registered.text
            run_ids.append(
                httpx.post(f"{url}/api/v1/runs", json={"pipeline": name}, headers=AUTH, timeout=30).json()["run_id"]
            )
        deadline = time.monotonic() + 90
        runs: dict[str, dict] = {}
        while time.monotonic() < deadline and len(runs) < len(run_ids):
            for run_id in run_ids:
                run = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=AUTH, timeout=30).json()
                if run["status"] != "running":
                    runs[run_id] = run
            time.sleep(0.2)
        assert {r["pipeline"]: r["status"] for r in runs.values()} == {
            n: "succeeded" if ok else "failed" for n, ok in outcomes.items()
        }
        for path in [
            "/api/v1/runs",
            "/api/v1/events?limit=1000",
            "/api/v1/alerts",
            "/api/v1/pipelines",
            "/metrics",
            *(f"/api/v1/runs/{r}" for r in run_ids),
            *(f"/api/v1/pipelines/{n}" for n in outcomes),
        ]:
            found += leaks(path, httpx.get(f"{url}{path}", headers=AUTH, timeout=30).content)
        from websockets.sync.client import connect

        with connect(f"ws{url.removeprefix('http')}/ws", additional_headers=AUTH) as ws:
            found += leaks("/ws hello", ws.recv(timeout=10).encode())
    found += swept_files(tmp_path)
    assert found == []


def test_the_log_filter_masks_every_logger_even_at_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_orchestrated_etl import redaction

    secret = f"filter-{uuid.uuid4().hex}"
    monkeypatch.setenv("PLANTED", secret)
    resolve_env(parse_spec(rest_spec("p", f"http://u:{secret}@example.com/x", dest="d")).pipeline)
    setup_logging("DEBUG")
    try:
        logging.getLogger("httpx").info("HTTP Request: GET %s", f"http://example.com/x?key={quote(secret)}")
        logging.getLogger("some.library").debug("connecting to %s", f"postgresql://u:{secret}@h/db")
        try:
            raise RuntimeError(f"refused: {secret}")
        except RuntimeError:
            logging.getLogger("other").exception("failed")
    finally:
        setup_logging("WARNING")
    err = capsys.readouterr().err
    assert secret not in err and quote(secret) not in err
    assert err.count(redaction.MASK) == 3
    assert "RuntimeError: refused: ***" in err


def test_what_counts_as_a_secret() -> None:
    from agent_orchestrated_etl import redaction

    text = """\
name: p
sources:
  db: {type: postgres, url: "postgresql://app:literal-pw@db/x", table: orders}
  api:
    type: rest
    url: https://api.example/x
    headers: {X-Api-Key: header-key-1, Accept: application/json}
    auth: {type: oauth2_client_credentials, token_url: "https://auth.example/token", client_id: my-client, client_secret: cs-value-1}
destination: {type: duckdb, path: o.duckdb, table: t, write: merge, primary_key: [order_id], input: db}
"""
    resolve_env(parse_spec(text).pipeline)
    masked = redaction.redact(
        "literal-pw header-key-1 cs-value-1 order_id my-client application/json https://auth.example/token orders"
    )
    assert masked == "*** *** *** order_id my-client application/json https://auth.example/token orders"
