"""The file source: CSV, JSON Lines, JSON arrays and Parquet, plain or .gz/.zst, local or on S3.

One partition per file of a glob, or per file a destination's manifest lists.
The reading itself is in csv_reader.py, json_reader.py and reader.py; this
module picks the reader and adds the file name and hive partition columns.
"""

from __future__ import annotations

import glob as globlib
import os
import threading
from collections.abc import Iterator
from typing import Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import Field

from agent_orchestrated_etl import encryption
from agent_orchestrated_etl.connectors.base import (
    ConnectorSpec,
    EngineScan,
    Partition,
    Position,
    Source,
    SourceCapabilities,
)
from agent_orchestrated_etl.connectors.files import filesystems
from agent_orchestrated_etl.connectors.files.csv_reader import CSVReader
from agent_orchestrated_etl.connectors.files.csv_records import Broken, physical_lines
from agent_orchestrated_etl.connectors.files.destination import read_manifest
from agent_orchestrated_etl.connectors.files.filesystems import S3Settings
from agent_orchestrated_etl.connectors.files.json_reader import JSONArrayReader, JSONLinesReader
from agent_orchestrated_etl.connectors.files.reader import FileReader, ParquetReader, Rejected
from agent_orchestrated_etl.connectors.nested import NestedOptions
from agent_orchestrated_etl.exceptions import AgentETLError, DataError, SourceNotFoundError

Format = Literal["csv", "jsonl", "json", "parquet"]
SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}
_READERS: dict[str, type[FileReader]] = {
    "csv": CSVReader,
    "jsonl": JSONLinesReader,
    "json": JSONArrayReader,
    "parquet": ParquetReader,
}


def infer_format(path: str) -> Format | None:
    stem = path[: -len(os.path.splitext(path)[1])] if filesystems.compression_of(path) else path
    return SUFFIXES.get(os.path.splitext(stem)[1].lower())


class FileSourceSpec(ConnectorSpec):
    type: Literal["file"]
    path: str = Field(
        description="A file, a directory or a glob (data/**/*.csv.gz, s3://bucket/raw/*.parquet); one task per file."
    )
    format: Format | None = Field(
        None, description="Inferred from the extension when omitted (.csv, .jsonl, .json, .parquet)."
    )
    compression: Literal["gzip", "zstd", "none"] | None = Field(
        None, description="Inferred from .gz/.zst when omitted."
    )
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="CSV: detected when omitted.")
    quote: str | None = Field(None, min_length=1, max_length=1, description="CSV: detected when omitted.")
    header: bool | None = Field(
        None, description="CSV: whether the first line names the columns; detected when omitted."
    )
    encoding: str | None = Field(None, description="CSV: utf8, cp1252, latin1, utf16...; detected when omitted.")
    multiline_values: bool | None = Field(
        None, description="CSV: quoted values may hold line breaks; detected from the first 64 KiB when omitted."
    )
    records: str | None = Field(
        None,
        description="JSON: dotted path of the record array in the document (data.items); default: the top-level array.",
    )
    file_name_column: str | None = Field(None, description="Add a column with each row's file path under this name.")
    hive_partitioning: bool | None = Field(
        None,
        description=(
            "Add a string column for each key=value directory in a file's path. When omitted, only for a directory our"
            " file destination wrote (its partition_by columns come back); false: never."
        ),
    )
    nested: NestedOptions = Field(default_factory=NestedOptions)
    s3: S3Settings | None = None


class FileSource(Source[FileSourceSpec]):
    spec_model = FileSourceSpec
    capabilities = SourceCapabilities(partitioned_reads=True)

    def __init__(self, name: str, spec: FileSourceSpec, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        # Tasks read different files of one source in parallel threads, and each
        # drains quarantined() right after its read(): per thread, so rows stay with their task.
        self._local = threading.local()

    def describe(self) -> str:
        return f"file {self.spec.path}"

    def pushdown_blocker(self) -> str | None:
        if (self.spec.format or infer_format(self.spec.path)) != "parquet":
            return "only Parquet is read by the destination's engine (CSV and JSON are checked line by line here)"
        if self.spec.s3 is not None or "://" in self.spec.path:
            return "the files are not on local disk"
        if encryption.key() is not None:
            return "encryption at rest is on, and DuckDB cannot read Parquet whose keys a KMS client wraps"
        if (
            self.spec.file_name_column
            or self.spec.hive_partitioning
            or self.spec.nested != NestedOptions()
            or self._our_partitions()
        ):
            return "columns are added or reshaped while reading"
        return None

    def engine_scan(self, engine: str, partition: Partition) -> EngineScan | None:
        """DuckDB reads a local Parquet file with its own reader; the footer gives the row count up front."""
        if engine != "duckdb":
            return None
        return EngineScan(
            "SELECT * FROM read_parquet(?)",
            partition.key,
            params=(partition.key,),
            empty=bool(partition.options.get("empty")),
            rows_sql="SELECT num_rows FROM parquet_file_metadata(?)",
        )

    def _our_partitions(self) -> bool:
        """Whether the path is a directory our destination wrote with partition_by, whose columns come back."""
        if self.spec.hive_partitioning is not None or not os.path.isdir(self.spec.path):
            return False
        fs, path = filesystems.resolve(self.spec.path)
        return any(_hive_values(p[len(path.rstrip("/")) :]) for p in read_manifest(fs, path) or [])

    def reread_cost(self) -> str | None:
        if self.spec.s3 is not None or "://" in self.spec.path:
            return "each read downloads the files again"
        return None

    def partitions(self) -> list[Partition]:
        """One per file; for a directory written by the file destination, the files its manifest lists."""
        fs, path = filesystems.resolve(self.spec.path, self.spec.s3)
        paths = read_manifest(fs, path) if filesystems.info(fs, path).type == pafs.FileType.Directory else None
        if paths == []:  # a destination directory with nothing committed yet: one task that reads nothing
            shown = filesystems.display(fs, path)
            return [Partition(key=shown, description=f"{shown} (no committed files)", options={"empty": True})]
        # Our destination's partition_by directories come back as columns: a round trip keeps them.
        options = {"hive_below": path.rstrip("/")} if paths is not None and self.spec.hive_partitioning is None else {}
        if paths is None:
            paths = filesystems.expand(fs, path)
        if not paths and not globlib.has_magic(path):
            paths = [path]  # its task reports the missing file, where the run records show it
        if not paths:
            raise SourceNotFoundError(
                f"no file matches {self.spec.path}", where=f"source {self.name}", hint="check the path and the glob"
            )
        return [
            Partition(key=filesystems.display(fs, p), description=filesystems.display(fs, p), options=dict(options))
            for p in paths
        ]

    def subdivide(self, partition: Partition) -> list[Partition] | None:
        """A text file that breaks off (a truncated .gz): the records before the break, and the break itself.

        The first part loads; the second fails again and is set aside with the
        line where the file breaks off, so no readable row is lost with it.
        """
        fmt = self.spec.format or infer_format(partition.key)
        if fmt not in ("csv", "jsonl") or "damaged" in partition.options or "until_line" in partition.options:
            return None
        fs, path = filesystems.resolve(partition.key, self.spec.s3)
        compression = (
            None if self.spec.compression == "none" else (self.spec.compression or filesystems.compression_of(path))
        )
        try:
            with filesystems.open_input(fs, path, compression, to_the_break=True) as stream:
                for _ in physical_lines(stream, "latin1"):  # any byte decodes: only the break is sought
                    pass
        except Broken as exc:
            depth = partition.options.get("split_depth", 0) + 1
            return [
                Partition(
                    key=partition.key,
                    description=f"{partition.key} before line {exc.line}",
                    options={**partition.options, "until_line": exc.line, "split_depth": depth},
                ),
                Partition(
                    key=partition.key,
                    description=f"{partition.key}:{exc.line}",
                    options={**partition.options, "damaged": str(exc), "split_depth": depth},
                ),
            ]
        return None

    def quarantined(self) -> Iterator[Rejected]:
        rejected, self._local.rejected = getattr(self._local, "rejected", []), []
        return iter(rejected)

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        """Yield the file's batches; raises SourceNotFoundError, and DataError for a file that cannot be read at all."""
        if partition.options.get("empty"):
            return
        if "damaged" in partition.options:
            raise DataError(partition.options["damaged"], where=f"source {self.name}: {partition.description}")
        fs, path = filesystems.resolve(partition.key, self.spec.s3)
        shown = partition.key
        fmt = self.spec.format or infer_format(path)
        if fmt is None:
            raise DataError(
                f"cannot tell the format of {shown}",
                where=f"source {self.name}",
                hint="add `format: csv|jsonl|json|parquet`",
            )
        compression = (
            None if self.spec.compression == "none" else (self.spec.compression or filesystems.compression_of(path))
        )
        if filesystems.info(fs, path).type != pafs.FileType.File:
            raise SourceNotFoundError(
                f"file not found: {shown}", where=f"source {self.name}", hint="check `path:` in the spec"
            )
        reader = _READERS[fmt](self.spec, self.batch_rows, fs, path, shown, compression)
        reader.until_line = partition.options.get("until_line")
        below = partition.options.get("hive_below")
        hive = _hive_values(path) if self.spec.hive_partitioning else _hive_values(path[len(below) :]) if below else {}
        row = 1
        try:
            for batch in reader.read():
                for key, value in hive.items():
                    batch = batch.append_column(key, pa.repeat(value, batch.num_rows))
                if self.spec.file_name_column:
                    batch = batch.append_column(self.spec.file_name_column, pa.repeat(shown, batch.num_rows))
                yield batch, Position(origin=shown, row=row)
                row += batch.num_rows
        except AgentETLError as exc:
            raise exc.at(f"source {self.name}") from exc
        except OSError as exc:
            if isinstance(fs, pafs.S3FileSystem):  # the network or the credentials, not the file's bytes
                raise filesystems.os_error(exc, shown).at(f"source {self.name}") from exc
            raise DataError(
                f"cannot read {fmt}: {exc}",
                where=f"source {self.name}: {shown}",
                hint="check the file's format, compression and encoding",
            ) from exc
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise DataError(
                f"cannot read {fmt}: {exc}",
                where=f"source {self.name}: {shown}",
                hint="check the file's format, compression and encoding",
            ) from exc
        finally:
            self._local.rejected = [*getattr(self._local, "rejected", []), *reader.rejected]


def _hive_values(path: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for segment in path.split("/")[:-1]:
        key, eq, value = segment.partition("=")
        if eq and key:
            values[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else unquote(value)
    return values
