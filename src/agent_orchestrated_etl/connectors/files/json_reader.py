"""JSON Lines and JSON arrays, nested data included (nested.py shapes it).

JSON Lines go through pyarrow's reader; at the first line it cannot take
(a syntax error, a type conflict, a huge line) the file continues line by
line in Python from where pyarrow stopped, quarantining bad lines with
``file:line``. JSON arrays are streamed with ijson, never loaded whole.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from agent_orchestrated_etl.connectors.base import Position
from agent_orchestrated_etl.connectors.files.reader import FileReader
from agent_orchestrated_etl.connectors.nested import RecordsToArrow, flatten, too_deep
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError

_BLOCK_BYTES = 4 << 20


class _RecordsReader(FileReader):
    """Python records of a JSON file into Arrow batches, rejected rows keeping their line or record number."""

    def _convert(self, converter: RecordsToArrow, records: list[Any], lines: list[int]) -> Iterator[pa.RecordBatch]:
        if not records:
            return
        batch, rejected = converter.convert(records)
        self.rejected += [(row, reason, Position(origin=self.shown, line=lines[i])) for row, reason, i in rejected]
        if batch is not None:
            yield batch


class JSONLinesReader(_RecordsReader):
    def read(self) -> Iterator[pa.RecordBatch]:
        done = 0
        schema: pa.Schema | None = None
        if self.spec.nested.shape != "unnest" and self.until_line is None:
            try:
                with self._open() as stream:
                    for batch in pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES)):
                        if too_deep(pa.struct(list(batch.schema)), self.spec.nested.max_depth):
                            break  # the subtrees past max_depth become JSON text, record by record
                        schema = batch.schema
                        yield (
                            flatten(batch, self.spec.nested.separator) if self.spec.nested.shape == "flatten" else batch
                        )
                        done += batch.num_rows
                    else:
                        return
            except (pa.ArrowInvalid, OSError):
                pass  # a conflict, a syntax error, a huge line or a break: go on line by line from record `done`
        yield from self._jsonl_slowly(done, schema)

    def _jsonl_slowly(self, skip: int, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
        converter = RecordsToArrow(self.spec.nested)
        converter.schema = schema
        records: list[Any] = []
        lines: list[int] = []
        seen = 0
        with self._open(to_the_break=True) as stream:
            for number, raw in _lines(stream, self.shown, self.until_line):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except ValueError as exc:
                    self.rejected.append(
                        (
                            {"line": raw[:10_000].decode("utf-8", "replace")},
                            f"malformed JSON: {exc}",
                            Position(origin=self.shown, line=number),
                        )
                    )
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


class JSONArrayReader(_RecordsReader):
    def read(self) -> Iterator[pa.RecordBatch]:
        import ijson

        prefix = f"{self.spec.records}.item" if self.spec.records else "item"
        converter = RecordsToArrow(self.spec.nested)
        records: list[Any] = []
        count = 0
        with self._open(to_the_break=True) as stream:
            try:
                for record in ijson.items(stream, prefix, use_float=True):
                    records.append(record)
                    count += 1
                    if len(records) >= self.batch_rows:
                        yield from self._convert(converter, records, list(range(count - len(records) + 1, count + 1)))
                        records = []
            except (
                ijson.JSONError,
                OSError,
                EOFError,
                zlib.error,
            ) as exc:  # malformed, or a compressed file that breaks off
                self.rejected.append(
                    (
                        {"file": self.shown},
                        f"malformed JSON after record {count}: {exc}; the rest of the file was not read",
                        Position(origin=self.shown, row=count + 1),
                    )
                )
        yield from self._convert(converter, records, list(range(count - len(records) + 1, count + 1)))
        if count == 0 and not self.rejected and (absent := self._not_records()) is not None:
            # ijson finds no items under a path that is not there; read as "no rows", replace would empty the target.
            raise ConfigurationError(
                f"records: {absent}",
                where=self.shown,
                hint="set `records:` to the dotted path of the record array in the document",
            )

    def _not_records(self) -> str | None:
        """Why ``records:`` (or the top level, without it) is not an array in the file; None when it is one."""
        import ijson

        path = self.spec.records or ""
        parts = path.split(".") if path else []
        along = [".".join(parts[:i]) for i in range(len(parts) + 1)]
        found: dict[str, str] = {}  # what each prefix along the path is: start_map, start_array, string, ...
        keys: dict[str, list[str]] = {}  # the first keys of each object along it, for the message
        counts: dict[str, int] = {}
        with self._open() as stream:
            for prefix, event, value in ijson.parse(stream, use_float=True):
                if prefix not in along:
                    continue
                if event == "map_key":
                    counts[prefix] = counts.get(prefix, 0) + 1
                    if counts[prefix] <= 20:
                        keys.setdefault(prefix, []).append(value)
                elif event in ("end_map", "end_array"):
                    if prefix == path:
                        break
                else:
                    found.setdefault(prefix, event)
                    if prefix == path and event != "start_map":
                        break
        if found.get(path) == "start_array":
            return None

        def _listed(prefix: str) -> str:
            more = counts.get(prefix, 0) - 20
            return ", ".join(keys.get(prefix, [])) + (f" and {more} more" if more > 0 else "") or "none"

        for i, part in enumerate(parts):
            at, parent = along[i] or "the top level", found.get(along[i])
            if parent != "start_map":
                return f"{path} is not in the document: {at} is {_KINDS.get(parent or '', 'absent')}, which has no key {part!r}"
            if along[i + 1] not in found:
                return f"{path} is not in the document: {at} has no key {part!r} (its keys: {_listed(along[i])})"
        held = _KINDS.get(found.get(path, ""), "nothing")
        listed = f" (its keys: {_listed(path)})" if counts.get(path) else ""
        return f"{path or 'the top level'} holds {held}{listed}, not an array of records"


#: ijson's event for a value, as the value's kind in a message.
_KINDS = {
    "start_map": "an object",
    "start_array": "an array",
    "string": "a string",
    "number": "a number",
    "integer": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _lines(stream: Any, shown: str, until: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a binary pyarrow stream before line ``until``, however long (a 50 MB line is one line)."""
    pending, number = b"", 0
    while until is None or number + 1 < until:
        try:
            chunk = stream.read1(1 << 20)  # gzip's read() drops what it decompressed when the file breaks off
        except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt compressed file
            raise DataError(
                f"the file breaks off at line {number + 1}: {exc}; the rows before it were read",
                where=f"{shown}:{number + 1}",
                hint="fetch the file again, or set retry.on_bad_data: quarantine to load the rows before the break and set the rest aside",
            ) from exc
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            number += 1
            if until is not None and number >= until:
                return
            yield number, line
    if pending and (until is None or number + 1 < until):
        yield number + 1, pending
