"""Benchmark runner: each contender loads the same input into a fresh DuckDB file.

    python bench/run.py lineitem-to-duckdb [--sf 1] [--repeat N]

A scenario prepares its input once, then runs every contender in its own
subprocess and temp dir, checks the output row count, and reports. The first
contender of a scenario is its reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import databases
import duckdb
import harness
import lineitem
import pg_lineitem

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


class Unavailable(Exception):
    """The contender cannot run here at all (e.g. its tool is not installed)."""


@dataclass(frozen=True)
class Input:
    source: str  # whatever the contenders read: a file path, later a URL
    rows: int
    bytes: int
    setup: dict[str, object] = field(default_factory=dict)  # how it was produced, for the record


@dataclass(frozen=True)
class Job:
    source: str
    out_db: Path
    workdir: Path


@dataclass(frozen=True)
class Contender:
    name: str
    argv: Callable[[Job], list[str]]  # raises Unavailable


@dataclass(frozen=True)
class Scenario:
    prepare: Callable[[argparse.Namespace], Input]
    table: str
    contenders: list[Contender]
    #: Rows the contender left behind; by default ``table`` in the output DuckDB file.
    count: Callable[[Job], int] | None = None


CTAS = """
import sys, duckdb
con = duckdb.connect(sys.argv[2])
con.execute("CREATE TABLE lineitem AS SELECT * FROM read_parquet(?)", [sys.argv[1]])
con.close()
"""


def duckdb_ctas(job: Job) -> list[str]:
    return [sys.executable, "-c", CTAS, job.source, str(job.out_db)]


def agent_etl(job: Job) -> list[str]:
    # The console script of the venv running us, so both contenders use the
    # same duckdb build.
    script = Path(sys.executable).parent / "agent-etl"
    if not script.exists():
        raise Unavailable(f"{script} not found")
    spec = job.workdir / "spec.yaml"
    # json.dumps quotes the paths; a JSON string is a valid YAML scalar.
    spec.write_text(
        "name: lineitem_to_duckdb\n"
        "sources:\n"
        f"  lineitem: {{type: file, path: {json.dumps(job.source)}}}\n"
        f"destination: {{type: duckdb, path: {json.dumps(str(job.out_db))}, table: lineitem, write: replace}}\n"
    )
    return [str(script), "run", str(spec), "--json"]


# The checked scenarios: lineitem's key must be unique and present, as a real pipeline would ask.
CHECKS = "quality:\n  - {not_null: [l_orderkey, l_linenumber, l_shipdate]}\n  - {unique: [l_orderkey, l_linenumber]}\n"


def agent_etl_spec(job: Job, source: str, *, checked: bool, pushdown: bool = True) -> list[str]:
    """agent-etl loading ``source`` (a YAML flow mapping) into table lineitem, with or without CHECKS."""
    script = Path(sys.executable).parent / "agent-etl"
    if not script.exists():
        raise Unavailable(f"{script} not found")
    spec = job.workdir / "spec.yaml"
    spec.write_text(
        "name: lineitem_checked\n"
        f"sources:\n  lineitem: {source}\n"
        f"destination: {{type: duckdb, path: {json.dumps(str(job.out_db))}, table: lineitem, write: replace}}\n"
        + (CHECKS if checked else "")
    )
    env = [f"AGENT_ETL_HOME={job.workdir / 'home'}", f"AGENT_ETL_PUSHDOWN={'true' if pushdown else 'false'}"]
    return ["/usr/bin/env", *env, str(script), "run", str(spec), "--json"]


def checked_contenders(source: Callable[[Job], str]) -> list[Contender]:
    return [
        Contender("agent-etl", lambda job: agent_etl_spec(job, source(job), checked=False)),
        Contender("agent-etl-checked", lambda job: agent_etl_spec(job, source(job), checked=True)),
        Contender(
            "agent-etl-checked-arrow", lambda job: agent_etl_spec(job, source(job), checked=True, pushdown=False)
        ),
    ]


def prepare_csv(args: argparse.Namespace) -> Input:
    parquet = lineitem.ensure(args.sf)
    path = lineitem.DATA_DIR / f"lineitem_sf{args.sf:g}.csv"
    if not path.exists():
        partial = path.with_suffix(".csv.partial")
        with duckdb.connect() as con:
            con.execute(f"COPY (SELECT * FROM read_parquet(?)) TO '{partial}' (HEADER)", [str(parquet)])
        partial.rename(path)
    return Input(str(path), lineitem.parquet_rows(parquet), path.stat().st_size, {"sf": args.sf})


def prepare_lineitem(args: argparse.Namespace) -> Input:
    path = lineitem.lineitem_path(args.sf)
    setup: dict[str, object] = {"sf": args.sf}
    if lineitem.is_complete(path, args.sf):
        print(f"using existing {path}")
    else:
        # Generated in a subprocess so dbgen's memory is returned to the OS
        # before any contender runs, and so it can be measured the same way.
        print(f"generating {path} ...", flush=True)
        m = harness.run_measured([sys.executable, str(BENCH_DIR / "lineitem.py"), "--sf", str(args.sf)])
        if m.returncode != 0:
            raise SystemExit(f"lineitem generation failed (exit {m.returncode}):\n{harness.tail(m.stderr)}")
        print(m.stdout.strip())
        print(f"generation subprocess: {m.seconds:.1f} s wall, peak RSS {m.peak_rss_bytes / harness.MB:.0f} MB")
        setup |= {"generation_seconds": round(m.seconds, 2), "generation_peak_rss_bytes": m.peak_rss_bytes}
    return Input(str(path), lineitem.parquet_rows(path), path.stat().st_size, setup)


def prepare_postgres(args: argparse.Namespace) -> Input:
    table = pg_lineitem.ensure(args.sf, copies=args.copies)
    rows = pg_lineitem.rows_in(databases.PG_URL, table) or 0
    return Input(
        table,
        rows,
        lineitem.lineitem_path(args.sf).stat().st_size * args.copies,
        {"sf": args.sf, "copies": args.copies, "table": f"bench.{table}"},
    )


def prepare_duckdb_file(args: argparse.Namespace) -> Input:
    parquet = lineitem.ensure(args.sf)
    path = lineitem.DATA_DIR / f"lineitem_sf{args.sf:g}.duckdb"
    if not path.exists():
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE TABLE lineitem AS SELECT * FROM read_parquet(?)", [str(parquet)])
    return Input(str(path), lineitem.parquet_rows(parquet), path.stat().st_size, {"sf": args.sf})


def prepare_mysql(args: argparse.Namespace) -> Input:
    parquet = lineitem.ensure(args.sf)
    table = f"lineitem_sf{args.sf:g}".replace(".", "_")
    rows = lineitem.parquet_rows(parquet)
    setup: dict[str, object] = {"sf": args.sf, "table": f"bench.{table}"}
    if databases.mysql_rows(table) != rows:
        print(f"loading bench.{table} into MariaDB with agent-etl ...", flush=True)
        with TemporaryDirectory(prefix="bench-mysql-load-") as tmp:
            m = harness.run_measured(databases.load_mysql_argv(str(parquet), table, Path(tmp)))
        if m.returncode != 0:
            raise SystemExit(f"loading MariaDB failed:\n{harness.tail(m.stderr)}")
        print(
            f"Parquet -> MariaDB (agent-etl, LOAD DATA): {m.seconds:.1f} s, {rows / m.seconds:,.0f} rows/s, peak RSS"
            f" {m.peak_rss_bytes / harness.MB:.0f} MB, load {harness.load_average()[0]:.2f}"
        )
        setup |= {"load_seconds": round(m.seconds, 2), "load_peak_rss_bytes": m.peak_rss_bytes}
    return Input(table, rows, parquet.stat().st_size, setup)


def count_postgres_out(job: Job) -> int:
    return pg_lineitem.rows_in(databases.PG_URL, "lineitem_out") or 0


def _unavailable(fn: Callable[[Job], list[str]]) -> Callable[[Job], list[str]]:
    def argv(job: Job) -> list[str]:
        try:
            return fn(job)
        except databases.Unavailable as exc:
            raise Unavailable(str(exc)) from None

    return argv


SCENARIOS: dict[str, Scenario] = {
    "postgres-to-duckdb": Scenario(
        prepare=prepare_postgres,
        table="lineitem",
        contenders=[
            Contender("duckdb-scanner", databases.duckdb_scanner),
            Contender("agent-etl", _unavailable(databases.agent_etl)),
            Contender(
                "agent-etl-arrow-2parts", _unavailable(lambda job: databases.agent_etl(job, pushdown=False, parts=2))
            ),
            Contender("dlt-connectorx", _unavailable(databases.dlt("connectorx"))),
            Contender("dlt-pyarrow", _unavailable(databases.dlt("pyarrow"))),
        ],
    ),
    "mysql-to-duckdb": Scenario(
        prepare=prepare_mysql,
        table="lineitem",
        contenders=[
            Contender("agent-etl", _unavailable(databases.agent_etl_from_mysql)),
            Contender("dlt-connectorx", _unavailable(databases.dlt_from_mysql)),
        ],
    ),
    "duckdb-to-postgres": Scenario(
        prepare=prepare_duckdb_file,
        table="bench.lineitem_out",
        contenders=[
            Contender("duckdb-postgres-ext", databases.to_pg_scanner),
            Contender("agent-etl", _unavailable(databases.agent_etl_to_pg)),
        ],
        count=count_postgres_out,
    ),
    # Checks at engine speed (issue 14 item 1): each contender against the same load with no check.
    "postgres-to-duckdb-checked": Scenario(
        prepare=prepare_postgres,
        table="lineitem",
        contenders=checked_contenders(
            lambda job: f"{{type: postgres, url: {json.dumps(databases.PG_URL)}, table: bench.{job.source}}}"
        ),
    ),
    "parquet-to-duckdb-checked": Scenario(
        prepare=prepare_lineitem,
        table="lineitem",
        contenders=checked_contenders(lambda job: f"{{type: file, path: {json.dumps(job.source)}}}"),
    ),
    "csv-to-duckdb-checked": Scenario(
        prepare=prepare_csv,
        table="lineitem",
        contenders=checked_contenders(lambda job: f"{{type: file, path: {json.dumps(job.source)}}}"),
    ),
    "lineitem-to-duckdb": Scenario(
        prepare=prepare_lineitem,
        table="lineitem",
        contenders=[Contender("duckdb-ctas", duckdb_ctas), Contender("agent-etl", agent_etl)],
    ),
}


def count_rows(db: Path, table: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def run_contender(
    contender: Contender, scenario: Scenario, data: Input, repeat: int, is_reference: bool
) -> harness.Result:
    result = harness.Result(contender.name, data.rows, data.bytes)
    for attempt in range(1, repeat + 1):
        with TemporaryDirectory(prefix=f"bench-{contender.name}-") as tmp:
            job = Job(data.source, Path(tmp) / "out.duckdb", Path(tmp))
            try:
                argv = contender.argv(job)
            except Unavailable as exc:
                result.status = f"not available: {exc}"
                break
            load = harness.load_average()[0]
            m = harness.run_measured(argv, cwd=job.workdir)
            if m.returncode != 0:
                message = f"{contender.name} exited {m.returncode}; stderr tail:\n{harness.tail(m.stderr)}"
                if is_reference:
                    raise SystemExit(message)  # nothing to compare against
                print(message, file=sys.stderr)
                result.status = f"not available: exit {m.returncode}"
                break
            got = scenario.count(job) if scenario.count else count_rows(job.out_db, scenario.table)
            if got != data.rows:
                raise SystemExit(f"{contender.name}: {got:,} rows in {scenario.table}, expected {data.rows:,}")
            result.runs.append(
                harness.Run(
                    seconds=m.seconds,
                    peak_rss_bytes=m.peak_rss_bytes,
                    kernel_maxrss_bytes=m.kernel_maxrss_bytes,
                    sampled_tree_rss_bytes=m.sampled_tree_rss_bytes,
                    load_1m_at_start=load,
                )
            )
            print(
                f"{contender.name} run {attempt}/{repeat}: {m.seconds:.2f} s, "
                f"peak RSS {m.peak_rss_bytes / harness.MB:.0f} MB, load {load:.2f}",
                flush=True,
            )
    return result


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; the median is reported")
    parser.add_argument(
        "--copies", type=int, default=1, help="database scenarios: repeat the rows (3 for the memory-flatness check)"
    )
    parser.add_argument("--only", help="comma-separated contenders to run (the reference always runs)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    scenario = SCENARIOS[args.scenario]
    started_at = datetime.now().isoformat(timespec="seconds")
    data = scenario.prepare(args)
    load_start = harness.load_average()
    print(f"input: {data.rows:,} rows, {data.bytes / harness.MB:.0f} MB; load average {fmt_load(load_start)}")

    reference = scenario.contenders[0].name
    chosen = set(args.only.split(",")) | {reference} if args.only else None
    results = [
        run_contender(c, scenario, data, args.repeat, is_reference=c.name == reference)
        for c in scenario.contenders
        if chosen is None or c.name in chosen
    ]
    load_end = harness.load_average()

    harness.print_table(f"{args.scenario} (sf={args.sf:g}, repeat={args.repeat})", results, reference)
    print(f"load average (1/5/15 min): start {fmt_load(load_start)}, end {fmt_load(load_end)}")
    record = {
        "scenario": args.scenario,
        "started_at": started_at,
        "args": {"sf": args.sf, "repeat": args.repeat, "copies": args.copies, "only": args.only},
        "machine": harness.machine(),
        "duckdb": duckdb.__version__,
        "load_start": load_start,
        "load_end": load_end,
        "reference": reference,
        "input": {"source": data.source, "rows": data.rows, "bytes": data.bytes, "setup": data.setup},
    }
    print(f"wrote {harness.write_json(RESULTS_DIR, args.scenario, record, results)}")


if __name__ == "__main__":
    main()
