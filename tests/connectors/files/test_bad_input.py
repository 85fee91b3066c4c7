"""A corpus of malformed CSV and JSON files: each gets a clear error or a quarantine entry, and every good row loads."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from tests.connectors.rest_helpers import make_source, read_all

GOOD = [f"{i},name {i},{i * 1.5}" for i in range(1, 21)]  # 20 good rows
HEADER = "id,name,amount"


def write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def lines(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    write(root / "broken_quotes.csv", lines(HEADER, *GOOD[:7], '8,"unclosed name,12.0', *GOOD[8:]))
    write(
        root / "wrong_columns.csv", lines(HEADER, *GOOD[:4], "5,too,many,fields", *GOOD[5:11], "12,too few", *GOOD[12:])
    )
    write(
        root / "invalid_utf8.csv",
        lines(HEADER, "1,Zürich,1.5", *GOOD[1:9]) + b"10,bad \xff\xfe byte,15.0\n" + lines(*GOOD[10:]),
    )
    write(root / "empty.csv", b"")
    write(root / "header_only.csv", lines(HEADER))
    write(
        root / "malformed.jsonl",
        lines(
            *(json.dumps({"id": i, "qty": i}) for i in range(1, 6)),
            '{"id": 6, "qty": ',
            *(json.dumps({"id": i, "qty": i}) for i in range(7, 21)),
        ),
    )
    write(
        root / "mixed_types.jsonl",
        lines(
            *(json.dumps({"id": i, "qty": i}) for i in range(1, 10)),
            json.dumps({"id": 10, "qty": "ten"}),
            *(json.dumps({"id": i, "qty": i}) for i in range(11, 21)),
        ),
    )
    write(root / "truncated.json", json.dumps([{"id": i} for i in range(1, 21)]).encode()[:-30])
    big = "x" * (50 << 20)
    write(root / "long_line.csv", lines(HEADER, GOOD[0], f'2,"{big}",3.0', GOOD[2]))
    write(
        root / "long_line.jsonl",
        lines(json.dumps({"id": 1}), json.dumps({"id": 2, "blob": big}), json.dumps({"id": 3})),
    )
    return root


def test_broken_quote_rejects_its_line_only(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "broken_quotes.csv")}))
    assert table.column("id").to_pylist() == [i for i in range(1, 21) if i != 8]
    assert [(reason.split(" (")[0], where) for _, reason, where in rejected] == [
        ("malformed CSV line: wrong number of fields or an unclosed quote", f"{corpus}/broken_quotes.csv:9")
    ]


def test_wrong_column_counts_are_quarantined_with_file_and_line(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "wrong_columns.csv")}))
    assert table.column("id").to_pylist() == [i for i in range(1, 21) if i not in (5, 12)]
    assert [(row["line"], where) for row, _, where in rejected] == [
        ("5,too,many,fields", f"{corpus}/wrong_columns.csv:6"),
        ("12,too few", f"{corpus}/wrong_columns.csv:13"),
    ]


def test_invalid_utf8_row_is_quarantined_and_valid_text_kept(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "invalid_utf8.csv")}))
    assert table.column("id").to_pylist() == [i for i in range(1, 21) if i != 10]
    assert table.column("name")[0].as_py() == "Zürich"
    # A row the reader sets aside holds the file's text, before any cast.
    assert rejected == [
        (
            {"id": "10", "name": "bad \ufffd\ufffd byte", "amount": "15.0"},
            "invalid UTF-8 in column name at byte 4",
            f"{corpus}/invalid_utf8.csv:11",
        )
    ]


def test_empty_and_header_only_files_say_so(corpus: Path) -> None:
    for name, reason, where in [
        ("empty.csv", "empty file: no header and no rows", ""),
        ("header_only.csv", "the file has a header but no rows", ":1"),
    ]:
        table, rejected = read_all(make_source({"type": "file", "path": str(corpus / name)}))
        assert table.num_rows == 0
        assert [(r, w) for _, r, w in rejected] == [(reason, f"{corpus}/{name}{where}")]


def test_malformed_json_line_is_quarantined_with_its_line(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "malformed.jsonl")}))
    assert table.column("id").to_pylist() == [i for i in range(1, 21) if i != 6]
    assert [(row, reason.split(":")[0], where) for row, reason, where in rejected] == [
        ({"line": '{"id": 6, "qty": '}, "malformed JSON", f"{corpus}/malformed.jsonl:6")
    ]


def test_mixed_json_types_quarantine_the_misfit(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "mixed_types.jsonl")}))
    assert table.column("qty").to_pylist() == [i for i in range(1, 21) if i != 10]
    assert rejected == [
        ({"id": 10, "qty": "ten"}, "field qty: string 'ten' does not fit type int64", f"{corpus}/mixed_types.jsonl:10")
    ]


def test_mixed_csv_types_across_blocks_quarantine_the_misfit(tmp_path: Path) -> None:
    rows = [f"{i},{i}" for i in range(1, 400_001)]
    rows[380_000] = "380001,abc"  # past the first 4 MiB block, whose rows fixed the type as int64
    path = write(tmp_path / "mixed.csv", lines("id,qty", *rows))
    table, rejected = read_all(make_source({"type": "file", "path": path}))
    assert table.num_rows == 399_999 and table.schema.field("qty").type == pa.int64()
    assert table.column("id").to_pylist() == [i for i in range(1, 400_001) if i != 380_001]
    assert rejected == [
        ({"id": "380001", "qty": "abc"}, "column qty: 'abc' is not int64 like the rows before it", f"{path}:380002")
    ]


def test_truncated_json_array_loads_what_precedes_the_break(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "truncated.json")}))
    assert table.column("id").to_pylist() == list(range(1, table.num_rows + 1)) and 15 <= table.num_rows < 20
    [(_, reason, _)] = rejected
    assert reason.startswith(f"malformed JSON after record {table.num_rows}: ") and reason.endswith(
        "the rest of the file was not read"
    )


def test_a_50_mb_line_is_read_whole(corpus: Path) -> None:
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "long_line.csv")}))
    assert (
        table.column("id").to_pylist() == [1, 2, 3]
        and len(table.column("name")[1].as_py()) == 50 << 20
        and rejected == []
    )
    table, rejected = read_all(make_source({"type": "file", "path": str(corpus / "long_line.jsonl")}))
    assert (
        table.column("id").to_pylist() == [1, 2, 3]
        and len(table.column("blob")[1].as_py()) == 50 << 20
        and rejected == []
    )


def test_glob_over_the_corpus_keeps_going(corpus: Path) -> None:
    table, rejected = read_all(
        make_source({"type": "file", "path": str(corpus / "*.csv"), "file_name_column": "_file"})
    )
    files = table.column("_file").to_pylist()
    assert {Path(f).name: files.count(f) for f in set(files)} == {
        "broken_quotes.csv": 19,
        "wrong_columns.csv": 18,
        "invalid_utf8.csv": 19,
        "long_line.csv": 3,
    }
    assert len(rejected) == 1 + 2 + 1 + 2  # one, two, one, plus the empty and header-only files
