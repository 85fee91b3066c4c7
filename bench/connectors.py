"""Connector benchmarks: REST extraction, rate-limit accuracy, CSV to Parquet, a Parquet round trip to S3.

    python bench/connectors.py rest [--repeat 20]         # json-server and a minimal node server, unthrottled
    python bench/connectors.py rest-vs-aiohttp [--rounds 3]  # the REST source against raw aiohttp, same server, same run
    python bench/connectors.py rate-limit [--seconds 30]  # rate_limit: 100/s; then a server that limits at 100/s
    python bench/connectors.py csv-to-parquet [--sf 1]    # lineitem as CSV -> Parquet files
    python bench/connectors.py s3-roundtrip [--sf 1]      # lineitem Parquet -> SeaweedFS -> back

Every contender runs in its own subprocess, measured by harness.run_measured
(wall time, peak RSS); figures and load averages go to bench/results/.
Servers are started here on 127.0.0.1 and stopped by their pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import harness
import lineitem

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


@contextmanager
def server(
    argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd
    )
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def json_server_cli() -> Path:
    cache = REPO / ".cache" / "npm"
    cli = cache / "node_modules" / "json-server" / "lib" / "cli" / "bin.js"
    if not cli.exists():
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
        )
    return cli


def measured(name: str, argv: list[str], **extra: object) -> dict[str, object]:
    load = harness.load_average()
    m = harness.run_measured(argv)
    if m.returncode != 0:
        raise SystemExit(f"{name} failed ({m.returncode}):\n{harness.tail(m.stderr)}")
    figures = json.loads(m.stdout.strip().splitlines()[-1]) if m.stdout.strip().startswith("{") else {}
    row = {
        "contender": name,
        "wall_seconds": round(m.seconds, 2),
        "peak_rss_mb": round(m.peak_rss_bytes / harness.MB),
        "load_1m": round(load[0], 2),
        **figures,
        **extra,
    }
    print(json.dumps(row), flush=True)
    return row


def rest(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    port = free_port()
    items = [
        {
            "id": i,
            "name": f"item {i}",
            "price": i * 1.25,
            "updated_at": "2024-01-01T00:00:00",
            "address": {"city": f"city {i % 7}", "zip": str(10000 + i)},
            "tags": [f"t{i % 3}"],
        }
        for i in range(1, 10_001)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db.json"
        db.write_text(json.dumps({"items": items}))
        with server(
            ["node", str(json_server_cli()), "--host", "127.0.0.1", "--port", str(port), "--quiet", str(db)], port
        ):
            for concurrency in (8, 16):
                rows.append(
                    measured(
                        f"json-server c={concurrency}",
                        [
                            PY,
                            str(BENCH / "rest_client.py"),
                            f"http://127.0.0.1:{port}/items",
                            "--repeat",
                            str(args.repeat),
                            "--param",
                            "_page",
                            "--size-param",
                            "_limit",
                            "--records",
                            "",
                            "--concurrency",
                            str(concurrency),
                        ],
                    )
                )
    port = free_port()
    with server(["node", str(BENCH / "fast_server.js"), str(port), str(100 * 100 * args.repeat)], port):
        for concurrency in (8, 16):
            rows.append(
                measured(
                    f"node http c={concurrency}",
                    [
                        PY,
                        str(BENCH / "rest_client.py"),
                        f"http://127.0.0.1:{port}/items",
                        "--concurrency",
                        str(concurrency),
                    ],
                )
            )
        rows.append(
            measured(
                "raw httpx, no agent-etl (ceiling)",
                [PY, str(BENCH / "raw_httpx.py"), f"http://127.0.0.1:{port}/items", str(100 * args.repeat)],
            )
        )
    return rows


def rest_vs_aiohttp(args: argparse.Namespace) -> list[dict[str, object]]:
    """2,000 pages of 100 records from the node server: raw aiohttp, then the REST source, in alternating pairs.

    Each pair gives two ratios, REST source over raw aiohttp: of requests per
    second (wall clock) and of requests per CPU second (all threads of the
    process), the second steadier when other work shares the machine.
    """
    pages = 2000
    rows: list[dict[str, object]] = []
    pairs: list[tuple[float, float]] = []
    port = free_port()
    items = f"http://127.0.0.1:{port}/items"
    with server(["node", str(BENCH / "fast_server.js"), str(port), str(pages * 100)], port):
        for round_ in range(1, args.rounds + 1):
            raw = measured(f"raw aiohttp, round {round_}", [PY, str(BENCH / "raw_aiohttp.py"), items, str(pages)])
            ours = measured(
                f"REST source c=8, round {round_}", [PY, str(BENCH / "rest_client.py"), items, "--concurrency", "8"]
            )
            pairs.append(
                tuple(float(ours[key]) / float(raw[key]) for key in ("requests_per_second", "requests_per_cpu_second"))  # type: ignore[arg-type]
            )
            rows += [raw, ours]
    wall, cpu = (sorted(ratio[i] for ratio in pairs) for i in (0, 1))
    summary = {"median_ratio_wall": round(wall[len(wall) // 2], 3), "median_ratio_cpu": round(cpu[len(cpu) // 2], 3)}
    print(json.dumps({**summary, "pairs": [[round(w, 3), round(c, 3)] for w, c in pairs]}), flush=True)
    return [*rows, summary]


def rate_limit(args: argparse.Namespace) -> list[dict[str, object]]:
    pages = int(100 * args.seconds)
    rows = []
    port = free_port()
    import httpx

    with server(["node", str(BENCH / "fast_server.js"), str(port), str(pages * 100)], port):
        row = measured(
            "rate_limit: 100/s",
            [
                PY,
                str(BENCH / "rest_client.py"),
                f"http://127.0.0.1:{port}/items",
                "--rate",
                "100/s",
                "--concurrency",
                "8",
            ],
        )
        stats = row["server_stats"] = httpx.get(f"http://127.0.0.1:{port}/stats").json()
        row["observed_rate"] = round(stats["rate"], 2)
        row["error_percent"] = round(stats["rate"] - 100, 2)
        rows.append(row)
    port = free_port()
    with server(["node", str(BENCH / "fast_server.js"), str(port), str(pages * 100)], port, env={"LIMIT": "100"}):
        row = measured(
            "server limits at 100/s, client unthrottled",
            [PY, str(BENCH / "rest_client.py"), f"http://127.0.0.1:{port}/items", "--concurrency", "8"],
        )
        row["server_stats"] = httpx.get(f"http://127.0.0.1:{port}/stats").json()
        row["pages_lost"] = pages - int(row["rows"]) // 100  # type: ignore[call-overload]
        rows.append(row)
    return rows


def csv_input(sf: float) -> Path:
    parquet = lineitem.lineitem_path(sf)
    if not lineitem.is_complete(parquet, sf):
        subprocess.run([PY, str(BENCH / "lineitem.py"), "--sf", str(sf)], check=True)
    path = parquet.with_suffix(".csv")
    if not path.exists():
        import duckdb

        tmp = path.with_suffix(".csv.partial")
        duckdb.execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{tmp}' (HEADER, DELIMITER ',')")
        tmp.rename(path)
    return path


def csv_to_parquet(args: argparse.Namespace) -> list[dict[str, object]]:
    path = csv_input(args.sf)
    size = path.stat().st_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = f"import duckdb; duckdb.execute(\"COPY (SELECT * FROM read_csv('{path}')) TO '{tmp}/ref.parquet'\")"
        rows.append(measured("duckdb COPY (reference)", [PY, "-c", ref]))
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(
            f"name: csv_to_parquet\nsources:\n  lineitem: {{type: file, path: {json.dumps(str(path))}}}\ndestination:"
            f" {{type: file, path: {json.dumps(tmp + '/out')}, format: parquet}}\n"
        )
        # its own metadata store: a shared ~/.agent-etl may hold another version's schema
        rows.append(
            measured(
                "agent-etl run (csv -> parquet files)",
                ["env", f"AGENT_ETL_HOME={tmp}/home", str(Path(PY).parent / "agent-etl"), "run", str(spec)],
            )
        )
        read_only = (
            "from agent_orchestrated_etl.connectors.files import FileSource, FileSourceSpec\ns = FileSource('l',"
            f" FileSourceSpec(type='file', path={str(path)!r}), batch_rows=131072)\nprint(sum(b.num_rows for p in"
            " s.partitions() for b, _ in s.read(p)))"
        )
        rows.append(measured("FileSource.read alone", [PY, "-c", read_only]))
    for row in rows:
        row["csv_mb"] = round(size / harness.MB)
        row["mb_per_second"] = round(size / harness.MB / float(row["wall_seconds"]), 1)  # type: ignore[arg-type]
    return rows


def s3_roundtrip(args: argparse.Namespace) -> list[dict[str, object]]:
    parquet = lineitem.lineitem_path(args.sf)
    if not lineitem.is_complete(parquet, args.sf):
        subprocess.run([PY, str(BENCH / "lineitem.py"), "--sf", str(args.sf)], check=True)
    weed = Path(PY).parent / "weed"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s3.json").write_text(
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
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        argv = [
            str(weed),
            f"-logdir={tmp}",
            "mini",
            f"-dir={tmp}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={tmp}/s3.json",
            f"-s3.port={ports['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            f"-admin.port={ports['admin']}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            "-webdav.port=0",
            f"-filer.localSocket={tmp}/f.sock",
            f"-s3.localSocket={tmp}/s.sock",
        ]
        with server(argv, ports["s3"], cwd=Path(tmp)):
            time.sleep(1)
            return [
                measured(
                    "parquet -> S3 -> parquet",
                    [PY, str(BENCH / "s3_roundtrip.py"), str(parquet), f"http://127.0.0.1:{ports['s3']}"],
                )
            ]


SCENARIOS = {
    "rest": rest,
    "rest-vs-aiohttp": rest_vs_aiohttp,
    "rate-limit": rate_limit,
    "csv-to-parquet": csv_to_parquet,
    "s3-roundtrip": s3_roundtrip,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--repeat", type=int, default=20, help="rest: reads of json-server's 100 pages")
    parser.add_argument("--rounds", type=int, default=3, help="rest-vs-aiohttp: alternating pairs")
    parser.add_argument("--seconds", type=float, default=30, help="rate-limit: length of the run")
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor of lineitem")
    args = parser.parse_args()
    if shutil.which("node") is None and args.scenario in ("rest", "rest-vs-aiohttp", "rate-limit"):
        raise SystemExit("node is needed for the HTTP servers")
    load_start = harness.load_average()
    rows = SCENARIOS[args.scenario](args)
    record = {
        "scenario": args.scenario,
        "args": vars(args),
        "machine": harness.machine(),
        "load_start": load_start,
        "load_end": harness.load_average(),
        "results": rows,
    }
    out = BENCH / "results" / f"{args.scenario}-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"load average start {load_start}, end {record['load_end']}; wrote {out}")


if __name__ == "__main__":
    main()
