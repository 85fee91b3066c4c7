"""What every file reader shares: where the file is, how to open it, and the rows it rejected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agent_orchestrated_etl import encryption
from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.connectors.files import filesystems
from agent_orchestrated_etl.exceptions import DataError

Rejected = tuple[dict[str, Any], str, Position]


class FileReader:
    """One read of one file; ``read()`` yields batches and collects the rows it rejects in ``rejected``."""

    def __init__(self, spec: Any, batch_rows: int, fs: Any, path: str, shown: str, compression: str | None) -> None:
        self.spec = spec
        self.batch_rows = batch_rows
        self.fs, self.path, self.shown, self.compression = fs, path, shown, compression
        self.rejected: list[Rejected] = []
        #: Read only the records that start before this line (the readable part of a file that breaks off there).
        self.until_line: int | None = None

    def _open(self, *, to_the_break: bool = False) -> Any:
        return filesystems.open_input(self.fs, self.path, self.compression, to_the_break=to_the_break)

    def read(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


class ParquetReader(FileReader):
    def read(self) -> Iterator[pa.RecordBatch]:
        if self.compression:
            raise DataError(
                "Parquet compresses inside the file; a .gz/.zst around it is not supported",
                where=self.shown,
                hint="decompress the file first",
            )
        filesystems.confine_local(self.fs, self.path)
        with self.fs.open_input_file(self.path) as handle:
            # pre_buffer caches every row group it has read until the file is closed.
            parquet = pq.ParquetFile(handle, pre_buffer=False, **encryption.parquet_reader_options())
            yield from parquet.iter_batches(batch_size=self.batch_rows)
