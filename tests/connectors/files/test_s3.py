"""Files on S3 (SeaweedFS): reads over globs, partitioned writes, the manifest commit, AWS environment settings."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector
from test_files import ORDERS, DyingFS, stage_and_commit
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.connectors.files import FileDestination, FileDestinationSpec
from agent_orchestrated_etl.connectors.files.filesystems import S3Settings, resolve

pytestmark = pytest.mark.s3


@pytest.fixture
def prefix(s3_server: dict) -> str:
    return f"s3://etl/{uuid.uuid4().hex[:12]}"


def s3_destination(path: str, s3: dict, **spec: object) -> FileDestination:
    return FileDestination(
        FileDestinationSpec(type="file", path=path, s3=S3Settings(**s3), **spec), memory_limit_bytes=1 << 28
    )


def test_reads_a_glob_of_compressed_csv_and_parquet_from_s3(s3_server: dict, prefix: str) -> None:
    fs, root = resolve(prefix, S3Settings(**s3_server))
    with fs.open_output_stream(f"{root}/raw/2024/a.csv.gz", compression=None) as out:
        out.write(gzip.compress(b"id,v\n1,x\n2,y\n"))
    with fs.open_output_stream(f"{root}/raw/2025/b.csv") as out:
        out.write(b"id,v\n3,z\n")
    with fs.open_output_stream(f"{root}/raw/2025/skip.parquet") as out:
        pq.write_table(pa.table({"id": [9]}), out)
    table, rejected = read_all(
        make_source({"type": "file", "path": f"{prefix}/raw/**/*.csv*", "s3": s3_server, "file_name_column": "f"})
    )
    assert table.to_pylist() == [
        {"id": 1, "v": "x", "f": f"{prefix}/raw/2024/a.csv.gz"},
        {"id": 2, "v": "y", "f": f"{prefix}/raw/2024/a.csv.gz"},
        {"id": 3, "v": "z", "f": f"{prefix}/raw/2025/b.csv"},
    ]
    assert rejected == []


def test_partitioned_parquet_on_s3_commits_once_and_reads_back(s3_server: dict, prefix: str) -> None:
    dest = s3_destination(f"{prefix}/orders", s3_server, partition_by=["region"])
    assert stage_and_commit(dest, "r1", [ORDERS]) == 4
    assert dest.commit("r1", ["t1"]).already_committed
    table, _ = read_all(
        make_source({"type": "file", "path": f"{prefix}/orders", "s3": s3_server, "hive_partitioning": True})
    )
    assert sorted(table.select(["id", "region", "day"]).to_pylist(), key=lambda r: r["id"]) == ORDERS.to_pylist()
    fs, root = resolve(f"{prefix}/orders", S3Settings(**s3_server))
    assert fs.get_file_info(FileSelector(f"{root}/_staging", recursive=True, allow_not_found=True)) == []


def test_a_crashed_commit_on_s3_is_invisible_then_finished(s3_server: dict, prefix: str) -> None:
    out = f"{prefix}/orders"
    dest = s3_destination(out, s3_server, partition_by=["region"])
    dest.begin("r1", "t1")
    dest.write_batch("r1", "t1", ORDERS)
    dest.fs = DyingFS(dest.fs, die_on_move=3)
    with pytest.raises(OSError, match="disk went away"):
        dest.commit("r1", ["t1"])
    assert read_all(make_source({"type": "file", "path": out, "s3": s3_server}))[0].num_rows == 0
    assert s3_destination(out, s3_server, partition_by=["region"]).commit("r1", ["t1"]).rows == 4
    assert sorted(
        read_all(make_source({"type": "file", "path": out, "s3": s3_server}))[0].column("id").to_pylist()
    ) == [1, 2, 3, 4]


def test_a_pipeline_from_json_server_to_s3_with_aws_environment(
    s3_server: dict, prefix: str, json_server_url: str, tmp_path: Path
) -> None:
    spec = f"""
name: items_to_s3
sources:
  items:
    type: rest
    url: {json_server_url}/items
    concurrency: 8
    pagination: {{type: page, page_param: _page, size_param: _limit, page_size: 100}}
    nested: {{shape: flatten}}
destination: {{type: file, path: "{prefix}/items", partition_by: [address__city]}}
"""
    (tmp_path / "p.yaml").write_text(spec)
    env = {
        **os.environ,
        "COLUMNS": "200",
        "AWS_ENDPOINT_URL": s3_server["endpoint_url"],
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "AWS_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "agent_orchestrated_etl", "run", "p.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    table, _ = read_all(
        make_source({"type": "file", "path": f"{prefix}/items", "s3": s3_server, "hive_partitioning": True})
    )
    assert sorted(table.column("id").to_pylist()) == list(range(1, 10_001))
    assert sorted(set(table.column("address__city").to_pylist())) == [f"city {i}" for i in range(7)]
