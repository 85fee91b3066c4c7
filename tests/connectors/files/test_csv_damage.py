"""Damaged CSV end to end (issue 11, items 1, 6, 16, 22): stray quotes, invalid UTF-8 and files
that break off, through a pipeline run into DuckDB and PostgreSQL. Every readable row loads;
every damaged line is in quarantine as ``file:line``, or the run fails naming it. Also: our own
partitioned output reads back with its partition columns, and an unreachable S3 says so."""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from tests.connectors.rest_helpers import make_source

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.connectors.base import Partition
from agent_orchestrated_etl.exceptions import ConnectionFailedError
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.run_result import RunResult
from agent_orchestrated_etl.spec import parse_spec

HEADER = "id,name,amount"


def good(i: int) -> str:
    return f"{i},name {i},{i * 1.5}"


def run(source: str, destination: str, retry: str = "") -> RunResult:
    text = f"name: damage\nsources:\n  s: {source}\ndestination: {destination}\n{retry}"
    return run_pipeline(parse_spec(text, file="p.yaml"), Settings())


def into_duckdb(tmp_path: Path, source: str, retry: str = "") -> tuple[RunResult, duckdb.DuckDBPyConnection]:
    out = tmp_path / "w.duckdb"
    result = run(source, f'{{type: duckdb, path: "{out}", table: t}}', retry)
    return result, duckdb.connect(str(out), read_only=True)


def quarantine(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    return [
        (c, o, r)
        for c, o, r in con.execute("SELECT check_name, origin, reason FROM t__quarantine ORDER BY origin").fetchall()
    ]


# Line n of each file holds the record with id n - 1 (line 1 is the header): 10,000 lines.
STRAY = {
    "mid-file, two that pair up (the issue's file)": {17: '16,"broken quote,1.0', 9999: '9998,"broken quote,1.0'},
    "first line": {2: '1,"broken quote,1.0'},
    "last line": {10000: '9999,"broken quote,1.0'},
    "two on one line": {500: '499,"bro"ken "quote,1.0'},
    "closing quote then text": {42: '41,"name"x,1.0'},
}


@pytest.mark.parametrize("multiline", [False, True])
@pytest.mark.parametrize("placement", list(STRAY))
def test_a_stray_quote_costs_its_own_line_and_every_other_row_loads(
    tmp_path: Path, placement: str, multiline: bool
) -> None:
    lines = [HEADER, *(good(i) for i in range(1, 10000))]
    for number, text in STRAY[placement].items():
        lines[number - 1] = text
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    result, con = into_duckdb(tmp_path, f'{{type: file, path: "{path}", multiline_values: {str(multiline).lower()}}}')
    assert result.status == "succeeded", result.error
    bad_ids = {number - 1 for number in STRAY[placement]}
    assert con.execute("SELECT count(*), max(length(name)) FROM t").fetchone() == (9999 - len(bad_ids), 9)
    assert sorted(i for (i,) in con.execute("SELECT id FROM t").fetchall()) == [
        i for i in range(1, 10000) if i not in bad_ids
    ]
    assert [(c, o, r.split(" (")[0]) for c, o, r in quarantine(con)] == [
        ("parse", f"{path}:{number}", "malformed CSV line: wrong number of fields or an unclosed quote")
        for number in sorted(STRAY[placement])
    ]


def test_a_quoted_value_over_many_lines_that_read_as_records_is_not_one_value(tmp_path: Path) -> None:
    """Well-formed by RFC 4180, but the value would hold 9,981 lines shaped like the file's records."""
    lines = [HEADER, *(good(i) for i in range(1, 10000))]
    lines[16], lines[9998] = '16,"broken quote,1.0', '9998,broken quote",1.0'
    lines[9999] = '9999,"two\nlines",1.0'  # a real multi-line value: kept
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    result, con = into_duckdb(tmp_path, f'{{type: file, path: "{path}", multiline_values: true}}')
    assert result.status == "succeeded", result.error
    assert con.execute("SELECT count(*), max(length(name)) FROM t").fetchone() == (9998, 13)
    assert con.execute("SELECT name FROM t WHERE id = 9999").fetchone() == ("two\nlines",)
    assert con.execute("SELECT name FROM t WHERE id = 9998").fetchone() == ('broken quote"',)
    [(check, origin, reason)] = quarantine(con)
    assert (check, origin) == ("parse", f"{path}:17") and reason.startswith(
        "malformed CSV line: a stray quote; its value would run over lines 17 to 9999, each shaped like a record"
    )


def test_an_invalid_utf8_row_is_quarantined_by_its_physical_line(tmp_path: Path, pg_schema: tuple[str, str]) -> None:
    rows = [good(i).encode() for i in range(1, 201)]
    rows[0] = "1,Zürich,1.5".encode()  # valid UTF-8 next to the bad byte: the file is UTF-8 with one bad row
    rows[76] = b"77,bad \xff byte,115.5"
    path = tmp_path / "data.csv"
    path.write_bytes(b"\n".join([HEADER.encode(), *rows]) + b"\n")
    expected = [("parse", f"{path}:78", "invalid UTF-8 in column name at byte 4")]
    result, con = into_duckdb(tmp_path, f'{{type: file, path: "{path}"}}')
    assert result.status == "succeeded", result.error
    assert con.execute("SELECT count(*) FROM t").fetchone() == (199,)
    assert quarantine(con) == expected

    url, schema = pg_schema
    result = run(f'{{type: file, path: "{path}"}}', f'{{type: postgres, url: "{url}", table: {schema}.t}}')
    assert result.status == "succeeded", result.error
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {schema}.t").scalar() == 199
        assert [
            tuple(r)
            for r in conn.exec_driver_sql(
                f"SELECT check_name, origin, reason FROM {schema}.t__quarantine ORDER BY origin"
            )
        ] == expected
    engine.dispose()


def truncated_gzip(path: Path, rows: int, first_id: int) -> int:
    """A gzip CSV of ``rows`` rows cut inside its last row; returns the line where it breaks off."""
    data = ("\n".join([HEADER, *(good(first_id + i) for i in range(rows))]) + "\n").encode()
    packed = gzip.compress(data)
    last = data.rindex(b"\n", 0, len(data) - 1) + 1  # where the last row starts
    for cut in range(len(packed) - 1, 0, -1):
        if last < len(zlib.decompressobj(wbits=31).decompress(packed[:cut])) < len(data) - 1:
            path.write_bytes(packed[:cut])
            return rows + 1
    raise AssertionError("no cut inside the last row")


@pytest.fixture
def glob_with_a_truncated_gzip(tmp_path: Path) -> tuple[Path, int]:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        (folder / f"good{n}.csv.gz").write_bytes(
            gzip.compress(("\n".join([HEADER, *(good(n * 1000 + i) for i in range(1, 1001))]) + "\n").encode())
        )
    return folder, truncated_gzip(folder / "bad.csv.gz", 3000, first_id=10001)


def test_a_truncated_gzip_fails_the_run_by_default_naming_the_file_and_line(
    tmp_path: Path, glob_with_a_truncated_gzip: tuple[Path, int]
) -> None:
    folder, line = glob_with_a_truncated_gzip
    result, _ = into_duckdb(tmp_path, f'{{type: file, path: "{folder}/*.csv.gz"}}')
    assert result.status == "failed"
    assert (
        f"{folder}/bad.csv.gz:{line}: the file breaks off at line {line}" in result.error
        and "on_bad_data: quarantine" in result.error
    )


def test_with_on_bad_data_quarantine_a_truncated_gzip_loads_its_readable_rows_and_the_glob_commits(
    tmp_path: Path, glob_with_a_truncated_gzip: tuple[Path, int]
) -> None:
    folder, line = glob_with_a_truncated_gzip
    result, con = into_duckdb(
        tmp_path, f'{{type: file, path: "{folder}/*.csv.gz"}}', "retry: {on_bad_data: quarantine, backoff_seconds: 0}\n"
    )
    assert result.status == "succeeded", result.error
    assert line == 3001
    assert con.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t WHERE id <= 3000").fetchone() == (
        3000,
        3000,
        1,
        3000,
    )
    assert con.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t WHERE id > 3000").fetchone() == (
        2999,
        2999,
        10001,
        12999,
    )
    [(check, origin, reason)] = quarantine(con)
    assert (check, origin) == (
        "unreadable",
        f"{folder}/bad.csv.gz:3001",
    ) and "the file breaks off at line 3001: " in reason


def test_a_truncated_gzip_json_lines_file_keeps_its_readable_lines(tmp_path: Path) -> None:
    data = "".join(f'{{"id": {i}}}\n' for i in range(1, 3001)).encode()
    packed = gzip.compress(data)
    cut = next(
        c
        for c in range(len(packed) - 1, 0, -1)
        if len(zlib.decompressobj(wbits=31).decompress(packed[:c])) < len(data) - 1
    )
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(packed[:cut])
    readable = zlib.decompressobj(wbits=31).decompress(packed[:cut]).count(b"\n")
    result, con = into_duckdb(
        tmp_path, f'{{type: file, path: "{path}"}}', "retry: {on_bad_data: quarantine, backoff_seconds: 0}\n"
    )
    assert result.status == "succeeded", result.error
    assert con.execute("SELECT count(*), max(id) FROM t").fetchone() == (readable, readable)
    [(check, origin, _)] = quarantine(con)
    assert (check, origin) == ("unreadable", f"{path}:{readable + 1}")


def test_our_own_partitioned_output_reads_back_with_its_partition_columns(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "id,region,amount\n" + "".join(f"{i},{['eu', 'us', 'apac'][i % 3]},{i * 1.5}\n" for i in range(1, 301))
    )
    out = tmp_path / "out"
    written = run(
        f'{{type: file, path: "{tmp_path / "orders.csv"}"}}',
        f'{{type: file, path: "{out}", format: parquet, partition_by: [region]}}',
    )
    assert written.status == "succeeded", written.error
    result, con = into_duckdb(tmp_path, f'{{type: file, path: "{out}"}}')
    assert result.status == "succeeded", result.error
    assert con.execute("SELECT region, count(*), sum(id) FROM t GROUP BY region ORDER BY region").fetchall() == [
        ("apac", 100, sum(i for i in range(1, 301) if i % 3 == 2)),
        ("eu", 100, sum(i for i in range(1, 301) if i % 3 == 0)),
        ("us", 100, sum(i for i in range(1, 301) if i % 3 == 1)),
    ]
    con.close()
    (tmp_path / "w.duckdb").unlink()
    result, con = into_duckdb(tmp_path, f'{{type: file, path: "{out}", hive_partitioning: false}}')
    assert result.status == "succeeded", result.error
    assert [name for name, *_ in con.execute("DESCRIBE t").fetchall()] == ["id", "amount"]


def test_an_unreachable_s3_endpoint_on_the_source_side_says_so_as_the_destination_side_does(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s3 = f'{{endpoint_url: "http://127.0.0.1:{port}", access_key_id: a, secret_access_key: b}}'
    for path in ("s3://bucket/in/*.csv", "s3://bucket/in/data.csv", "s3://bucket/in/"):
        result = run(
            f'{{type: file, path: "{path}", s3: {s3}}}',
            f'{{type: duckdb, path: "{tmp_path / "w.duckdb"}", table: t}}',
            "retry: {attempts: 1, backoff_seconds: 0}\n",
        )
        assert result.status == "failed"
        assert (
            "cannot reach S3" in result.error
            and "(check s3.endpoint_url or AWS_ENDPOINT_URL)" in result.error
            and "internal error" not in result.error
        )


def test_a_file_that_the_source_cannot_reach_any_more_is_a_transient_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = make_source(
        {
            "type": "file",
            "path": "s3://bucket/in/data.csv",
            "s3": {"endpoint_url": f"http://127.0.0.1:{port}", "access_key_id": "a", "secret_access_key": "b"},
        }
    )
    with pytest.raises(ConnectionFailedError, match="cannot reach S3"):
        next(source.read(Partition(key="s3://bucket/in/data.csv", description="s3://bucket/in/data.csv")))


def test_a_truncated_gzip_json_array_keeps_the_records_before_the_break(tmp_path: Path) -> None:
    data = json.dumps([{"id": i} for i in range(1, 3001)]).encode()
    packed = gzip.compress(data)
    path = tmp_path / "bad.json.gz"
    path.write_bytes(packed[: len(packed) - 200])
    readable = zlib.decompressobj(wbits=31).decompress(packed[: len(packed) - 200])
    whole = readable.count(b"}")  # records complete before the break
    result, con = into_duckdb(tmp_path, f'{{type: file, path: "{path}"}}')
    assert result.status == "succeeded", result.error
    assert con.execute("SELECT count(*), min(id), max(id) FROM t").fetchone() == (whole, 1, whole)
    [(check, origin, reason)] = quarantine(con)
    assert (check, origin) == ("parse", f"{path} record {whole + 1}") and reason.startswith(
        f"malformed JSON after record {whole}: "
    )
