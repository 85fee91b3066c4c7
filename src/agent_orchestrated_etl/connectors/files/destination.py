"""Parquet, CSV and JSON Lines files as a destination, locally or on S3, optionally hive-partitioned.

Each task stages its rows under ``_staging/<run>/``. The commit first writes
its plan (staged file -> final name) into staging, then moves the files, and
then replaces ``_manifest.json``: the manifest is the commit, and readers
(this project's file source among them) ignore files it does not list. A
commit that dies half-way is finished by the next one from the same plan,
so files are neither lost nor listed twice. On S3 every object appears
whole when its upload completes, so the manifest's single PUT is atomic too.
"""

from __future__ import annotations

import json
import os
import posixpath
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from agent_orchestrated_etl import encryption
from agent_orchestrated_etl.connectors.base import (
    CommitResult,
    Destination,
    DestinationCapabilities,
    DestinationSpecBase,
)
from agent_orchestrated_etl.connectors.files import filesystems
from agent_orchestrated_etl.connectors.files.filesystems import S3Settings
from agent_orchestrated_etl.exceptions import ConfigurationError

OutFormat = Literal["parquet", "csv", "jsonl"]
MANIFEST = "_manifest.json"
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_ROW_GROUP_BYTES = 64 << 20
_JUDGE_ROWS = 1000
_MIN_QUEUED_BYTES = 16 << 20


class FileDestinationSpec(DestinationSpecBase):
    type: Literal["file"]
    path: str = Field(
        description="A directory (local or s3://bucket/prefix); committed files and _manifest.json go in it."
    )
    format: OutFormat = "parquet"
    write: Literal["append", "replace"] = "append"
    partition_by: list[str] = Field(
        default_factory=list, description="Hive partitioning: region=eu/day=2024-01-01/ directories."
    )
    s3: S3Settings | None = None

    @model_validator(mode="after")
    def _no_schema_policy(self) -> FileDestinationSpec:
        # Each committed file holds the columns its own data had: there is no target table to freeze or trim.
        if self.schema_ != "evolve":
            raise ValueError(
                f"schema: {self.schema_} does not apply to a file destination (each file keeps the columns of its data); leave `schema:` out"
            )
        return self


class FileDestination(Destination[FileDestinationSpec]):
    spec_model = FileDestinationSpec
    capabilities = DestinationCapabilities(transactional=False, write_modes=frozenset({"append", "replace"}))

    def __init__(self, spec: FileDestinationSpec, *, memory_limit_bytes: int) -> None:
        super().__init__(spec, memory_limit_bytes=memory_limit_bytes)
        if spec.format != "parquet" and encryption.key() is not None:
            raise ConfigurationError(
                f"AGENT_ETL_ENCRYPTION_KEY is set, and {spec.format} files cannot be encrypted so that readers can read them",
                where="destination.format",
                hint="write format: parquet (Parquet modular encryption), or unset AGENT_ETL_ENCRYPTION_KEY",
            )
        fs, self.root = filesystems.resolve(spec.path, spec.s3)
        # With an assumed role, each use asks for the filesystem again, which carries renewed credentials.
        self._fs: pafs.FileSystem | None = None if spec.s3 is not None and spec.s3.role_arn else fs
        self._writers: dict[tuple[str, str, str, str], _Writer] = {}
        self._parts: dict[tuple[str, str, str, str], int] = {}
        #: Rows per staged file, as written; files staged by an earlier process are counted by reading them.
        self._rows: dict[str, int] = {}
        # A row group waits whole in memory before it is encoded, one per open file: a task
        # writing hive partitions may hold many files open, so they write each batch at once.
        self._row_group_bytes = (
            0 if spec.partition_by else max(1 << 20, min(_ROW_GROUP_BYTES, memory_limit_bytes // 16))
        )

    @property
    def fs(self) -> pafs.FileSystem:
        return self._fs if self._fs is not None else filesystems.resolve(self.spec.path, self.spec.s3)[0]

    @fs.setter
    def fs(self, fs: pafs.FileSystem) -> None:
        self._fs = fs

    def describe(self) -> str:
        return f"{self.spec.format} files in {filesystems.display(self.fs, self.root)}"

    def _staging(self, run_id: str) -> str:
        return f"{self.root}/_staging/{run_id}"

    def _staged_dirs(self, run_id: str, kind: str, task_id: str) -> list[str]:
        """Where a task's files are staged; a run staged before file names were made shell-safe used its old name."""
        names = dict.fromkeys([_safe(task_id), _legacy_safe(task_id)])
        return [f"{self._staging(run_id)}/{kind}/{name}" for name in names]

    def begin(self, run_id: str, task_id: str) -> None:
        shown = filesystems.display(self.fs, self.root)
        try:
            self.fs.create_dir(self.root, recursive=True)  # on S3 this creates the bucket, if s3.allow_bucket_creation
            for kind in ("data", "quarantine"):
                for base in self._staged_dirs(run_id, kind, task_id):
                    self.fs.delete_dir_contents(base, missing_dir_ok=True)
        except OSError as exc:
            raise filesystems.os_error(exc, shown) from exc

    def write_batch(self, run_id: str, task_id: str, batch: pa.RecordBatch) -> None:
        for directory, part in _split(batch, self.spec.partition_by):
            self._write(run_id, task_id, "data", directory, part)

    def write_quarantine(self, run_id: str, task_id: str, rows: pa.RecordBatch) -> None:
        self._write(run_id, task_id, "quarantine", "", rows)

    def _write(self, run_id: str, task_id: str, kind: str, directory: str, batch: pa.RecordBatch) -> None:
        key = (run_id, task_id, kind, directory)
        writer = self._writers.get(key)
        if writer is not None and writer.schema != batch.schema:
            writer.close()  # the schema widened: a new file, so no column is dropped
            writer = None
        if writer is None:
            number = self._parts[key] = self._parts.get(key, -1) + 1
            base = posixpath.join(self._staging(run_id), kind, _safe(task_id), directory).rstrip("/")
            self.fs.create_dir(base, recursive=True)
            fmt = self.spec.format
            writer = self._writers[key] = _Writer(
                self.fs, f"{base}/part-{number}.{fmt}", fmt, batch, row_group_bytes=self._row_group_bytes
            )
        writer.write(batch)
        self._rows[writer.path] = self._rows.get(writer.path, 0) + batch.num_rows

    def finish(self, run_id: str, task_id: str) -> None:
        """Close the task's files, so its staging is complete before the commit lists it."""
        for key in [k for k in self._writers if k[:2] == (run_id, task_id)]:
            self._writers.pop(key).close()

    def commit(self, run_id: str, task_ids: list[str], state: dict[str, Any] | None = None) -> CommitResult:
        manifest = self._load_manifest()
        if run_id in manifest["runs"]:
            return CommitResult(
                rows=manifest["runs"][run_id]["rows"],
                quarantined_rows=manifest["runs"][run_id].get("quarantined", 0),
                already_committed=True,
            )
        for task_id in task_ids:
            self.finish(run_id, task_id)
        if not manifest["exists"]:  # from now on readers go by the manifest, not by what the directory holds
            self._save(MANIFEST, manifest)
        plan = self._plan(run_id, task_ids)
        for move in plan:
            if self.fs.get_file_info(move["staged"]).type == pafs.FileType.File:
                final = f"{self.root}/{move['final']}"
                self.fs.create_dir(posixpath.dirname(final), recursive=True)
                self.fs.move(move["staged"], final)
        data = [m["final"] for m in plan if m["kind"] == "data"]
        rows = sum(m["rows"] for m in plan if m["kind"] == "data")
        quarantined = sum(m["rows"] for m in plan if m["kind"] == "quarantine")
        previous = list(manifest["files"])
        manifest["files"] = data if self.spec.write == "replace" else previous + data
        manifest["quarantine"] += [m["final"] for m in plan if m["kind"] == "quarantine"]
        manifest["runs"][run_id] = {"rows": rows, "quarantined": quarantined}
        manifest["state"].update(state or {})  # the incremental marks commit with the files that hold the rows
        self._save(MANIFEST, manifest)  # the commit point
        for old in set(previous) - set(manifest["files"]):
            self.fs.delete_file(f"{self.root}/{old}")
        self.fs.delete_dir(self._staging(run_id))
        return CommitResult(rows=rows, quarantined_rows=quarantined)

    def _plan(self, run_id: str, task_ids: list[str]) -> list[dict[str, Any]]:
        """Staged file -> final name, with row counts; written once, reused by a commit that resumes."""
        path = f"{self._staging(run_id)}/_commit.json"
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            with self.fs.open_input_stream(path) as handle:
                return json.loads(handle.read())["plan"]
        plan = []
        for kind in ("data", "quarantine"):
            for task_id in task_ids:
                for number, base in enumerate(self._staged_dirs(run_id, kind, task_id)):
                    infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
                    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
                        relative = posixpath.relpath(info.path, base)
                        directory, name = posixpath.split(relative)
                        # Files staged under the old name are committed under the new one, apart from the rest.
                        name = f"{run_id}-{_safe(task_id)}-{'old-' if number else ''}{name}"
                        plan.append(
                            {
                                "kind": kind,
                                "staged": info.path,
                                "final": posixpath.join("_quarantine" if kind == "quarantine" else directory, name),
                                "rows": self._rows.get(info.path) or _count_rows(self.fs, info.path),
                            }
                        )
        self._save(posixpath.relpath(path, self.root), {"plan": plan})
        return plan

    def read_state(self, key: str) -> Any | None:
        return self._load_manifest()["state"].get(key)

    def committed(self, run_id: str) -> bool:
        return run_id in self._load_manifest()["runs"]

    def staged_rows(self, run_id: str, task_id: str) -> int | None:
        if self.fs.get_file_info(f"{self._staging(run_id)}/_commit.json").type == pafs.FileType.File:
            return None  # a commit began: its plan holds the counts, and some files may have moved already
        return sum(
            _count_rows(self.fs, i.path)
            for base in self._staged_dirs(run_id, "data", task_id)
            for i in self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            if i.type == pafs.FileType.File
        )

    def abort(self, run_id: str) -> None:
        for key in [k for k in self._writers if k[0] == run_id]:
            self._writers.pop(key).close(raise_errors=False)
        self.fs.delete_dir_contents(self._staging(run_id), missing_dir_ok=True)

    def _load_manifest(self) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(f"{self.root}/{MANIFEST}") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            return {"files": [], "quarantine": [], "runs": {}, "state": {}, "exists": False}
        runs = {k: (v if isinstance(v, dict) else {"rows": v}) for k, v in data.get("runs", {}).items()}
        return {
            "files": data["files"],
            "quarantine": data.get("quarantine", []),
            "runs": runs,
            "state": data.get("state", {}),
            "exists": True,
        }

    def _save(self, name: str, content: dict[str, Any]) -> None:
        """Write a small JSON file whole or not at all (the manifest, the commit plan)."""
        path = f"{self.root}/{name}"
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        body = json.dumps({k: v for k, v in content.items() if k != "exists"}, indent=1).encode()
        if isinstance(self.fs, pafs.LocalFileSystem):  # write aside, fsync, rename: old or new, never half
            tmp = f"{posixpath.dirname(path)}/.{posixpath.basename(path)}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            self.fs.move(tmp, path)
        else:
            with self.fs.open_output_stream(path, compression=None) as handle:
                handle.write(body)


def read_manifest(fs: pafs.FileSystem, directory: str) -> list[str] | None:
    """The committed files of a destination directory, or None when it has no manifest."""
    try:
        with fs.open_input_stream(f"{directory.rstrip('/')}/{MANIFEST}") as handle:
            return [f"{directory.rstrip('/')}/{name}" for name in json.loads(handle.read())["files"]]
    except (FileNotFoundError, IsADirectoryError):
        return None


_BRACKETS = str.maketrans({"[": "-", "]": None, ">": "-"})


def _safe(name: str) -> str:
    """A task id as a file name of ``[A-Za-z0-9_.=-]`` only, which no shell needs quoted: ``orders-0-lineitem``.

    Source and transform names are identifiers, so the dashes standing for ``[``, ``]>`` and ``>`` keep
    the task ids of a run apart.
    """
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name.translate(_BRACKETS))


def _legacy_safe(name: str) -> str:
    """The staging name of a task before ``_safe``, so a run staged by an older agent-etl resumes."""
    return name.replace("/", "_")


def _split(batch: pa.RecordBatch, columns: list[str]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """The batch's rows by hive partition directory (``region=eu/day=2024-01-01``), without the partition columns."""
    if not columns:
        yield "", batch
        return
    table = pa.Table.from_batches([batch])
    data = table.drop_columns(columns)
    for combo in table.select(columns).group_by(columns, use_threads=False).aggregate([]).to_pylist():
        mask = None
        for name, value in combo.items():
            test = (
                pc.is_null(table[name]) if value is None else pc.equal(table[name], pa.scalar(value, table[name].type))
            )
            mask = test if mask is None else pc.and_(mask, test)
        directory = "/".join(
            f"{name}={_NULL_PARTITION if value is None else quote(str(value), safe='')}"
            for name, value in combo.items()
        )
        for part in data.filter(mask).to_batches():
            yield directory, part


class _Writer:
    """One staged file. Parquet and CSV are encoded in a thread of the writer's own: pyarrow
    releases the GIL while encoding, so the task's thread parses the next batch meanwhile.
    JSON Lines, serialised in Python, stays in the task's thread.

    Parquet batches are gathered into row groups of up to ``row_group_bytes``: pyarrow makes
    one row group per write, and a CSV block of 4 MiB (about 30,000 rows) per row group made
    files 20 % larger and their readers slower. While a row group is encoded, up to as many
    bytes again wait in the queue: with two batches at most, the reader stalled for most of
    each row group and the run took longer than with no gathering at all."""

    def __init__(
        self, fs: pafs.FileSystem, path: str, fmt: str, first: pa.RecordBatch, *, row_group_bytes: int
    ) -> None:
        self.fmt, self.schema, self.path = fmt, first.schema, path
        self._stream = fs.open_output_stream(path, compression=None)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._group: list[pa.RecordBatch] = []
        self._group_bytes, self._row_group_bytes = 0, row_group_bytes
        if fmt == "parquet":
            self._out: Any = pq.ParquetWriter(
                self._stream,
                first.schema,
                use_dictionary=_dictionary_columns(first),
                **encryption.parquet_writer_options(),
            )
        elif fmt == "csv":
            self._out = pacsv.CSVWriter(self._stream, first.schema)
        if fmt != "jsonl":
            self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue()
            self._queued, self._max_queued = 0, max(row_group_bytes, _MIN_QUEUED_BYTES)
            self._room = threading.Condition()
            self._thread = threading.Thread(target=self._drain, name=f"encode {posixpath.basename(path)}", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not None:
            with self._room:
                self._queued -= batch.nbytes
                self._room.notify()
            if self._error is None:
                try:
                    self._encode(batch)
                except BaseException as exc:  # noqa: BLE001 - raised in the task's thread by the next write or close
                    self._error = exc
        if self._error is None:
            try:
                self._flush()
            except BaseException as exc:  # noqa: BLE001 - raised by close
                self._error = exc

    def _encode(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "csv":
            self._out.write(batch)
            return
        self._group.append(batch)
        self._group_bytes += batch.nbytes
        if self._group_bytes >= self._row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._group:
            rows = sum(b.num_rows for b in self._group)
            self._out.write_table(
                pa.Table.from_batches(self._group), row_group_size=max(rows, 1)
            )  # pyarrow refuses 0 for an empty table
            self._group, self._group_bytes = [], 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is not None:
            with self._room:
                self._room.wait_for(lambda: self._queued < self._max_queued)
                self._queued += batch.nbytes
            self._queue.put(batch)
        else:
            # pyarrow has no JSON writer; rows are serialised here, one batch at a time.
            self._stream.write(
                "".join(json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in batch.to_pylist()).encode()
            )

    def close(self, *, raise_errors: bool = True) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._out.close()
        self._stream.close()
        if self._error is not None and raise_errors:
            raise self._error


def _dictionary_columns(first: pa.RecordBatch) -> bool | list[str]:
    """The columns worth dictionary-encoding, judged on the file's first batch.

    Parquet tries a dictionary for every column and gives up only when it
    outgrows a page, after hashing every value: on lineitem that was a third
    of the encoding time, spent on keys, prices and comments that are nearly
    all distinct. A column whose first batch repeats values (under half of
    them distinct) keeps its dictionary. A small first batch tells too little,
    and nested columns have Parquet paths of their own: both keep the default.
    """
    if first.num_rows < _JUDGE_ROWS or any(pa.types.is_nested(f.type) for f in first.schema):
        return True
    return [f.name for f, column in zip(first.schema, first.columns, strict=True) if _repeats(column)]


def _repeats(column: pa.Array) -> bool:
    try:
        return pc.count_distinct(column, mode="all").as_py() * 2 < len(column)
    except pa.ArrowNotImplementedError:  # a type count_distinct cannot hash: leave it to Parquet
        return True


def _count_rows(fs: pafs.FileSystem, path: str) -> int:
    if path.endswith(".parquet"):
        with fs.open_input_file(path) as handle:
            return pq.ParquetFile(handle, **encryption.parquet_reader_options()).metadata.num_rows
    with fs.open_input_stream(path) as handle:
        if path.endswith(".csv"):  # quoted values may hold newlines, so count records, not lines
            return sum(batch.num_rows for batch in pacsv.open_csv(handle))
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
