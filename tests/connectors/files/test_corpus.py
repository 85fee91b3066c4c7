"""A corpus of malformed and awkward files, each with its exact expected outcome, loaded into DuckDB and PostgreSQL.

Every case names the rows that must load (by id) and the quarantine entries it must leave
(check, and where: `file:line`, or the file alone), or that the run must fail and why.
Both destinations must agree with the expectation and so with each other: the same rows,
the same values, the same quarantine entries.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from agent_orchestrated_etl.config import Settings
from agent_orchestrated_etl.orchestrator import run_pipeline
from agent_orchestrated_etl.spec import parse_spec

HEADER = "id,name,amount"
IDS = range(1, 21)


def good(i: int) -> str:
    return f"{i},name {i},{i * 1.5}"


def csv(*lines: str, end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode()


def rows_except(*broken: int) -> list[int]:
    return [i for i in IDS if i not in broken]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def truncated_gzip(text: bytes, keep: float) -> bytes:
    whole = gzip.compress(text)
    return whole[: int(len(whole) * keep)]


@dataclass
class Case:
    """One file of the corpus and what loading it must give."""

    name: str
    content: bytes
    ids: list[int] = field(default_factory=lambda: list(IDS))  # the ids that load
    quarantine: list[tuple[str, str]] = field(
        default_factory=list
    )  # (check_name, where), where relative to the corpus folder
    fails: str | None = None  # the run fails, and its error says this
    spec: dict[str, Any] = field(default_factory=dict)  # more keys for the pipeline
    source: dict[str, Any] = field(default_factory=dict)  # more keys for the source
    values: dict[int, dict[str, Any]] = field(default_factory=dict)  # exact values of some loaded rows


GOOD_CSV = csv(HEADER, *(good(i) for i in IDS))
BIG_TEXT = "\n".join([HEADER, *(good(i) for i in range(1, 5001))]).encode() + b"\n"

CASES = [
    Case("good.csv", GOOD_CSV, values={3: {"name": "name 3", "amount": 4.5}}),
    # A stray quote: the line is malformed; the lines after it are still records (item 1 of the trust issue).
    Case(
        "stray_quote_mid.csv",
        csv(HEADER, *(good(i) if i != 8 else '8,"broken quote,12.0' for i in IDS)),
        rows_except(8),
        [("parse", "stray_quote_mid.csv:9")],
    ),
    Case(
        "stray_quote_first.csv",
        csv(HEADER, *(good(i) if i != 1 else '1,"broken quote,1.5' for i in IDS)),
        rows_except(1),
        [("parse", "stray_quote_first.csv:2")],
    ),
    Case(
        "stray_quote_last.csv",
        csv(HEADER, *(good(i) if i != 20 else '20,"broken quote,30.0' for i in IDS)),
        rows_except(20),
        [("parse", "stray_quote_last.csv:21")],
    ),
    Case(
        "two_stray_quotes.csv",
        csv(HEADER, *(good(i) if i not in (5, 15) else f'{i},"broken,{i}.0' for i in IDS)),
        rows_except(5, 15),
        [("parse", "two_stray_quotes.csv:6"), ("parse", "two_stray_quotes.csv:16")],
    ),
    Case(
        "quote_then_junk.csv",
        csv(HEADER, *(good(i) if i != 6 else '6,"name"x,9.0' for i in IDS)),
        rows_except(6),
        [("parse", "quote_then_junk.csv:7")],
    ),
    Case(
        "wrong_field_counts.csv",
        csv(HEADER, *(good(i) if i not in (4, 12) else ("4,too,many,fields" if i == 4 else "12,too few") for i in IDS)),
        rows_except(4, 12),
        [("parse", "wrong_field_counts.csv:5"), ("parse", "wrong_field_counts.csv:13")],
    ),
    # UTF-8 text (Zürich) with one invalid byte further on: the file is UTF-8, the row with the byte is quarantined by its line (item 22).
    Case(
        "invalid_utf8.csv",
        csv(HEADER, "1,Zürich,1.5", *(good(i) for i in range(2, 10)))
        + b"10,bad \xff byte,15.0\n"
        + csv(*(good(i) for i in range(11, 21))),
        rows_except(10),
        [("parse", "invalid_utf8.csv:11")],
        values={1: {"name": "Zürich"}},
    ),
    Case("empty.csv", b"", [], [("parse", "empty.csv")]),
    Case("header_only.csv", csv(HEADER), [], [("parse", "header_only.csv:1")]),
    Case(
        "crlf.csv", csv(HEADER, *(good(i) for i in IDS), end="\r\n"), values={20: {"name": "name 20", "amount": 30.0}}
    ),
    Case("bom.csv", b"\xef\xbb\xbf" + GOOD_CSV, values={1: {"name": "name 1", "amount": 1.5}}),
    Case("semicolons.csv", GOOD_CSV.replace(b",", b";"), values={2: {"name": "name 2", "amount": 3.0}}),
    Case(
        "cp1252.csv",
        csv(HEADER, *(good(i) if i != 7 else "7,Zürich,10.5" for i in IDS)).decode().encode("cp1252"),
        values={7: {"name": "Zürich", "amount": 10.5}},
    ),
    Case(
        "multiline_value.csv",
        csv(HEADER, *(good(i) if i != 3 else '3,"two\nlines",4.5' for i in IDS)),
        values={3: {"name": "two\nlines", "amount": 4.5}},
    ),
    Case(
        "empty_fields.csv",
        csv(HEADER, *(good(i) if i != 5 else "5,,7.5" for i in IDS)),
        values={5: {"name": None, "amount": 7.5}},
    ),
    Case(
        "quoted_delimiters.csv",
        csv(HEADER, *(good(i) if i != 9 else '9,"last, first",13.5' for i in IDS)),
        values={9: {"name": "last, first", "amount": 13.5}},
    ),
    Case("good.csv.gz", gzip.compress(GOOD_CSV)),
    Case("good.csv.zst", b""),  # written by pyarrow in the fixture
    # A gzip cut off part way: the rows before the damage load, the damage is quarantined with its line (items 6 and 16).
    Case(
        "truncated.csv.gz",
        truncated_gzip(BIG_TEXT, 0.5),
        ids=[],
        quarantine=[],
        spec={"retry": {"on_bad_data": "quarantine"}},
    ),
    Case("good.jsonl", csv(*(json.dumps({"id": i, "name": f"name {i}", "amount": i * 1.5}) for i in IDS))),
    Case(
        "malformed.jsonl",
        csv(
            *(
                json.dumps({"id": i, "name": f"name {i}", "amount": i * 1.5}) if i != 6 else '{"id": 6, "name": '
                for i in IDS
            )
        ),
        rows_except(6),
        [("parse", "malformed.jsonl:6")],
    ),
    Case(
        "misfit.jsonl",
        csv(*(json.dumps({"id": i, "name": f"name {i}", "amount": i * 1.5 if i != 10 else "ten"}) for i in IDS)),
        rows_except(10),
        [("parse", "misfit.jsonl:10")],
    ),
    Case(
        "blank_lines.jsonl",
        b"\n".join(
            json.dumps({"id": i, "name": f"name {i}", "amount": i * 1.5}).encode() + (b"\n" if i % 5 == 0 else b"")
            for i in IDS
        )
        + b"\n",
    ),
    # 64 levels deep: flattened to nested.max_depth, the rest kept as JSON text (PostgreSQL has no struct columns).
    Case(
        "deep.jsonl",
        csv(*(json.dumps({"id": i, "name": f"name {i}", "amount": i * 1.5, "deep": nested(64)}) for i in IDS)),
        source={"nested": {"shape": "flatten"}},
    ),
    Case("array.json", json.dumps([{"id": i, "name": f"name {i}", "amount": i * 1.5} for i in IDS]).encode()),
    Case(
        "truncated_array.json",
        json.dumps([{"id": i, "name": f"name {i}", "amount": i * 1.5} for i in IDS]).encode()[:-40],
        ids=list(range(1, 20)),
        quarantine=[("parse", "truncated_array.json record 20")],
    ),
    Case("not_gzip.csv.gz", b"id,name\n1,this is not gzip at all\n", [], fails="Not a gzipped file"),
    Case("not_gzip.jsonl.gz", b'{"id": 1}\n', [], fails="not_gzip.jsonl.gz"),
    Case("corrupt.parquet", b"PAR1" + zlib.compress(b"garbage" * 100) + b"PAR1", [], fails="corrupt.parquet"),
]


def parquet_case(root: Path) -> None:
    pq.write_table(
        pa.table({"id": list(IDS), "name": [f"name {i}" for i in IDS], "amount": [i * 1.5 for i in IDS]}),
        root / "good.parquet",
    )


def test_the_corpus_has_at_least_25_files() -> None:
    assert len(CASES) + 1 >= 25
    assert len({case.name for case in CASES}) == len(CASES)


def expected_truncated_gzip() -> tuple[int, str]:
    """How many whole lines the cut gzip still holds, and the line where the damage starts."""
    whole = BIG_TEXT
    cut = truncated_gzip(whole, 0.5)
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = decompressor.decompress(cut)
    complete = text[: text.rfind(b"\n") + 1]
    rows = complete.count(b"\n") - 1  # less the header
    return rows, f"truncated.csv.gz:{rows + 2}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for case in CASES:
        (root / case.name).write_bytes(case.content)
    parquet_case(root)
    with pa.CompressedOutputStream(str(root / "good.csv.zst"), "zstd") as out:
        out.write(GOOD_CSV)
    return root


def load(corpus: Path, case: Case, destination: dict[str, Any], tmp_path: Path) -> Any:
    spec = {
        "name": "corpus",
        "sources": {"f": {"type": "file", "path": str(corpus / case.name), **case.source}},
        "destination": destination,
        **case.spec,
    }
    return run_pipeline(parse_spec(json.dumps(spec), file=str(tmp_path / "p.yaml")), Settings())


def read_duckdb(path: Path, table: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        rows = con.execute(f"SELECT * FROM {table} ORDER BY id").to_arrow_table().to_pylist() if table in names else []
        quarantine = (
            con.execute(f"SELECT check_name, origin FROM {table}__quarantine ORDER BY origin").fetchall()
            if f"{table}__quarantine" in names
            else []
        )
    return rows, [tuple(q) for q in quarantine]


def read_postgres(url: str, schema: str, table: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            names = {
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
                )
            }
            rows = (
                [dict(r._mapping) for r in conn.exec_driver_sql(f"SELECT * FROM {schema}.{table} ORDER BY id")]
                if table in names
                else []
            )
            quarantine = (
                [
                    tuple(r)
                    for r in conn.exec_driver_sql(
                        f"SELECT check_name, origin FROM {schema}.{table}__quarantine ORDER BY origin"
                    )
                ]
                if f"{table}__quarantine" in names
                else []
            )
    finally:
        engine.dispose()
    return rows, quarantine


def relative(corpus: Path, quarantine: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((check, origin.replace(f"{corpus}/", "")) for check, origin in quarantine)


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Loaded rows without the columns a reader adds, in one comparable form."""
    return [
        {
            k: (float(v) if isinstance(v, int | float) and k == "amount" else v)
            for k, v in row.items()
            if k in ("id", "name", "amount")
        }
        for row in rows
    ]


ALL = [*CASES, Case("good.parquet", b"")]


@pytest.mark.postgres
@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_each_file_loads_alike_into_duckdb_and_postgres(
    case: Case, corpus: Path, pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    target = "t"
    outcomes = {}
    for kind, destination in {
        "duckdb": {"type": "duckdb", "path": str(tmp_path / "w.duckdb"), "table": target},
        "postgres": {"type": "postgres", "url": url, "table": f"{schema}.{target}"},
    }.items():
        result = load(corpus, case, destination, tmp_path)
        if case.fails is not None:
            assert result.status == "failed", f"{kind}: {case.name} should fail"
            assert case.fails in str(result.error), f"{kind}: {result.error}"
            outcomes[kind] = ("failed", type(result.error).__name__)
            continue
        assert result.status == "succeeded", f"{kind}: {case.name}: {result.error}"
        rows, quarantine = (
            read_duckdb(tmp_path / "w.duckdb", target) if kind == "duckdb" else read_postgres(url, schema, target)
        )
        ids = [r["id"] for r in rows]
        if case.name == "truncated.csv.gz":
            count, where = expected_truncated_gzip()
            assert ids == list(range(1, count + 1)), f"{kind}: {len(ids)} rows"
            assert [origin for _, origin in relative(corpus, quarantine)] == [where], f"{kind}: {quarantine}"
        else:
            assert ids == case.ids, f"{kind}: {case.name}"
            assert relative(corpus, quarantine) == sorted(case.quarantine), f"{kind}: {case.name}"
        by_id = {r["id"]: r for r in plain(rows)}
        for i, values in case.values.items():
            assert {k: by_id[i][k] for k in values} == values, f"{kind}: {case.name} row {i}"
        outcomes[kind] = (plain(rows), relative(corpus, quarantine))
    assert outcomes["duckdb"] == outcomes["postgres"]
