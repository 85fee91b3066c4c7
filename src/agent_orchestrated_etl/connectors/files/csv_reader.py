"""CSV that does not stop on bad input.

pyarrow's streaming reader does the work; this module adds what it lacks:
the dialect (sniff.py), rows with the wrong number of fields or a broken
quote sent to quarantine with ``file:line``, the lines an unclosed quote
swallowed read again, rows with invalid UTF-8 and values that do not fit
their column's type (fixed by the first block) quarantined by record
number, and records longer than the block read whole. Where pyarrow gives
up mid-file, the file restarts on a slower path and skips the rows already
given, so nothing is read twice.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.connectors.files.reader import FileReader
from agent_orchestrated_etl.connectors.files.sniff import SAMPLE_BYTES, sniff

_INFER_BYTES = 4 << 20  # the types come from pyarrow's reading of the first 4 MiB: enough rows to judge
_BLOCK_BYTES = 2 << 20  # then the text is read 2 MiB at a time: fewer bytes in flight, as fast (lineitem: 405-437 MB peak against 505-521 at 4 MiB)
_MAX_BLOCK_BYTES = 1 << 30


class CSVReader(FileReader):
    def read(self) -> Iterator[pa.RecordBatch]:
        with self._open() as stream:
            sample = stream.read(SAMPLE_BYTES)
        if not sample.strip():
            self.rejected.append(({"file": self.shown}, "empty file: no header and no rows", Position(origin=self.shown)))
            return
        dialect = sniff(sample, encoding=self.spec.encoding, delimiter=self.spec.delimiter, quote=self.spec.quote, header=self.spec.header, multiline=self.spec.multiline_values)
        block, done = _BLOCK_BYTES, 0
        # The types come from the first block; the file is then read as text and cast. Measured on
        # lineitem SF1 (737 MB): 2.5-2.8 s against 3.6 s for pyarrow converting each block itself,
        # and a value that does not fit its column is quarantined without reading the file again.
        schema = self._first_block_schema(dialect, _INFER_BYTES)
        as_text = schema is not None
        while True:
            bad: list[str] = []
            rows = 0
            try:
                for batch in self._csv_attempt(dialect, block, bad, schema if as_text else None):
                    start, rows = rows, rows + batch.num_rows
                    if rows <= done:  # given before a restart
                        continue
                    if start < done:
                        batch, start = batch.slice(done - start), done
                    done = rows
                    schema = schema or batch.schema
                    batch = self._valid_utf8(batch, start + 1)
                    yield self._conform(batch, schema, start + 1) if as_text else batch
                break
            except pa.ArrowInvalid as exc:
                if "straddling" in str(exc) and block < _MAX_BLOCK_BYTES:
                    block *= 16  # a record longer than the block: restart with bigger blocks, skipping what was given
                elif "conversion error" in str(exc) and schema is not None and not as_text:
                    as_text = True  # a value that does not fit the column's type: restart reading text, quarantine misfits
                else:
                    raise
        if done == 0 and not bad:
            self.rejected.append(({"file": self.shown}, "the file has a header but no rows", Position(origin=self.shown, line=1)))
        rejected_lines: list[str] = []
        while bad:
            first, newline, rest = bad.pop(0).partition("\n")
            if dialect.multiline or not newline or schema is None:
                rejected_lines.append(first + newline + rest)
                continue
            # An unclosed quote swallowed the lines after it: reject its line, read the rest again.
            rejected_lines.append(first)
            if rest.strip():
                batch = self._reparse(rest, dialect, schema, bad)
                if batch.num_rows:
                    yield batch
        for text, line in zip(rejected_lines, self._find_lines(rejected_lines, dialect.encoding), strict=True):
            reason = f"malformed CSV line: wrong number of fields or an unclosed quote ({text[:200]!r})"
            self.rejected.append(({"line": text[:10_000]}, reason, Position(origin=self.shown, line=line)))

    def _first_block_schema(self, dialect: Any, block: int) -> pa.Schema | None:
        """The types pyarrow infers from the first block; None when that block cannot be read (the loop below says why)."""
        try:
            for batch in self._csv_attempt(dialect, block, [], None):
                return batch.schema
        except pa.ArrowInvalid:
            return None
        return None

    def _reparse(self, text: str, dialect: Any, schema: pa.Schema, bad: list[str]) -> pa.RecordBatch:
        """Rows of text that a broken quote had swallowed; rows still broken go to the front of ``bad``."""
        again: list[str] = []

        def reject(row: Any) -> str:
            again.append(row.text)
            return "skip"

        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=schema.names),
            parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter, quote_char=dialect.quote, invalid_row_handler=reject),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, column_types={name: pa.string() for name in schema.names}),
        )
        bad[:0] = again
        batch = table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
        return self._conform(batch, schema, None)

    def _csv_attempt(self, dialect: Any, block: int, bad: list[str], text_columns: pa.Schema | None) -> Iterator[pa.RecordBatch]:
        def reject(row: Any) -> str:
            bad.append(row.text)
            return "skip"

        with self._open() as stream:
            yield from pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=block, encoding=dialect.encoding, autogenerate_column_names=not dialect.header),
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True, check_utf8=False,
                    column_types={name: pa.string() for name in text_columns.names} if text_columns else None,
                ),
                parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter, quote_char=dialect.quote, newlines_in_values=dialect.multiline, invalid_row_handler=reject),
            )

    def _conform(self, batch: pa.RecordBatch, schema: pa.Schema, first_row: int | None) -> pa.RecordBatch:
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
                    row = {name: column[i].as_py() for name, column in zip(batch.schema.names, batch.columns, strict=True)}
                    reason = f"column {field.name}: {row[field.name]!r} is not {field.type} like the rows before it"
                    self.rejected.append((row, reason, Position(origin=self.shown, row=None if first_row is None else first_row + i)))
        return batch.filter(pa.array(keep)).cast(schema)

    def _valid_utf8(self, batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
        """The batch without rows holding invalid UTF-8, which go to quarantine (checked once, here)."""
        try:
            batch.validate(full=True)
            return batch
        except pa.ArrowInvalid:
            pass
        names = batch.schema.names
        values = [c.cast(pa.binary()).to_pylist() if pa.types.is_string(c.type) else c.to_pylist() for c in batch.columns]
        keep = [True] * batch.num_rows
        for i in range(batch.num_rows):
            for name, column in zip(names, values, strict=True):
                value = column[i]
                if isinstance(value, bytes):
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        keep[i] = False
                        row = {n: (c[i].decode("utf-8", "replace") if isinstance(c[i], bytes) else c[i]) for n, c in zip(names, values, strict=True)}
                        self.rejected.append((row, f"invalid UTF-8 in column {name} at byte {exc.start}", Position(origin=self.shown, row=first_row + i)))
                        break
        return batch.filter(pa.array(keep))

    def _find_lines(self, texts: list[str], encoding: str) -> list[int | None]:
        """Physical line numbers of rejected CSV rows, found by one scan of the file.

        pyarrow's streaming reader does not report line numbers to the handler
        (only its single-threaded whole-file reader does), and rejected rows are
        rare, so one pass matching their first lines is cheap.
        """
        found: list[int | None] = [None] * len(texts)
        wanted: dict[str, list[int]] = {}
        for index, text in enumerate(texts):
            wanted.setdefault(text.split("\n", 1)[0].rstrip("\r"), []).append(index)
        left = len(texts)
        if not left:
            return found
        with self._open() as stream:
            handle = io.TextIOWrapper(stream, encoding="utf-8" if encoding == "utf8" else encoding, errors="replace", newline="")
            for number, line in enumerate(handle, start=1):
                indices = wanted.get(line.rstrip("\r\n"))
                if indices:
                    found[indices.pop(0)] = number
                    left -= 1
                    if not left:
                        break
        return found



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

