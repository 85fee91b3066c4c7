"""Reading CSV, JSON Lines, JSON arrays and Parquet, plain or .gz/.zst, local or on S3.

One partition per file of a glob. Each reader streams: pyarrow's incremental
CSV and JSON readers, Parquet row groups, and ijson for JSON arrays. Bad
input does not stop a load: a malformed CSV line or JSON line goes to
quarantine with ``file:line`` and the reason, a row with invalid UTF-8 goes
to quarantine with its record number, and the good rows load.

pyarrow's fast paths give up on a few inputs (a record longer than the
block, a JSON Lines type conflict or syntax error). The reader then restarts
the file on a slower path and skips the rows it already gave, so nothing is
read twice.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import os
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field

from agent_orchestrated_etl.connectors.base import ConnectorSpec, Partition, Position, Source, SourceCapabilities
from agent_orchestrated_etl.connectors.files import filesystems
from agent_orchestrated_etl.connectors.files.destination import read_manifest
from agent_orchestrated_etl.connectors.files.filesystems import S3Settings
from agent_orchestrated_etl.connectors.files.sniff import SAMPLE_BYTES, sniff
from agent_orchestrated_etl.connectors.nested import NestedOptions, RecordsToArrow, flatten
from agent_orchestrated_etl.exceptions import DataError, SourceNotFoundError

Format = Literal["csv", "jsonl", "json", "parquet"]
SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
_BLOCK_BYTES = 4 << 20  # pyarrow infers CSV/JSON types from the first block: 4 MiB sees enough rows
_MAX_BLOCK_BYTES = 1 << 30
Rejected = tuple[dict[str, Any], str, Position]


def infer_format(path: str) -> Format | None:
    stem = path[: -len(os.path.splitext(path)[1])] if filesystems.compression_of(path) else path
    return SUFFIXES.get(os.path.splitext(stem)[1].lower())


class FileSourceSpec(ConnectorSpec):
    type: Literal["file"]
    path: str = Field(description="A file, a directory or a glob (data/**/*.csv.gz, s3://bucket/raw/*.parquet); one task per file.")
    format: Format | None = Field(None, description="Inferred from the extension when omitted (.csv, .jsonl, .json, .parquet).")
    compression: Literal["gzip", "zstd", "none"] | None = Field(None, description="Inferred from .gz/.zst when omitted.")
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="CSV: detected when omitted.")
    quote: str | None = Field(None, min_length=1, max_length=1, description="CSV: detected when omitted.")
    header: bool | None = Field(None, description="CSV: whether the first line names the columns; detected when omitted.")
    encoding: str | None = Field(None, description="CSV: utf8, cp1252, latin1, utf16...; detected when omitted.")
    multiline_values: bool | None = Field(None, description="CSV: quoted values may hold line breaks; detected from the first 64 KiB when omitted.")
    records: str | None = Field(None, description="JSON: dotted path of the record array in the document (data.items); default: the top-level array.")
    file_name_column: str | None = Field(None, description="Add a column with each row's file path under this name.")
    hive_partitioning: bool = Field(False, description="Add a string column for each key=value directory in a file's path.")
    nested: NestedOptions = Field(default_factory=NestedOptions)
    s3: S3Settings | None = None


class FileSource(Source):
    spec_model = FileSourceSpec
    capabilities = SourceCapabilities(partitioned_reads=True)

    def __init__(self, name: str, spec: FileSourceSpec, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        self._rejected: list[Rejected] = []

    def describe(self) -> str:
        return f"file {self.spec.path}"

    def partitions(self) -> list[Partition]:
        """One per file; for a directory written by the file destination, the files its manifest lists."""
        fs, path = filesystems.resolve(self.spec.path, self.spec.s3)
        paths = read_manifest(fs, path) if fs.get_file_info(path).type == pafs.FileType.Directory else None
        if paths == []:  # a destination directory with nothing committed yet: one task that reads nothing
            shown = filesystems.display(fs, path)
            return [Partition(key=shown, description=f"{shown} (no committed files)", options={"empty": True})]
        if paths is None:
            paths = filesystems.expand(fs, path)
        if not paths and not globlib.has_magic(path):
            paths = [path]  # its task reports the missing file, where the run records show it
        if not paths:
            raise SourceNotFoundError(f"no file matches {self.spec.path}", where=f"source {self.name}", hint="check the path and the glob")
        return [Partition(key=filesystems.display(fs, p), description=filesystems.display(fs, p)) for p in paths]

    def quarantined(self) -> Iterator[Rejected]:
        rejected, self._rejected = self._rejected, []
        return iter(rejected)

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        """Yield the file's batches; raises SourceNotFoundError, and DataError for a file that cannot be read at all."""
        if partition.options.get("empty"):
            return
        fs, path = filesystems.resolve(partition.key, self.spec.s3)
        shown = partition.key
        fmt = self.spec.format or infer_format(path)
        if fmt is None:
            raise DataError(f"cannot tell the format of {shown}", where=f"source {self.name}", hint="add `format: csv|jsonl|json|parquet`")
        compression = None if self.spec.compression == "none" else (self.spec.compression or filesystems.compression_of(path))
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise SourceNotFoundError(f"file not found: {shown}", where=f"source {self.name}", hint="check `path:` in the spec")
        reader = _FileReader(self, fs, path, shown, compression)
        hive = _hive_values(path) if self.spec.hive_partitioning else {}
        row = 1
        try:
            for batch in getattr(reader, fmt)():
                for key, value in hive.items():
                    batch = batch.append_column(key, pa.repeat(value, batch.num_rows))
                if self.spec.file_name_column:
                    batch = batch.append_column(self.spec.file_name_column, pa.repeat(shown, batch.num_rows))
                yield batch, Position(origin=shown, row=row)
                row += batch.num_rows
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {fmt}: {exc}", where=f"source {self.name}: {shown}", hint="check the file's format, compression and encoding") from exc
        finally:
            self._rejected += reader.rejected


class _FileReader:
    """One read of one file; collects the rows it rejects."""

    def __init__(self, source: FileSource, fs: Any, path: str, shown: str, compression: str | None) -> None:
        self.spec: FileSourceSpec = source.spec
        self.batch_rows = source.batch_rows
        self.fs, self.path, self.shown, self.compression = fs, path, shown, compression
        self.rejected: list[Rejected] = []

    def _open(self) -> Any:
        return filesystems.open_input(self.fs, self.path, self.compression)

    def parquet(self) -> Iterator[pa.RecordBatch]:
        if self.compression:
            raise DataError("Parquet compresses inside the file; a .gz/.zst around it is not supported", where=self.shown, hint="decompress the file first")
        with self.fs.open_input_file(self.path) as handle:
            # pre_buffer caches every row group it has read until the file is closed.
            yield from pq.ParquetFile(handle, pre_buffer=False).iter_batches(batch_size=self.batch_rows)

    def csv(self) -> Iterator[pa.RecordBatch]:
        with self._open() as stream:
            sample = stream.read(SAMPLE_BYTES)
        if not sample.strip():
            self.rejected.append(({"file": self.shown}, "empty file: no header and no rows", Position(origin=self.shown)))
            return
        dialect = sniff(sample, encoding=self.spec.encoding, delimiter=self.spec.delimiter, quote=self.spec.quote, header=self.spec.header, multiline=self.spec.multiline_values)
        block, done, schema, as_text = _BLOCK_BYTES, 0, None, False
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

    def jsonl(self) -> Iterator[pa.RecordBatch]:
        done = 0
        schema: pa.Schema | None = None
        if self.spec.nested.shape != "unnest":
            try:
                with self._open() as stream:
                    for batch in pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES)):
                        schema = batch.schema
                        yield flatten(batch, self.spec.nested.separator) if self.spec.nested.shape == "flatten" else batch
                        done += batch.num_rows
                return
            except pa.ArrowInvalid:
                pass  # a conflict, a syntax error or a huge line: go on line by line from record `done`
        yield from self._jsonl_slowly(done, schema)

    def _jsonl_slowly(self, skip: int, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
        converter = RecordsToArrow(self.spec.nested)
        converter.schema = schema
        records: list[Any] = []
        lines: list[int] = []
        seen = 0
        with self._open() as stream:
            for number, raw in enumerate(_lines(stream), start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except ValueError as exc:
                    self.rejected.append(({"line": raw[:10_000].decode("utf-8", "replace")}, f"malformed JSON: {exc}", Position(origin=self.shown, line=number)))
                    continue
                seen += 1
                if seen <= skip:
                    continue
                records.append(record)
                lines.append(number)
                if len(records) >= self.batch_rows:
                    yield from self._convert(converter, records, lines)
                    records, lines = [], []
        yield from self._convert(converter, records, lines)

    def _convert(self, converter: RecordsToArrow, records: list[Any], lines: list[int]) -> Iterator[pa.RecordBatch]:
        if not records:
            return
        batch, rejected = converter.convert(records)
        self.rejected += [(row, reason, Position(origin=self.shown, line=lines[i])) for row, reason, i in rejected]
        if batch is not None:
            yield batch

    def json(self) -> Iterator[pa.RecordBatch]:
        import ijson

        prefix = f"{self.spec.records}.item" if self.spec.records else "item"
        converter = RecordsToArrow(self.spec.nested)
        records: list[Any] = []
        count = 0
        with self._open() as stream:
            try:
                for record in ijson.items(stream, prefix, use_float=True):
                    records.append(record)
                    count += 1
                    if len(records) >= self.batch_rows:
                        yield from self._convert(converter, records, list(range(count - len(records) + 1, count + 1)))
                        records = []
            except ijson.JSONError as exc:
                self.rejected.append(({"file": self.shown}, f"malformed JSON after record {count}: {exc}; the rest of the file was not read", Position(origin=self.shown, row=count + 1)))
        yield from self._convert(converter, records, list(range(count - len(records) + 1, count + 1)))


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


def _hive_values(path: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for segment in path.split("/")[:-1]:
        key, eq, value = segment.partition("=")
        if eq and key:
            values[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else unquote(value)
    return values


def _lines(stream: Any) -> Iterator[bytes]:
    """Lines of a binary pyarrow stream, however long (a 50 MB line is one line)."""
    pending = b""
    while chunk := stream.read(1 << 20):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending
