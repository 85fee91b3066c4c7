"""Files: CSV, JSON Lines and Parquet as sources; Parquet, CSV and JSON Lines as destinations.

Reading streams through pyarrow's incremental readers, one partition per file
of a glob. Writing stages each task's rows under ``_staging/<run>/`` and
commits by moving them into place and then replacing ``_manifest.json``
atomically: the manifest is the commit, and readers ignore files it does not list.
"""

from __future__ import annotations

import glob as globlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pydantic import Field

from agent_orchestrated_etl.connectors.base import (
    CommitResult,
    ConnectorSpec,
    Destination,
    DestinationCapabilities,
    DestinationSpecBase,
    Partition,
    Position,
    Source,
    SourceCapabilities,
)
from agent_orchestrated_etl.exceptions import DataError, SourceNotFoundError

Format = Literal["csv", "jsonl", "parquet"]
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_BLOCK_BYTES = 4 << 20  # pyarrow infers CSV/JSON types from the first block: 4 MiB sees enough rows


def infer_format(path: str) -> Format | None:
    return _SUFFIXES.get(Path(path).suffix.lower())


class FileSourceSpec(ConnectorSpec):
    type: Literal["file"]
    path: str = Field(description="A file or a glob (data/*.csv); one task per file.")
    format: Format | None = Field(None, description="Inferred from the extension when omitted.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf8"


class FileSource(Source):
    spec_model = FileSourceSpec
    capabilities = SourceCapabilities(partitioned_reads=True)

    def __init__(self, name: str, spec: FileSourceSpec, *, batch_rows: int) -> None:
        super().__init__(name, spec, batch_rows=batch_rows)
        self._rejected: list[tuple[dict[str, Any], str, Position]] = []

    def describe(self) -> str:
        return f"file {self.spec.path}"

    def partitions(self) -> list[Partition]:
        paths = sorted(globlib.glob(os.path.expanduser(self.spec.path))) if globlib.has_magic(self.spec.path) else [self.spec.path]
        if not paths:
            raise SourceNotFoundError(f"no file matches {self.spec.path}", where=f"source {self.name}", hint="check the path and the glob")
        return [Partition(key=path, description=path) for path in paths]

    def read(self, partition: Partition) -> Iterator[tuple[pa.RecordBatch, Position]]:
        path = partition.key
        if not os.path.exists(path):
            raise SourceNotFoundError(f"file not found: {path}", where=f"source {self.name}", hint="check `path:` in the spec")
        fmt = self.spec.format or infer_format(path)
        if fmt is None:
            raise DataError(f"cannot tell the format of {path}", where=f"source {self.name}", hint="add `format: csv|jsonl|parquet`")
        row = 1
        for batch in self._batches(path, fmt):
            yield batch, Position(origin=path, row=row)
            row += batch.num_rows

    def quarantined(self) -> Iterator[tuple[dict[str, Any], str, Position]]:
        rejected, self._rejected = self._rejected, []
        return iter(rejected)

    def _batches(self, path: str, fmt: Format) -> Iterator[pa.RecordBatch]:
        try:
            if fmt == "parquet":
                # pre_buffer caches every row group it has read until the file is closed.
                yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=self.batch_rows)
            elif fmt == "jsonl":
                yield from pajson.open_json(path, read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES))
            else:
                yield from self._csv_batches(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"cannot read {fmt}: {exc}", where=f"source {self.name}: {path}", hint="check the file's format and encoding") from exc

    def _csv_batches(self, path: str) -> Iterator[pa.RecordBatch]:
        bad: list[str] = []

        def reject(row: Any) -> str:
            bad.append(row.text)
            return "skip"

        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES, encoding=self.spec.encoding),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
            parse_options=pacsv.ParseOptions(delimiter=self.spec.delimiter, newlines_in_values=True, invalid_row_handler=reject),
        )
        expected = len(reader.schema)
        yield from reader
        for text, line in zip(bad, _find_lines(path, bad), strict=True):
            reason = f"malformed CSV line: expected {expected} fields ({text[:200]!r})"
            self._rejected.append(({"line": text}, reason, Position(origin=path, line=line)))


def _find_lines(path: str, texts: list[str]) -> list[int | None]:
    """Physical line numbers of rejected CSV rows, found by one scan of the file.

    pyarrow's streaming reader does not report line numbers to the handler
    (only its single-threaded whole-file reader does), and rejected rows are
    rare, so one pass matching their first lines in order is cheap.
    """
    found: list[int | None] = [None] * len(texts)
    if not texts:
        return found
    wanted = [t.split("\n", 1)[0].rstrip("\r") for t in texts]
    index = 0
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if line.rstrip("\r\n") == wanted[index]:
                found[index] = number
                index += 1
                if index == len(texts):
                    break
    return found


class FileDestinationSpec(DestinationSpecBase):
    type: Literal["file"]
    path: str = Field(description="A directory; committed files and _manifest.json go in it.")
    format: Format = "parquet"
    write: Literal["append", "replace"] = "append"  # type: ignore[assignment]


class FileDestination(Destination):
    spec_model = FileDestinationSpec
    capabilities = DestinationCapabilities(transactional=False, write_modes=frozenset({"append", "replace"}))

    def __init__(self, spec: FileDestinationSpec, *, memory_limit_bytes: int) -> None:
        super().__init__(spec, memory_limit_bytes=memory_limit_bytes)
        self.root = Path(spec.path).expanduser()
        self._writers: dict[tuple[str, str, str], _Writer] = {}

    def describe(self) -> str:
        return f"{self.spec.format} files in {self.root}"

    def _staging(self, run_id: str) -> Path:
        return self.root / "_staging" / run_id

    def begin(self, run_id: str, task_id: str) -> None:
        for kind in ("data", "quarantine"):
            shutil.rmtree(self._staging(run_id) / kind / task_id, ignore_errors=True)

    def write_batch(self, run_id: str, task_id: str, batch: pa.RecordBatch) -> None:
        self._writer(run_id, task_id, "data", batch.schema).write(batch)

    def write_quarantine(self, run_id: str, task_id: str, rows: pa.RecordBatch) -> None:
        self._writer(run_id, task_id, "quarantine", rows.schema).write(rows)

    def _writer(self, run_id: str, task_id: str, kind: str, schema: pa.Schema) -> _Writer:
        key = (run_id, task_id, kind)
        if key not in self._writers:
            directory = self._staging(run_id) / kind / task_id
            directory.mkdir(parents=True, exist_ok=True)
            self._writers[key] = _Writer(directory / f"part-0.{self.spec.format}", self.spec.format, schema)
        return self._writers[key]

    def finish(self, run_id: str, task_id: str) -> None:
        for kind in ("data", "quarantine"):
            writer = self._writers.pop((run_id, task_id, kind), None)
            if writer:
                writer.close()

    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        manifest = _Manifest.load(self.root)
        if run_id in manifest.runs:
            return CommitResult(rows=manifest.runs[run_id], already_committed=True)
        for task_id in task_ids:
            self.finish(run_id, task_id)
        moves = self._commit_journal(run_id, task_ids)
        for source, target, _ in moves:
            # After a crash some moves are done already; the journal makes the rest repeatable.
            if (self.root / source).exists():
                (self.root / target).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.root / source, self.root / target)
        data = [target for _, target, kind in moves if kind == "data"]
        quarantine = [target for _, target, kind in moves if kind == "quarantine"]
        rows = sum(_count_rows(self.root / f, self.spec.format) for f in data)
        quarantined = sum(_count_rows(self.root / f, self.spec.format) for f in quarantine)
        previous = list(manifest.files)
        manifest.files = data if self.spec.write == "replace" else manifest.files + data
        manifest.quarantine += quarantine
        manifest.runs[run_id] = rows
        manifest.state.update(state or {})  # the incremental marks commit with the files that hold the rows
        manifest.save(self.root)  # the commit point
        for old in set(previous) - set(manifest.files):
            (self.root / old).unlink(missing_ok=True)
        shutil.rmtree(self._staging(run_id), ignore_errors=True)
        return CommitResult(rows=rows, quarantined_rows=quarantined)

    def _commit_journal(self, run_id: str, task_ids: list[str]) -> list[tuple[str, str, str]]:
        """The moves that publish a run, written down before the first one is made."""
        journal = self._staging(run_id) / "_commit.json"
        if journal.exists():
            return [tuple(move) for move in json.loads(journal.read_text())]  # type: ignore[misc]
        moves = []
        for kind, target in (("data", Path()), ("quarantine", Path("_quarantine"))):
            for task_id in task_ids:
                for file in sorted((self._staging(run_id) / kind / task_id).glob("part-*")):
                    name = f"{run_id}-{task_id}-{file.name}".replace("/", "_")
                    moves.append((str(file.relative_to(self.root)), str(target / name), kind))
        _write_atomically(journal, json.dumps(moves))
        return moves

    def read_state(self, key: str) -> Any | None:
        return _Manifest.load(self.root).state.get(key)

    def abort(self, run_id: str) -> None:
        for key in [k for k in self._writers if k[0] == run_id]:
            self._writers.pop(key).close()
        shutil.rmtree(self._staging(run_id), ignore_errors=True)


class _Writer:
    def __init__(self, path: Path, fmt: Format, schema: pa.Schema) -> None:
        self.fmt = fmt
        if fmt == "parquet":
            self._out: Any = pq.ParquetWriter(path, schema)
        elif fmt == "csv":
            self._out = pacsv.CSVWriter(str(path), schema)
        else:
            self._out = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "jsonl":
            # pyarrow has no JSON writer; rows are serialised here, one batch at a time.
            self._out.writelines(json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in batch.to_pylist())
        else:
            self._out.write(batch) if self.fmt == "csv" else self._out.write_batch(batch)

    def close(self) -> None:
        self._out.close()


def _count_rows(path: Path, fmt: Format) -> int:
    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "csv":  # quoted values may hold newlines, so count records, not lines
        return sum(batch.num_rows for batch in pacsv.open_csv(path))
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


class _Manifest:
    NAME = "_manifest.json"

    def __init__(self, files: list[str], quarantine: list[str], runs: dict[str, int], state: dict[str, Any] | None = None) -> None:
        self.state = state or {}
        self.files = files
        self.quarantine = quarantine
        self.runs = runs

    @classmethod
    def load(cls, root: Path) -> _Manifest:
        path = root / cls.NAME
        if not path.exists():
            return cls([], [], {})
        data = json.loads(path.read_text())
        return cls(data["files"], data.get("quarantine", []), data.get("runs", {}), data.get("state", {}))

    def save(self, root: Path) -> None:
        _write_atomically(root / self.NAME, json.dumps({"files": self.files, "quarantine": self.quarantine, "runs": self.runs, "state": self.state}, indent=1))


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
