"""How long an incremental run takes when 1% of the rows changed (PostgreSQL -> DuckDB, merge).

    python bench/incremental.py [--sf 1] [--percent 1]

Makes ``bench.lineitem_inc`` once: lineitem with an ``id`` primary key and an
indexed ``updated_at``. Then, each time: a full first run into a new DuckDB
file (measured), an UPDATE of ``percent``% of the rows, and the incremental
run that picks them up (measured), both as ``agent-etl run`` subprocesses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import databases
import duckdb
import harness
import pg_lineitem
import psycopg


def ensure_table(sf: float) -> int:
    source = pg_lineitem.ensure(sf)
    with psycopg.connect(databases.PG_URL, autocommit=True) as conn:
        expected = conn.execute(f"SELECT count(*) FROM bench.{source}").fetchone()[0]
        if pg_lineitem.rows_in(databases.PG_URL, "lineitem_inc") != expected:
            print("making bench.lineitem_inc ...", flush=True)
            conn.execute("DROP TABLE IF EXISTS bench.lineitem_inc")
            conn.execute(
                "CREATE TABLE bench.lineitem_inc AS SELECT row_number() OVER () AS id, timestamptz '2024-01-01' AS"
                f" updated_at, * FROM bench.{source}"
            )
            conn.execute("ALTER TABLE bench.lineitem_inc ADD PRIMARY KEY (id)")
            conn.execute("CREATE INDEX ON bench.lineitem_inc (updated_at)")
            conn.execute("VACUUM ANALYZE bench.lineitem_inc")
    return expected


def run(spec: Path, home: Path) -> harness.Measurement:
    script = Path(sys.executable).parent / "agent-etl"
    m = harness.run_measured(["/usr/bin/env", f"AGENT_ETL_HOME={home}", str(script), "run", str(spec), "--json"])
    if m.returncode != 0:
        raise SystemExit(f"agent-etl failed:\n{harness.tail(m.stderr)}")
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--percent", type=float, default=1.0)
    args = parser.parse_args()
    rows = ensure_table(args.sf)
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        out = Path(tmp) / "out.duckdb"
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(
            f"name: lineitem_incremental\nsources:\n  lineitem: {{type: postgres, url: {json.dumps(databases.PG_URL)},"
            " table: bench.lineitem_inc, incremental: {cursor: updated_at, primary_key: [id]}}\ndestination:"
            f" {{type: duckdb, path: {json.dumps(str(out))}, table: lineitem, write: merge, primary_key: [id]}}\n"
        )
        load = harness.load_average()
        full = run(spec, Path(tmp) / "home")
        modulus = round(100 / args.percent)
        with psycopg.connect(databases.PG_URL, autocommit=True) as conn:
            changed = conn.execute(
                f"UPDATE bench.lineitem_inc SET updated_at = now(), l_comment = 'changed' WHERE id % {modulus} = 0"
            ).rowcount
        load_inc = harness.load_average()
        incremental = run(spec, Path(tmp) / "home")
        with duckdb.connect(str(out), read_only=True) as con:
            total, marked = con.execute(
                "SELECT count(*), count(*) FILTER (l_comment = 'changed') FROM lineitem"
            ).fetchone()
        if (total, marked) != (rows, changed):
            raise SystemExit(f"expected {rows:,} rows with {changed:,} changed, found {total:,} and {marked:,}")
        print(f"table: {rows:,} rows; changed: {changed:,} ({args.percent:g}%)")
        print(
            f"first (full) run:   {full.seconds:6.2f} s, {rows / full.seconds:,.0f} rows/s, peak RSS"
            f" {full.peak_rss_bytes / harness.MB:.0f} MB, load {load[0]:.2f}"
        )
        print(
            f"incremental run:    {incremental.seconds:6.2f} s, peak RSS {incremental.peak_rss_bytes / harness.MB:.0f}"
            f" MB, load {load_inc[0]:.2f}"
        )


if __name__ == "__main__":
    main()
