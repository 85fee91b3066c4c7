"""A Parquet file into S3 through the file destination (staged, committed) and back through the file source."""

from __future__ import annotations

import json
import os
import sys
import time

import pyarrow.parquet as pq

from agent_orchestrated_etl.connectors.files import FileDestination, FileDestinationSpec, FileSource, FileSourceSpec
from agent_orchestrated_etl.connectors.files.filesystems import S3Settings


def main(parquet: str, endpoint: str) -> None:
    s3 = S3Settings(endpoint_url=endpoint, access_key_id="AK", secret_access_key="SK", allow_bucket_creation=True)
    size = os.path.getsize(parquet)
    dest = FileDestination(
        FileDestinationSpec(type="file", path="s3://bench/lineitem", s3=s3), memory_limit_bytes=1 << 29
    )
    started = time.perf_counter()
    dest.begin("run1", "t1")
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=131_072):
        dest.write_batch("run1", "t1", batch)
    rows = dest.commit("run1", ["t1"]).rows
    write = time.perf_counter() - started
    source = FileSource("lineitem", FileSourceSpec(type="file", path="s3://bench/lineitem", s3=s3), batch_rows=131_072)
    started = time.perf_counter()
    back = sum(batch.num_rows for partition in source.partitions() for batch, _ in source.read(partition))
    read = time.perf_counter() - started
    assert back == rows, (back, rows)
    mb = size / 2**20
    print(
        json.dumps(
            {
                "rows": rows,
                "parquet_mb": round(mb),
                "write_seconds": round(write, 2),
                "write_mb_per_second": round(mb / write, 1),
                "read_seconds": round(read, 2),
                "read_mb_per_second": round(mb / read, 1),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
