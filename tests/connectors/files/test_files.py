"""Files: dialect and encoding detection, compression, globs, JSON arrays, hive partitions, the manifest commit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.connectors.rest_helpers import make_source, read_all

from agent_orchestrated_etl.connectors.files import FileDestination, FileDestinationSpec
from agent_orchestrated_etl.connectors.files.sniff import sniff


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (b"id;name;city\n1;'a;b';Oslo\n2;c;Bergen\n", ("utf8", ";", "'", True, False)),
        (b"1\tx\t2.5\n2\ty\t3.5\n", ("utf8", "\t", '"', False, False)),
        ("id,city\n1,Zürich\n".encode("cp1252"), ("cp1252", ",", '"', True, False)),
        (b'id,note\n1,"two\nlines"\n2,plain\n', ("utf8", ",", '"', True, True)),
    ],
)
def test_sniffing_finds_encoding_delimiter_quote_header_and_multiline(sample: bytes, expected: tuple) -> None:
    dialect = sniff(sample, encoding=None, delimiter=None, quote=None, header=None)
    assert (dialect.encoding, dialect.delimiter, dialect.quote, dialect.header, dialect.multiline) == expected


def test_detected_dialect_reads_and_the_spec_overrides(tmp_path: Path) -> None:
    path = tmp_path / "people.txt"
    path.write_bytes("id;name;city\n1;'Ann; Jr';Zürich\n2;Bo;Oslo\n".encode("cp1252"))
    table, _ = read_all(make_source({"type": "file", "path": str(path), "format": "csv"}))
    assert table.to_pylist() == [
        {"id": 1, "name": "Ann; Jr", "city": "Zürich"},
        {"id": 2, "name": "Bo", "city": "Oslo"},
    ]
    table, _ = read_all(
        make_source(
            {
                "type": "file",
                "path": str(path),
                "format": "csv",
                "header": False,
                "delimiter": ";",
                "quote": "'",
                "encoding": "cp1252",
            }
        )
    )
    assert table.column_names == ["f0", "f1", "f2"] and table.num_rows == 3


def test_gzip_and_zstd_over_a_glob_with_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv.gz").write_bytes(gzip.compress(b"id,v\n1,x\n2,y\n"))
    with pa.CompressedOutputStream(str(tmp_path / "in" / "b.jsonl.zst"), "zstd") as out:
        out.write(b'{"id": 3, "v": "z"}\n')
    table, rejected = read_all(
        make_source({"type": "file", "path": str(tmp_path / "in" / "*.*"), "file_name_column": "source_file"})
    )
    assert table.to_pylist() == [
        {"id": 1, "v": "x", "source_file": f"{tmp_path}/in/a.csv.gz"},
        {"id": 2, "v": "y", "source_file": f"{tmp_path}/in/a.csv.gz"},
        {"id": 3, "v": "z", "source_file": f"{tmp_path}/in/b.jsonl.zst"},
    ]
    assert rejected == []


def test_json_array_under_a_records_path_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "export.json.gz"
    path.write_bytes(
        gzip.compress(
            json.dumps(
                {"meta": {"n": 3}, "data": {"items": [{"id": 1, "a": {"b": 1}}, {"id": 2, "a": {"b": 2.5}}, {"id": 3}]}}
            ).encode()
        )
    )
    table, _ = read_all(
        make_source({"type": "file", "path": str(path), "records": "data.items", "nested": {"shape": "flatten"}})
    )
    assert table.to_pylist() == [{"id": 1, "a__b": 1.0}, {"id": 2, "a__b": 2.5}, {"id": 3, "a__b": None}]


def destination(path: str, **spec: object) -> FileDestination:
    return FileDestination(FileDestinationSpec(type="file", path=path, **spec), memory_limit_bytes=1 << 28)


ORDERS = pa.record_batch(
    {
        "id": [1, 2, 3, 4],
        "region": ["eu", "us", "eu", None],
        "day": ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02"],
    }
)


def stage_and_commit(dest: FileDestination, run_id: str, batches: list[pa.RecordBatch]) -> int:
    dest.begin(run_id, "t1")
    for batch in batches:
        dest.write_batch(run_id, "t1", batch)
    return dest.commit(run_id, ["t1"]).rows


def test_hive_partitions_round_trip_through_the_manifest(tmp_path: Path) -> None:
    out = str(tmp_path / "orders")
    assert stage_and_commit(destination(out, partition_by=["region", "day"]), "r1", [ORDERS]) == 4
    manifest = json.loads((tmp_path / "orders" / "_manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "region=__HIVE_DEFAULT_PARTITION__/day=2024-01-02/r1-t1-part-0.parquet",
        "region=eu/day=2024-01-01/r1-t1-part-0.parquet",
        "region=eu/day=2024-01-02/r1-t1-part-0.parquet",
        "region=us/day=2024-01-01/r1-t1-part-0.parquet",
    ]
    assert pq.read_table(tmp_path / "orders" / "region=eu/day=2024-01-01/r1-t1-part-0.parquet").column_names == ["id"]
    table, _ = read_all(make_source({"type": "file", "path": out, "hive_partitioning": True}))
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == ORDERS.to_pylist()


def test_files_outside_the_manifest_are_invisible_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    out = str(tmp_path / "orders")
    dest = destination(out)
    assert stage_and_commit(dest, "r1", [ORDERS]) == 4
    dest.begin("r2", "t1")
    dest.write_batch("r2", "t1", ORDERS)
    dest.finish("r2", "t1")  # staged, never committed: readers must not see it
    (tmp_path / "orders" / "stray.parquet").write_bytes((tmp_path / "orders" / "r1-t1-part-0.parquet").read_bytes())
    assert read_all(make_source({"type": "file", "path": out}))[0].num_rows == 4
    again = dest.commit("r1", ["t1"])
    assert again.already_committed and again.rows == 4
    assert read_all(make_source({"type": "file", "path": out}))[0].num_rows == 4


class DyingFS:
    """A filesystem whose n-th move fails, as a crash between two moves of a commit would."""

    def __init__(self, fs: object, die_on_move: int) -> None:
        self._fs, self._left = fs, die_on_move

    def move(self, src: str, dst: str) -> None:
        self._left -= 1
        if self._left == 0:
            raise OSError("disk went away")
        self._fs.move(src, dst)

    def __getattr__(self, name: str) -> object:
        return getattr(self._fs, name)


def test_a_commit_that_dies_half_way_is_finished_by_the_next(tmp_path: Path) -> None:
    out = str(tmp_path / "orders")
    dest = destination(out, partition_by=["region"])
    dest.begin("r1", "t1")
    dest.write_batch("r1", "t1", ORDERS)
    dest.fs = DyingFS(dest.fs, die_on_move=2)
    with pytest.raises(OSError, match="disk went away"):
        dest.commit("r1", ["t1"])
    assert len(list((tmp_path / "orders").glob("region=*/r1-*"))) == 1  # one file moved before the crash
    assert read_all(make_source({"type": "file", "path": out}))[0].num_rows == 0  # and no reader sees it
    result = destination(out, partition_by=["region"]).commit("r1", ["t1"])
    assert result.rows == 4 and not result.already_committed
    table, _ = read_all(make_source({"type": "file", "path": out, "hive_partitioning": True}))
    assert sorted(table.column("id").to_pylist()) == [1, 2, 3, 4]
    assert not (tmp_path / "orders" / "_staging").exists() or not any((tmp_path / "orders" / "_staging").iterdir())


def test_a_widened_schema_starts_a_new_file_and_no_column_is_lost(tmp_path: Path) -> None:
    out = str(tmp_path / "events")
    first = pa.record_batch({"id": [1]})
    second = pa.record_batch({"id": [2], "extra": ["x"]})
    assert stage_and_commit(destination(out), "r1", [first, second]) == 2
    table, _ = read_all(make_source({"type": "file", "path": out}))
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [{"id": 1, "extra": None}, {"id": 2, "extra": "x"}]


def test_abort_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    out = str(tmp_path / "orders")
    dest = destination(out, format="csv")
    stage_and_commit(dest, "r1", [ORDERS])
    dest.begin("r2", "t1")
    dest.write_batch("r2", "t1", ORDERS)
    dest.abort("r2")
    assert json.loads((tmp_path / "orders" / "_manifest.json").read_text())["runs"] == {
        "r1": {"rows": 4, "quarantined": 0}
    }
    assert not any((tmp_path / "orders" / "_staging").glob("r2/**/*.csv"))


def test_the_commit_counts_rows_as_written_without_reading_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_orchestrated_etl.connectors.files import destination as module

    def no_reading(fs: object, path: str) -> int:
        raise AssertionError(f"read back {path}")

    monkeypatch.setattr(module, "_count_rows", no_reading)
    assert (
        stage_and_commit(
            destination(str(tmp_path / "o"), format="csv", partition_by=["region"]), "r1", [ORDERS, ORDERS]
        )
        == 8
    )


def test_parquet_batches_gather_into_row_groups_and_unique_columns_skip_the_dictionary(tmp_path: Path) -> None:
    out = str(tmp_path / "lines")
    dest = FileDestination(
        FileDestinationSpec(type="file", path=out), memory_limit_bytes=16 << 20
    )  # row groups of 1 MiB
    batches = [
        pa.record_batch({"id": pa.array(range(i * 4000, (i + 1) * 4000), pa.int64()), "flag": ["a", "b"] * 2000})
        for i in range(50)
    ]
    assert stage_and_commit(dest, "r1", batches) == 200_000
    meta = pq.ParquetFile(tmp_path / "lines" / "r1-t1-part-0.parquet").metadata
    assert meta.num_rows == 200_000
    assert 1 < meta.num_row_groups < 50  # 64 KiB batches gathered into row groups of about 1 MiB
    first = meta.row_group(0)
    assert first.num_rows > 4000
    assert not first.column(0).has_dictionary_page  # every id distinct: no dictionary
    assert first.column(1).has_dictionary_page  # two values: a dictionary
    table, _ = read_all(make_source({"type": "file", "path": out}))
    assert table.column("id").to_pylist() == list(range(200_000))


def test_file_names_need_no_shell_quoting_and_a_run_staged_under_the_old_names_still_commits(tmp_path: Path) -> None:
    import re

    out = tmp_path / "lines"
    dest = destination(str(out))
    task = "lineitem[0]>file0"
    dest.begin("r1", task)
    dest.write_batch("r1", task, ORDERS.slice(0, 2))
    dest.write_quarantine("r1", task, ORDERS.slice(2, 1))
    result = dest.commit("r1", [task])
    assert (result.rows, result.quarantined_rows) == (2, 1)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["files"] == ["r1-lineitem-0-file0-part-0.parquet"]
    assert manifest["quarantine"] == ["_quarantine/r1-lineitem-0-file0-part-0.parquet"]
    names = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert names and all(re.fullmatch(r"[A-Za-z0-9_.=/-]+", name) for name in names), names

    # Staged by an agent-etl that named the directory after the task id as it is: resume finds it.
    old = out / "_staging" / "r2" / "data" / task
    old.mkdir(parents=True)
    pq.write_table(pa.Table.from_batches([ORDERS]), old / "part-0.parquet")
    fresh = destination(str(out))
    assert fresh.staged_rows("r2", task) == 4
    assert fresh.commit("r2", [task]).rows == 4
    committed = json.loads((out / "_manifest.json").read_text())["files"]
    assert "r2-lineitem-0-file0-old-part-0.parquet" in committed
    assert read_all(make_source({"type": "file", "path": str(out)}))[0].num_rows == 6
