"""Generate TPC-H lineitem as Parquet with DuckDB's tpch extension.

    python bench/lineitem.py [--sf 1] [--memory-limit 1GB]

Writes bench/data/lineitem_sf<sf>.parquet and skips the work when that file
already holds the expected rows.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import duckdb
import duckdb_extension_tpch
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"
COLUMNS = 16
# dbgen is deterministic, so these counts identify a complete file. Other
# scale factors are accepted on column count alone (see is_complete).
EXPECTED_ROWS = {0.01: 60_175, 0.1: 600_572, 1.0: 6_001_215}


def lineitem_path(sf: float) -> Path:
    return DATA_DIR / f"lineitem_sf{sf:g}.parquet"


def parquet_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def is_complete(path: Path, sf: float) -> bool:
    # Files are renamed into place only once written, so a present file is
    # never a torn write; the counts guard against a file from another run
    # or another generator.
    if not path.exists():
        return False
    meta = pq.ParquetFile(path).metadata
    if meta.num_columns != COLUMNS:
        return False
    expected = EXPECTED_ROWS.get(sf)
    return expected is None or meta.num_rows == expected


def _connect(database: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    # Autoinstall is off so a missing local extension fails instead of
    # silently downloading one.
    con = duckdb.connect(
        str(database),
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "memory_limit": memory_limit,
            "temp_directory": str(database.parent / "spill"),
        },
    )
    # LOAD straight from the wheel's file rather than duckdb_extensions'
    # import_extension, which INSTALLs a copy into ~/.duckdb.
    version = con.sql("PRAGMA version").fetchone()[0]  # e.g. "v1.5.5", the wheel's dir name
    ext = Path(duckdb_extension_tpch.__file__).parent / "extensions" / version / "tpch.duckdb_extension"
    con.execute(f"LOAD '{ext}'")
    return con


def generate(sf: float, path: Path, memory_limit: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.partial")
    # dbgen builds all eight tables. An on-disk scratch database lets DuckDB
    # evict blocks to stay near memory_limit; in memory, SF1 peaks at ~2.3 GB
    # RSS even with a 2 GB limit.
    with tempfile.TemporaryDirectory(prefix="tpch-", dir=path.parent) as scratch:
        con = _connect(Path(scratch) / "tpch.duckdb", memory_limit)
        try:
            con.execute("CALL dbgen(sf = ?)", [sf])
            con.execute(f"COPY lineitem TO '{partial}' (FORMAT parquet, ROW_GROUP_SIZE 122880)")
        finally:
            con.close()
    os.replace(partial, path)


def ensure(sf: float, memory_limit: str = "1GB") -> Path:
    path = lineitem_path(sf)
    if is_complete(path, sf):
        print(f"{path} exists with {parquet_rows(path):,} rows; skipping generation")
        return path
    started = time.perf_counter()
    generate(sf, path, memory_limit)
    seconds = time.perf_counter() - started
    rows = parquet_rows(path)
    expected = EXPECTED_ROWS.get(sf)
    if expected is not None and rows != expected:
        raise SystemExit(f"{path}: generated {rows:,} rows, expected {expected:,}")
    print(f"generated {path} ({rows:,} rows, {path.stat().st_size / 1e6:.0f} MB) in {seconds:.1f} s")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit during dbgen (default 1GB)")
    args = parser.parse_args()
    ensure(args.sf, args.memory_limit)


if __name__ == "__main__":
    main()
