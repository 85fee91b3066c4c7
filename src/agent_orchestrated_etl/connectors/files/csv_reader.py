"""CSV that does not stop on bad input.

Two paths. pyarrow's streaming reader reads a sound file at full speed while
cheap checks look for the signs of damage: a row pyarrow set aside (wrong
number of fields), a closing quote followed by more text in the raw bytes
(``"bro"ken``), a value holding a line break where values hold none (a stray
quote swallowed the lines after it; with multi-line values, one whose inner
lines read as records of the file's width), invalid UTF-8, a value that does
not fit its column's type (fixed by the first block), a stream that breaks
off. At the first sign the file goes on from the next row on the
careful path (csv_records.py), which knows each record's physical line: bad
records go to quarantine as ``file:line`` and every other row loads. Files
without a quote character skip the quote checks, so a sound file pays
nearly nothing for them.
"""

from __future__ import annotations

import csv
import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.connectors.files.csv_records import Broken, physical_lines, records
from agent_orchestrated_etl.connectors.files.reader import FileReader
from agent_orchestrated_etl.connectors.files.sniff import SAMPLE_BYTES, sniff
from agent_orchestrated_etl.exceptions import DataError

_INFER_BYTES = 4 << 20  # the types come from pyarrow's reading of the first 4 MiB: enough rows to judge
_BLOCK_BYTES = (
    2 << 20
)  # then the text is read 2 MiB at a time: fewer bytes in flight, as fast (lineitem: 405-437 MB peak against 505-521 at 4 MiB)
_MAX_BLOCK_BYTES = 1 << 30
# What pyarrow reads as NULL in a string column (ConvertOptions.null_values' default); the careful path agrees.
_NULLS = pa.array(
    [
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "n/a",
        "nan",
        "null",
    ]
)
_ESCAPED = re.compile("[\udc80-\udcff]")  # invalid UTF-8 bytes, as physical_lines keeps them
_MALFORMED = "malformed CSV line: wrong number of fields or an unclosed quote"


class CSVReader(FileReader):
    def read(self) -> Iterator[pa.RecordBatch]:
        sample, broken = b"", None
        with self._open(to_the_break=True) as stream:
            try:
                while len(sample) < SAMPLE_BYTES and (piece := stream.read1(SAMPLE_BYTES - len(sample))):
                    sample += piece
            except (OSError, EOFError, zlib.error) as exc:
                broken = exc  # a file that breaks off this early: the careful path below says where
        if not sample and broken is not None:
            # Not one byte came out (a .gz that is not gzip): the file is unreadable, not empty.
            raise DataError(
                f"cannot read the file: {broken}",
                where=self.shown,
                hint="check that it is complete and that its name says its compression (or set `compression:`)",
            )
        if not sample.strip():
            self.rejected.append(
                ({"file": self.shown}, "empty file: no header and no rows", Position(origin=self.shown))
            )
            return
        dialect = sniff(
            sample,
            encoding=self.spec.encoding,
            delimiter=self.spec.delimiter,
            quote=self.spec.quote,
            header=self.spec.header,
            multiline=self.spec.multiline_values,
        )
        # The types come from the first block; the file is then read as text and cast. Measured on
        # lineitem SF1 (737 MB): 2.5-2.8 s against 3.6 s for pyarrow converting each block itself,
        # and a value that does not fit its column is quarantined without reading the file again.
        schema = self._first_block_schema(dialect, _INFER_BYTES)
        done, sound = 0, False
        if self.until_line is None:
            fast = self._fast(dialect, schema)
            while True:
                try:
                    batch = next(fast)
                except StopIteration as stop:
                    done, sound, schema = stop.value
                    break
                yield batch
        if not sound:
            done += yield from self._careful(dialect, schema, done)
        if done == 0 and not self.rejected:
            self.rejected.append(
                ({"file": self.shown}, "the file has a header but no rows", Position(origin=self.shown, line=1))
            )

    def _fast(self, dialect: Any, schema: pa.Schema | None) -> Any:
        """pyarrow's batches while the file looks sound; returns (rows given, whether the file was read to its end, schema)."""
        block, done = _BLOCK_BYTES, 0
        as_text = schema is not None
        while True:
            bad: list[str] = []
            rows = 0
            watch = _Watched(dialect)
            try:
                for batch in self._csv_attempt(dialect, block, bad, schema if as_text else None, watch):
                    start, rows = rows, rows + batch.num_rows
                    if rows <= done:  # given before a restart
                        continue
                    if start < done:
                        batch = batch.slice(done - start)
                    if bad or watch.stray_quote or (watch.quoted and _line_breaks(batch, dialect)) or not _valid(batch):
                        return done, False, schema
                    if as_text:
                        try:
                            batch = batch.cast(schema)
                        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                            return done, False, schema
                    schema = schema or batch.schema
                    done = rows
                    yield batch
                return done, not bad and not watch.stray_quote, schema
            except pa.ArrowInvalid as exc:
                if "straddling" in str(exc) and block < _MAX_BLOCK_BYTES:
                    block *= 16  # a record longer than the block: restart with bigger blocks, skipping what was given
                elif "conversion error" in str(exc) and schema is not None and not as_text:
                    as_text = (
                        True  # a value that does not fit the column's type: restart reading text, quarantine misfits
                    )
                else:
                    return done, False, schema
            except OSError:
                return done, False, schema  # the stream broke off: the careful path finds the line

    def _careful(self, dialect: Any, schema: pa.Schema | None, skip: int) -> Any:
        """Records one at a time from the start, the first ``skip`` good ones already given; returns the rows it gave."""
        given, seen = 0, 0
        names: list[str] | None = None
        rows: list[list[str]] = []
        starts: list[int] = []
        with self._open(to_the_break=True) as stream:
            lines = physical_lines(stream, dialect.encoding)
            if skip and not dialect.multiline and schema is not None:
                # The rows given were sound, one line each: pass their lines without parsing them.
                lines = _after(lines, skip + dialect.header)
                names, seen = schema.names, skip
            found = records(lines, dialect.delimiter, dialect.quote, multiline=dialect.multiline)
            try:
                for first, last, fields, text in found:
                    if self.until_line is not None and first >= self.until_line:
                        break
                    if names is None and fields is not None:
                        header = fields if dialect.header else [f"f{i}" for i in range(len(fields))]
                        names = schema.names if schema is not None else header
                        if dialect.header:
                            continue
                    if fields is None or names is None or len(fields) != len(names):
                        self._reject_lines(text, first, last)
                        continue
                    seen += 1
                    if seen <= skip:
                        continue
                    if (
                        dialect.encoding == "utf8"
                        and _ESCAPED.search(text)
                        and self._invalid_utf8(names, fields, first)
                    ):
                        continue
                    rows.append(fields)
                    starts.append(first)
                    if len(rows) >= self.batch_rows:
                        batch, schema = self._typed(rows, starts, names, schema)
                        given += batch.num_rows
                        yield batch
                        rows, starts = [], []
            except Broken as exc:
                if self.until_line is None or exc.line < self.until_line:
                    if rows:
                        batch, schema = self._typed(rows, starts, names or [], schema)
                        yield batch
                    raise DataError(
                        f"{exc}; the rows before it were read",
                        where=f"{self.shown}:{exc.line}",
                        hint=(
                            "the file is truncated or corrupt: fetch it again, or set retry.on_bad_data: quarantine to"
                            " load the rows before the break and set the rest aside"
                        ),
                    ) from exc
        if rows:
            batch, schema = self._typed(rows, starts, names or [], schema)
            given += batch.num_rows
            yield batch
        return given

    def _reject_lines(self, text: str, first: int, last: int) -> None:
        where = Position(origin=self.shown, line=first)
        reason = (
            f"{_MALFORMED} ({text[:200]!r})"
            if first == last
            else (
                f"malformed CSV line: a stray quote; its value would run over lines {first} to {last}, each shaped like"
                f" a record ({text[:200]!r})"
            )
        )
        self.rejected.append(({"line": _readable(text.rstrip("\r\n"))[:10_000]}, reason, where))

    def _invalid_utf8(self, names: list[str], fields: list[str], line: int) -> bool:
        for name, value in zip(names, fields, strict=True):
            if (match := _ESCAPED.search(value)) is not None:
                row = {n: _readable(v) for n, v in zip(names, fields, strict=True)}
                at = len(value[: match.start()].encode("utf-8"))
                self.rejected.append(
                    (row, f"invalid UTF-8 in column {name} at byte {at}", Position(origin=self.shown, line=line))
                )
                return True
        return False

    def _typed(
        self, rows: list[list[str]], starts: list[int], names: list[str], schema: pa.Schema | None
    ) -> tuple[pa.RecordBatch, pa.Schema]:
        """Records as a batch of the file's types; rows that do not fit go to quarantine with their line."""
        columns = [pa.array([row[i] for row in rows], pa.string()) for i in range(len(names))]
        text = pa.RecordBatch.from_arrays(
            [pc.if_else(pc.is_in(c, value_set=_NULLS), pa.scalar(None, pa.string()), c) for c in columns], names=names
        )
        if schema is None:
            schema = _inferred(rows, names)
        return self._conform(text, schema, starts.__getitem__), schema

    def _first_block_schema(self, dialect: Any, block: int) -> pa.Schema | None:
        """The types pyarrow infers from the first block; None when that block cannot be read (the loop below says why)."""
        try:
            for batch in self._csv_attempt(dialect, block, [], None, None):
                return batch.schema
        except (pa.ArrowInvalid, OSError):
            return None
        return None

    def _csv_attempt(
        self, dialect: Any, block: int, bad: list[str], text_columns: pa.Schema | None, watch: _Watched | None
    ) -> Iterator[pa.RecordBatch]:
        def reject(row: Any) -> str:
            bad.append(row.text)
            return "skip"

        with self._open() as stream:
            yield from pacsv.open_csv(
                watch.wrap(stream) if watch is not None else stream,
                read_options=pacsv.ReadOptions(
                    block_size=block, encoding=dialect.encoding, autogenerate_column_names=not dialect.header
                ),
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True,
                    check_utf8=False,
                    column_types={name: pa.string() for name in text_columns.names} if text_columns else None,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=dialect.delimiter,
                    quote_char=dialect.quote,
                    newlines_in_values=dialect.multiline,
                    invalid_row_handler=reject,
                ),
            )

    def _conform(self, batch: pa.RecordBatch, schema: pa.Schema, line: Callable[[int], int]) -> pa.RecordBatch:
        """A batch read as text, cast to the types of the file's first block; rows that do not fit go to quarantine."""
        try:
            return batch.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        keep = [True] * batch.num_rows
        for field in schema:
            if field.type == pa.string():
                continue
            for i in _misfits(batch.column(field.name), field.type):
                if keep[i]:
                    keep[i] = False
                    row = {
                        name: column[i].as_py() for name, column in zip(batch.schema.names, batch.columns, strict=True)
                    }
                    reason = f"column {field.name}: {row[field.name]!r} is not {field.type} like the rows before it"
                    self.rejected.append((row, reason, Position(origin=self.shown, line=line(i))))
        return batch.filter(pa.array(keep)).cast(schema)


class _Watched:
    """The raw bytes pyarrow reads, watched for quotes: whether there are any, and a stray one.

    A quote between two bytes that are neither the delimiter, a line end nor a
    quote cannot open a value and, in a sound file, cannot close one (RFC 4180:
    ``"bro"ken``); pyarrow would close the value there and glue the rest on.
    A memchr per block tells files without quotes apart, which pay nothing
    more; the others are searched by RE2 (pyarrow's regex kernel, one pass of
    a DFA over the block, viewed in place).
    """

    def __init__(self, dialect: Any) -> None:
        self.quote = dialect.quote.encode()
        other = "[^" + _in_class(dialect.delimiter) + "\\r\\n" + _in_class(dialect.quote) + "]"
        self._stray = other + _in_class(dialect.quote) + other
        self._ascii = dialect.encoding in ("utf8", "cp1252", "latin1")
        self.quoted = not self._ascii  # a wide encoding's bytes cannot be searched this way: check every batch
        self.stray_quote = False
        self._tail = b""

    def wrap(self, stream: Any) -> Any:
        if not self._ascii:
            return stream
        watch = self

        class Stream(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def read(self, size: int = -1) -> bytes:
                chunk = stream.read(size)
                if watch.quote in chunk or watch.quote in watch._tail:
                    watch.quoted = True
                    watch.stray_quote = (
                        watch.stray_quote or watch._search(chunk) or watch._search(watch._tail + chunk[:2])
                    )
                watch._tail = chunk[-2:]
                return chunk

        return Stream()

    def _search(self, data: bytes) -> bool:
        text = pa.Array.from_buffers(
            pa.binary(), 1, [None, pa.py_buffer(struct.pack("<ii", 0, len(data))), pa.py_buffer(data)]
        )
        return bool(pc.match_substring_regex(text, self._stray)[0].as_py())


def _in_class(char: str) -> str:
    """A character as RE2 reads it literally, in a character class or out of one."""
    return "\\" + char if char in "\\]^-[.*+?()|{}$" else char


def _line_breaks(batch: pa.RecordBatch, dialect: Any) -> bool:
    """Whether a value holds a line break where it should not: any, without multiline
    values; with them, one whose inner lines read as records of the file's width."""
    width = batch.num_columns
    for column in batch.columns:
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        data = column.buffers()[2]
        raw = data.to_pybytes() if data is not None else b""  # memchr over a copy: far faster than a kernel per value
        if b"\n" not in raw and b"\r" not in raw:
            continue
        hits = pc.or_(pc.match_substring(column, "\n"), pc.match_substring(column, "\r"))
        if not pc.any(hits).as_py():
            continue
        if not dialect.multiline:
            return True
        for value in column.filter(hits).to_pylist():
            inner = value.replace("\r\n", "\n").split("\n")[1:-1]
            if inner and all(
                len(next(csv.reader([text], delimiter=dialect.delimiter, quotechar=dialect.quote), [])) == width
                for text in inner
            ):
                return True
    return False


def _after(lines: Iterator[tuple[int, str]], count: int) -> Iterator[tuple[int, str]]:
    """The lines after the first ``count`` that are not blank."""
    for number, text in lines:
        if count <= 0:
            yield number, text
        elif text.rstrip("\r\n"):
            count -= 1


def _valid(batch: pa.RecordBatch) -> bool:
    """Whether the batch's text is valid UTF-8 (pyarrow does not check it, to read faster; checked once, here)."""
    try:
        batch.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _inferred(rows: list[list[str]], names: list[str]) -> pa.Schema:
    """The types pyarrow would give these records, for a file whose first block it could not read."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return pacsv.read_csv(
        io.BytesIO(text.getvalue().encode("utf-8", "surrogateescape")),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
    ).schema


def _readable(text: str) -> str:
    """Text with invalid UTF-8 bytes (kept as surrogate escapes) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _ESCAPED.search(text) else text


def _misfits(column: pa.Array, target: pa.DataType, offset: int = 0) -> list[int]:
    """Indices of the values that do not cast, by bisection: a few casts for a few bad values among many."""
    try:
        column.cast(target)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(column) == 1:
            return [offset]
    half = len(column) // 2
    return _misfits(column.slice(0, half), target, offset) + _misfits(column.slice(half), target, offset + half)
