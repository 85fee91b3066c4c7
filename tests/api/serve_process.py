"""``agent-etl serve`` as a real subprocess on a free port, for the browser and Prometheus tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tests.api.conftest import AUTH, TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_items(directory: Path, rows: int) -> Path:
    """A Parquet file of ``rows`` rows and a spec loading it into DuckDB."""
    ids = pa.array(range(rows), pa.int64())
    label = pc.binary_join_element_wise("item-", pc.cast(pc.bit_wise_and(ids, 1023), pa.string()), "")
    pq.write_table(
        pa.table({"id": ids, "amount": pc.multiply(pc.cast(ids, pa.float64()), 0.5), "label": label}),
        directory / "items.parquet",
        row_group_size=100_000,
    )
    spec = directory / "items.yaml"
    spec.write_text(
        "name: items\nsources:\n  items: {type: file, path: items.parquet}\ndestination: {type: duckdb, path: out.duckdb, table: items, write: replace}\n"
    )
    return spec


@contextmanager
def serve(
    directory: Path,
    *specs: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    verify: Any = True,
) -> Iterator[str]:
    """Start serve, wait until it answers, yield its base URL; stop it with SIGINT (uvicorn's clean shutdown).

    With ``--tls-cert`` in ``args`` the URL is https, checked with ``verify`` (an ssl context, for httpx)."""
    port = free_port()
    script = Path(sys.executable).with_name("agent-etl")
    environment = {**os.environ, "AGENT_ETL_HOME": str(directory / "home"), "AGENT_ETL_API_TOKEN": TOKEN, **(env or {})}
    log = open(directory / "serve.log", "w")  # noqa: SIM115 - closed below
    command = [str(script), "serve", *map(str, specs), "--port", str(port), *args]
    process = subprocess.Popen(command, cwd=directory, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"{'https' if '--tls-cert' in args else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # start-up takes long on a loaded machine
        while True:
            try:
                if httpx.get(f"{url}/api/v1/pipelines", headers=AUTH, timeout=1, verify=verify).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start:\n{(directory / 'serve.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
