"""Contenders for the database scenarios of run.py: PostgreSQL into DuckDB, and the reverse.

Each function takes run.py's Job (source = the PostgreSQL table, or the
DuckDB file for the reverse) and returns the argv to measure.
dlt runs from its own virtualenv, bench/.venv-dlt (see bench/README.md).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DLT_PYTHON = BENCH_DIR / ".venv-dlt" / "bin" / "python"

SCANNER = """
import sys, duckdb
from agent_orchestrated_etl.connectors.duckdb import postgres_extension
con = duckdb.connect(sys.argv[3])
con.execute(f"LOAD '{postgres_extension()}'")
con.execute(f"ATTACH '{sys.argv[1]}' AS pg (TYPE postgres, READ_ONLY)")
con.execute(f"CREATE TABLE lineitem AS SELECT * FROM pg.bench.{sys.argv[2]}")
con.close()
"""

DLT = """
import sys
import dlt
from dlt.sources.sql_database import sql_table
backend, url, table, out, workdir = sys.argv[1:6]
resource = sql_table(credentials=url, schema="bench", table=table, backend=backend, reflection_level="full_with_precision")
resource.apply_hints(table_name="lineitem")
pipeline = dlt.pipeline("bench", destination=dlt.destinations.duckdb(out), dataset_name="main", pipelines_dir=workdir + "/dlt")
pipeline.run(resource, write_disposition="replace")
"""


class Unavailable(Exception):
    pass


def duckdb_scanner(job: Any) -> list[str]:
    return [sys.executable, "-c", SCANNER, PG_URL, job.source, str(job.out_db)]


def agent_etl(job: Any, *, pushdown: bool = True, parts: int = 1) -> list[str]:
    script = Path(sys.executable).parent / "agent-etl"
    if not script.exists():
        raise Unavailable(f"{script} not found")
    partition = f", partition: {{column: l_orderkey, parts: {parts}}}" if parts > 1 else ""
    spec = job.workdir / "spec.yaml"
    spec.write_text(
        "name: pg_to_duckdb\n"
        "sources:\n"
        f"  lineitem: {{type: postgres, url: {json.dumps(PG_URL)}, table: bench.{job.source}{partition}}}\n"
        f"destination: {{type: duckdb, path: {json.dumps(str(job.out_db))}, table: lineitem, write: replace}}\n"
    )
    env = [f"AGENT_ETL_HOME={job.workdir / 'home'}", f"AGENT_ETL_PUSHDOWN={'true' if pushdown else 'false'}"]
    return ["/usr/bin/env", *env, str(script), "run", str(spec), "--json"]


def dlt(backend: str):  # noqa: ANN201 - returns a contender function
    def argv(job: Any) -> list[str]:
        if not DLT_PYTHON.exists():
            raise Unavailable(f"{DLT_PYTHON} not found; see bench/README.md to make dlt's venv")
        url = PG_URL.replace("postgresql://", "postgresql+psycopg2://") if backend != "connectorx" else PG_URL
        return [
            "/usr/bin/env",
            "RUNTIME__DLTHUB_TELEMETRY=false",
            str(DLT_PYTHON),
            "-c",
            DLT,
            backend,
            url,
            job.source,
            str(job.out_db),
            str(job.workdir),
        ]

    return argv


# The reverse: a DuckDB file into PostgreSQL. job.source is the DuckDB file, the
# output table is bench.lineitem_out (replaced by each contender).
TO_PG_SCANNER = """
import sys, duckdb
from agent_orchestrated_etl.connectors.duckdb import postgres_extension
con = duckdb.connect(sys.argv[2])  # read-only would attach PostgreSQL read-only too
con.execute(f"LOAD '{postgres_extension()}'")
con.execute(f"ATTACH '{sys.argv[1]}' AS pg (TYPE postgres)")
con.execute("DROP TABLE IF EXISTS pg.bench.lineitem_out")
con.execute("CREATE TABLE pg.bench.lineitem_out AS SELECT * FROM lineitem")
con.close()
"""


def to_pg_scanner(job: Any) -> list[str]:
    return [sys.executable, "-c", TO_PG_SCANNER, PG_URL, job.source]


def agent_etl_to_pg(job: Any) -> list[str]:
    script = Path(sys.executable).parent / "agent-etl"
    spec = job.workdir / "spec.yaml"
    spec.write_text(
        "name: duckdb_to_pg\n"
        f"sources:\n  lineitem: {{type: duckdb, path: {json.dumps(job.source)}, table: lineitem}}\n"
        f"destination: {{type: postgres, url: {json.dumps(PG_URL)}, table: bench.lineitem_out, write: replace}}\n"
    )
    # Like the reference, which drops the table and creates it again.
    drop = f"psql {PG_URL} -qc 'DROP TABLE IF EXISTS bench.lineitem_out'"
    return ["/bin/sh", "-c", f"{drop} && exec env AGENT_ETL_HOME={job.workdir / 'home'} {script} run {spec} --json"]


# MariaDB into DuckDB. The MariaDB table bench.lineitem_sf<sf> is loaded once by
# agent-etl itself (Parquet -> MariaDB through LOAD DATA), which is timed too.
MYSQL_URL = os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/bench")


def mysql_rows(table: str) -> int | None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS bench")
            cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'bench' AND table_name = %s",
                (table,),
            )
            if not cur.fetchone()[0]:
                return None
            cur.execute(f"SELECT count(*) FROM bench.{table}")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def load_mysql_argv(parquet: str, table: str, workdir: Path) -> list[str]:
    spec = workdir / "load.yaml"
    spec.write_text(
        "name: parquet_to_mariadb\n"
        f"sources:\n  lineitem: {{type: file, path: {json.dumps(parquet)}}}\n"
        f"destination: {{type: mysql, url: {json.dumps(MYSQL_URL)}, table: {table}, write: replace}}\n"
    )
    return [
        "/usr/bin/env",
        f"AGENT_ETL_HOME={workdir / 'home'}",
        str(Path(sys.executable).parent / "agent-etl"),
        "run",
        str(spec),
        "--json",
    ]


def agent_etl_from_mysql(job: Any) -> list[str]:
    spec = job.workdir / "spec.yaml"
    spec.write_text(
        "name: mariadb_to_duckdb\n"
        f"sources:\n  lineitem: {{type: mysql, url: {json.dumps(MYSQL_URL)}, table: {job.source}}}\n"
        f"destination: {{type: duckdb, path: {json.dumps(str(job.out_db))}, table: lineitem, write: replace}}\n"
    )
    return [
        "/usr/bin/env",
        f"AGENT_ETL_HOME={job.workdir / 'home'}",
        str(Path(sys.executable).parent / "agent-etl"),
        "run",
        str(spec),
        "--json",
    ]


DLT_MYSQL = """
import sys
import dlt
from dlt.sources.sql_database import sql_table
url, table, out, workdir = sys.argv[1:5]
resource = sql_table(credentials=url, table=table, backend="connectorx", reflection_level="full_with_precision")
resource.apply_hints(table_name="lineitem")
pipeline = dlt.pipeline("bench", destination=dlt.destinations.duckdb(out), dataset_name="main", pipelines_dir=workdir + "/dlt")
pipeline.run(resource, write_disposition="replace")
"""


def dlt_from_mysql(job: Any) -> list[str]:
    if not DLT_PYTHON.exists():
        raise Unavailable(f"{DLT_PYTHON} not found; see bench/README.md to make dlt's venv")
    return [
        "/usr/bin/env",
        "RUNTIME__DLTHUB_TELEMETRY=false",
        str(DLT_PYTHON),
        "-c",
        DLT_MYSQL,
        MYSQL_URL.replace("mysql://", "mysql+pymysql://"),
        job.source,
        str(job.out_db),
        str(job.workdir),
    ]
