"""WebSocket fan-out: does a run slow down when 50 dashboards watch it, and does each see every task end?

One `agent-etl serve` subprocess holds a pipeline of ROWS rows in FILES Parquet
files (one task per file) into DuckDB. Trials alternate between no subscriber
and CLIENTS subscribers; each subscriber trial starts a separate process
holding CLIENTS WebSocket connections (the `subscribe` mode of this script),
so the clients compete for the same two cores as the server, as real ones on
the same machine would. A run's seconds are the server's own
(run started_at -> finished_at in the store); throughput is rows over that.
The server's CPU seconds per run (user + system, from psutil) are reported
too: on a shared machine they vary less than wall time.

    python bench/ws_fanout.py                       # 2M rows, 4 files, 50 clients, 3 trials each
    python bench/ws_fanout.py --rows 1000000 --repeat 5

Prints a table and writes bench/results/ws-fanout-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_input(directory: Path, rows: int, files: int) -> Path:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    per_file = rows // files
    for i in range(files):
        ids = pa.array(range(i * per_file, (i + 1) * per_file), pa.int64())
        label = pc.binary_join_element_wise("item-", pc.cast(pc.bit_wise_and(ids, 1023), pa.string()), "")
        table = pa.table({"id": ids, "amount": pc.multiply(pc.cast(ids, pa.float64()), 0.5), "label": label})
        pq.write_table(table, directory / f"items-{i}.parquet", row_group_size=100_000)
    spec = directory / "fanout.yaml"
    spec.write_text(
        "name: fanout\nsources:\n  items: {type: file, path: 'items-*.parquet'}\ndestination: {type: duckdb, path:"
        " out.duckdb, table: items, write: replace}\n"
    )
    return spec


async def _subscribe(url: str, clients: int, ready: Path) -> None:
    """Hold CLIENTS connections; print, per client, the task ids whose final event it saw."""
    import websockets

    async def client(connected: asyncio.Event) -> dict:
        finished: set[str] = set()
        resyncs = frames = 0
        run_id = None
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, max_size=None
        ) as ws:
            json.loads(await ws.recv())  # hello
            connected.set()
            while True:
                frame = json.loads(await ws.recv())
                frames += 1
                if frame["type"] == "resync":
                    resyncs += 1
                    for run in frame["runs"]:
                        if run_id in (None, run["run_id"]):
                            finished |= {t["id"] for t in run["tasks"] if t["status"] in ("succeeded", "failed")}
                            if run["status"] != "running" and run_id is not None:
                                return {
                                    "finished": sorted(finished),
                                    "resyncs": resyncs,
                                    "run_id": run_id,
                                    "frames": frames,
                                }
                    continue
                for event in frame["events"]:
                    if event["kind"] == "run_started":
                        run_id = event["run_id"]
                    elif event["kind"] == "task_finished" and event["run_id"] == run_id:
                        finished.add(event["task_id"])
                    elif event["kind"] == "run_finished" and event["run_id"] == run_id:
                        return {"finished": sorted(finished), "resyncs": resyncs, "run_id": run_id, "frames": frames}

    events = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(client(event)) for event in events]
    await asyncio.gather(*(e.wait() for e in events))
    ready.write_text("ready")
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    print(json.dumps(results))


def _run_once(base: str, subscribers: int, workdir: Path, trial: int, server_pid: int) -> dict:
    import httpx
    import psutil

    server = psutil.Process(server_pid)

    sub = None
    if subscribers:
        ready = workdir / f"ready-{trial}"
        ws_url = base.replace("http://", "ws://") + "/ws"
        sub = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "subscribe",
                "--url",
                ws_url,
                "--clients",
                str(subscribers),
                "--ready",
                str(ready),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if sub.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"subscribers did not connect (exit {sub.poll()})")
            time.sleep(0.05)
        clients_process = psutil.Process(sub.pid)
        clients_cpu_before = sum(clients_process.cpu_times()[:2])
    load = os.getloadavg()
    cpu_before = sum(server.cpu_times()[:2])
    run_id = httpx.post(
        f"{base}/api/v1/runs", json={"pipeline": "fanout"}, headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()["run_id"]
    while (run := httpx.get(f"{base}/api/v1/runs/{run_id}").json())["status"] == "running":
        time.sleep(0.1)
    server_cpu = sum(server.cpu_times()[:2]) - cpu_before
    tasks = sorted(t["id"] for t in run["tasks"])
    record = {
        "server_cpu_seconds": round(server_cpu, 3),
        "subscribers": subscribers,
        "run_id": run_id,
        "status": run["status"],
        "seconds": run["seconds"],
        "rows": run["rows_written"],
        "rows_per_second": run["rows_written"] / run["seconds"],
        "load_1m_at_start": load[0],
        "tasks": len(tasks),
    }
    if sub is not None:
        clients_cpu = (
            sum(clients_process.cpu_times()[:2]) - clients_cpu_before
        )  # before it exits; it is done once the run is
        out, _ = sub.communicate(timeout=120)
        clients = json.loads(out)
        complete = sum(1 for c in clients if c["run_id"] == run_id and c["finished"] == tasks)
        record.update(
            {
                "clients_with_every_task_end": complete,
                "clients": len(clients),
                "resyncs": sum(c["resyncs"] for c in clients),
                "frames_per_client": statistics.median(c["frames"] for c in clients),
                "clients_cpu_seconds": round(clients_cpu, 3),
            }
        )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "subscribe"])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url")
    parser.add_argument("--ready", type=Path)
    args = parser.parse_args()
    if args.mode == "subscribe":
        asyncio.run(_subscribe(args.url, args.clients, args.ready))
        return

    from harness import load_average, machine

    started_load = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        workdir = Path(tmp)
        spec = make_input(workdir, args.rows, args.files)
        port = _free_port()
        env = {
            **os.environ,
            "AGENT_ETL_HOME": str(workdir / "home"),
            "AGENT_ETL_API_TOKEN": TOKEN,
            "AGENT_ETL_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("agent-etl")), "serve", str(spec), "--port", str(port)],
            cwd=workdir,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/api/v1/pipelines", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit("serve did not start") from None
                    time.sleep(0.1)
            _run_once(base, 0, workdir, -1, server.pid)  # warm-up: page cache, imports, DuckDB file
            trials = []
            for _ in range(args.repeat):
                for subscribers in (0, args.clients):
                    trials.append(_run_once(base, subscribers, workdir, len(trials), server.pid))
                    print(json.dumps(trials[-1]), flush=True)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)

    alone = [t["rows_per_second"] for t in trials if t["subscribers"] == 0]
    watched = [t["rows_per_second"] for t in trials if t["subscribers"]]
    summary = {
        "rows": args.rows,
        "files": args.files,
        "clients": args.clients,
        "repeat": args.repeat,
        "median_rows_per_second_alone": statistics.median(alone),
        "median_rows_per_second_watched": statistics.median(watched),
        "drop_percent": round(100 * (1 - statistics.median(watched) / statistics.median(alone)), 1),
        # Each watched trial against the unwatched one just before it: slow drifts in the machine's load cancel out.
        "median_paired_drop_percent": round(
            100 * statistics.median(1 - w / a for a, w in zip(alone, watched, strict=True)), 1
        ),
        # CPU the server spends per run is steadier than wall time on a shared machine.
        "median_server_cpu_seconds_alone": statistics.median(
            t["server_cpu_seconds"] for t in trials if t["subscribers"] == 0
        ),
        "median_server_cpu_seconds_watched": statistics.median(
            t["server_cpu_seconds"] for t in trials if t["subscribers"]
        ),
        "median_clients_cpu_seconds": statistics.median(t["clients_cpu_seconds"] for t in trials if t["subscribers"]),
        "median_frames_per_client": statistics.median(t["frames_per_client"] for t in trials if t["subscribers"]),
        "every_client_saw_every_task_end": all(
            t["clients_with_every_task_end"] == t["clients"] == args.clients for t in trials if t["subscribers"]
        ),
        "load_average_start": started_load,
        "load_average_end": load_average(),
    }
    print(f"\n{args.rows:,} rows in {args.files} tasks; median over {args.repeat} trials each")
    print(f"  no subscriber : {summary['median_rows_per_second_alone']:>12,.0f} rows/s")
    print(
        f"  {args.clients} subscribers: {summary['median_rows_per_second_watched']:>12,.0f} rows/s "
        f" ({summary['drop_percent']}% drop; {summary['median_paired_drop_percent']}% median of paired trials)"
    )
    print(
        f"  server CPU seconds per run: {summary['median_server_cpu_seconds_alone']:.2f} alone,"
        f" {summary['median_server_cpu_seconds_watched']:.2f} watched"
    )
    print(
        f"  clients' process: {summary['median_clients_cpu_seconds']:.2f} CPU s per run,"
        f" {summary['median_frames_per_client']:.0f} frames per client"
    )
    print(f"  every client saw every task's final event: {summary['every_client_saw_every_task_end']}")
    print(f"  load average at start {started_load}, at end {summary['load_average_end']}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"ws-fanout-{datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"summary": summary, "trials": trials, "machine": machine()}, indent=1, default=str))
    print(f"  wrote {path}")


if __name__ == "__main__":
    main()
