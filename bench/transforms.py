"""Transform steps, profiling and checks against the raw engine, on TPC-H lineitem as Arrow.

    python bench/transforms.py [--sf 1] [--repeat 3] [--cases filter_project,derive,dedupe,q1,profile,checks]

Each case runs twice per repeat, each time in a fresh subprocess: ``raw`` is
DuckDB itself over the in-memory Arrow table (the ceiling), ``ours`` is the same
work written as transform steps and run by the engine a task uses (the
StreamChain over the table's 131,072-row batches, in the run's sandboxed DuckDB).
The child loads the Parquet file into memory first and times only the work; MB/s
is the Arrow table's size over that time. ``checks`` is different: it times a
whole ``agent-etl run`` of the file into DuckDB, with and without five row checks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness
import lineitem

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BATCH_ROWS = 131_072

Q1_SQL = """
SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc, count(*) AS count_order
FROM t WHERE l_shipdate <= DATE '1998-09-02' GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus
"""

#: (raw DuckDB SQL over table t, our steps, whether the task numbers rows for it)
CASES: dict[str, tuple[str, list[dict], bool]] = {
    "filter_project": (
        "SELECT l_orderkey, l_partkey, l_quantity, l_extendedprice, l_shipdate, l_comment FROM t WHERE l_quantity < 25",
        [
            {"filter": "l_quantity < 25"},
            {"select": ["l_orderkey", "l_partkey", "l_quantity", "l_extendedprice", "l_shipdate", "l_comment"]},
        ],
        False,
    ),
    "derive": (
        "SELECT *, l_extendedprice * (1 - l_discount) AS disc_price FROM t",
        [{"derive": {"disc_price": "l_extendedprice * (1 - l_discount)"}}],
        False,
    ),
    "dedupe": (
        "SELECT DISTINCT ON (l_orderkey, l_linenumber) * FROM t",
        [{"dedupe": {"keys": ["l_orderkey", "l_linenumber"]}}],
        True,
    ),
    "q1": (
        Q1_SQL,
        [
            {"filter": "l_shipdate <= DATE '1998-09-02'"},
            {
                "derive": {
                    "disc_price": "l_extendedprice * (1 - l_discount)",
                    "charge": "l_extendedprice * (1 - l_discount) * (1 + l_tax)",
                }
            },
            {
                "aggregate": {
                    "group_by": ["l_returnflag", "l_linestatus"],
                    "measures": {
                        "sum_qty": "sum(l_quantity)",
                        "sum_base_price": "sum(l_extendedprice)",
                        "sum_disc_price": "sum(disc_price)",
                        "sum_charge": "sum(charge)",
                        "avg_qty": "avg(l_quantity)",
                        "avg_price": "avg(l_extendedprice)",
                        "avg_disc": "avg(l_discount)",
                        "count_order": "count(*)",
                    },
                }
            },
            {"sort": ["l_returnflag", "l_linestatus"]},
        ],
        True,
    ),
    "profile": ("SUMMARIZE t", [], False),
}

FIVE_CHECKS = """\
quality:
  - {not_null: [l_orderkey, l_partkey]}
  - {in_range: {column: l_quantity, min: 1, max: 50}}
  - {accepted_values: {column: l_returnflag, values: [A, N, R]}}
  - {regex: {column: l_shipmode, pattern: "^[A-Z ]+$"}}
  - {sql: "l_receiptdate >= l_shipdate"}
"""


def child(case: str, engine: str, source: str, memory_limit: int) -> None:
    """Run one case in this process and print {"seconds", "rows_out"} as JSON."""
    import duckdb
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    raw_sql, steps, numbered = CASES[case]
    started = time.perf_counter()
    if engine == "raw":
        con = duckdb.connect()
        con.register("t", table)
        rows = sum(b.num_rows for b in con.execute(raw_sql).to_arrow_reader(BATCH_ROWS))
    elif case == "profile":
        from agent_orchestrated_etl.profiling.profile import profile_stream

        with tempfile.TemporaryDirectory() as spill:
            rows = profile_stream(
                "lineitem",
                table.schema,
                iter(table.to_batches(BATCH_ROWS)),
                memory_limit_bytes=memory_limit,
                spill_dir=Path(spill),
            ).rows_profiled
    else:
        rows = run_steps(table, steps, numbered, memory_limit)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows_out": rows}))


def run_steps(table, steps: list[dict], numbered: bool, memory_limit: int) -> int:
    import pyarrow as pa

    from agent_orchestrated_etl.connectors.base import Position
    from agent_orchestrated_etl.transform.chain import Point, StreamChain
    from agent_orchestrated_etl.transform.rows import Numbering, Origins
    from agent_orchestrated_etl.transform.steps import TransformSpec
    from agent_orchestrated_etl.transform.workspace import Workspace

    transform = TransformSpec.model_validate({"name": "t", "input": "lineitem", "steps": steps})
    with tempfile.TemporaryDirectory() as run_dir:
        workspace = Workspace(Path(run_dir), memory_limit_bytes=memory_limit)
        origins = Origins()
        chain = StreamChain(
            workspace,
            [Point("lineitem", None, -1, []), Point("t", transform, 0, [])],
            run_id="bench",
            task_id="bench",
            scope="bench",
            batch_rows=BATCH_ROWS,
            locate=origins.locate,
            quarantine=lambda rows: None,
        )
        batches = iter(table.to_batches(BATCH_ROWS))
        schema = table.schema
        if numbered:  # as a task does for blocking steps: rows carry their ordinal
            batches = Numbering(origins).number((b, Position("lineitem", row=1)) for b in batches)
            schema = schema.append(pa.field("__agent_etl_row", pa.int64()))
        try:
            return sum(b.num_rows for b in chain.run(schema, batches))
        finally:
            chain.close()
            workspace.close()


def spec_text(source: str, out_db: Path, checks: bool) -> str:
    return (
        "name: lineitem_checks\n"
        f"sources:\n  lineitem: {{type: file, path: {json.dumps(source)}}}\n"
        f"destination: {{type: duckdb, path: {json.dumps(str(out_db))}, table: lineitem, write: replace}}\n"
        + (FIVE_CHECKS if checks else "")
    )


def measure(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[harness.Measurement, dict]:
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        m = harness.run_measured(argv, cwd=cwd)
    finally:
        os.environ.clear()
        os.environ.update(old)
    if m.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed:\n{harness.tail(m.stderr)}")
    lines = [line for line in m.stdout.splitlines() if line.startswith('{"seconds"')]
    return m, json.loads(lines[-1]) if lines else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cases", default="filter_project,derive,dedupe,q1,profile,checks")
    parser.add_argument(
        "--memory-limit", default="4GB", help="AGENT_ETL_MEMORY_LIMIT for our side (DuckDB gets a quarter)"
    )
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from agent_orchestrated_etl.config import parse_size

    path = lineitem.ensure(args.sf)
    if args.child:
        child(args.child[0], args.child[1], str(path), parse_size(args.memory_limit))
        return
    import pyarrow.parquet as pq

    arrow_bytes = pq.read_table(path).nbytes
    rows = lineitem.parquet_rows(path)
    print(
        f"lineitem sf={args.sf:g}: {rows:,} rows, {arrow_bytes / harness.MB:,.0f} MB as Arrow; load"
        f" {harness.load_average()}"
    )
    record: dict = {
        "sf": args.sf,
        "repeat": args.repeat,
        "memory_limit": args.memory_limit,
        "machine": harness.machine(),
        "load_start": harness.load_average(),
        "cases": {},
    }
    for case in args.cases.split(","):
        runs: dict[str, list[dict]] = {}
        engines = ("load", "load+5 checks") if case == "checks" else ("raw", "ours")
        for _ in range(args.repeat):
            for engine in engines:
                load = harness.load_average()[0]
                if case == "checks":
                    with tempfile.TemporaryDirectory() as tmp:
                        spec = Path(tmp) / "spec.yaml"
                        spec.write_text(spec_text(str(path), Path(tmp) / "out.duckdb", engine != "load"))
                        script = Path(sys.executable).parent / "agent-etl"
                        m, _ = measure(
                            [str(script), "run", str(spec), "--json"],
                            {"AGENT_ETL_HOME": str(Path(tmp) / "home"), "AGENT_ETL_MEMORY_LIMIT": args.memory_limit},
                            cwd=Path(tmp),
                        )
                        seconds, rows_out = m.seconds, rows
                else:
                    m, out = measure(
                        [
                            sys.executable,
                            __file__,
                            "--sf",
                            str(args.sf),
                            "--memory-limit",
                            args.memory_limit,
                            "--child",
                            case,
                            engine,
                        ]
                    )
                    seconds, rows_out = out["seconds"], out["rows_out"]
                run = {
                    "seconds": round(seconds, 3),
                    "rows_out": rows_out,
                    "mb_per_s": round(arrow_bytes / harness.MB / seconds, 1),
                    "peak_rss_mb": round(m.peak_rss_bytes / harness.MB),
                    "load_1m": round(load, 2),
                }
                runs.setdefault(engine, []).append(run)
                print(
                    f"{case:15} {engine:14} {seconds:7.2f} s {run['mb_per_s']:8.1f} MB/s  rows out {rows_out:>10,} "
                    f" peak RSS {run['peak_rss_mb']:>6} MB  load {load:.2f}",
                    flush=True,
                )
        first, second = engines
        median = {e: statistics.median(r["seconds"] for r in runs[e]) for e in engines}
        ratio = median[first] / median[second]
        label = "extra time" if case == "checks" else "of raw throughput"
        value = f"{median[second] / median[first] - 1:+.1%}" if case == "checks" else f"{ratio:.0%}"
        print(
            f"{case}: median {first} {median[first]:.2f} s, {second} {median[second]:.2f} s -> {value} {label}\n",
            flush=True,
        )
        record["cases"][case] = {"runs": runs, "median_seconds": median}
    record["load_end"] = harness.load_average()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"transforms-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"load average start {record['load_start']}, end {record['load_end']}; wrote {out}")


if __name__ == "__main__":
    main()
