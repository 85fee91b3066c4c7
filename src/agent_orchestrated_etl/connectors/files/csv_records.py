"""The careful path of the CSV reader: physical lines, and records parsed one at a time.

The standard library's csv parses each record in strict mode (RFC 4180: a
closing quote must be followed by the delimiter or the line end), so every
record knows the physical lines it spans. A record that fails takes only its
first line to quarantine; the lines after it are read again, so a stray quote
costs one line, never the lines it would have swallowed.
"""

from __future__ import annotations

import codecs
import csv
import zlib
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import BinaryIO

import pyarrow as pa

# The csv module refuses fields over 128 KiB by default, a process-wide limit; a 50 MB value is one value here.
csv.field_size_limit(2**31 - 1)

Record = tuple[int, int, list[str] | None, str]  # first line, last line, fields (None: malformed), text


class Broken(Exception):
    """The stream broke off (a truncated or corrupt compressed file) before ``line``."""

    def __init__(self, line: int, cause: Exception) -> None:
        super().__init__(f"the file breaks off at line {line}: {cause}")
        self.line = line


def physical_lines(stream: BinaryIO, encoding: str) -> Iterator[tuple[int, str]]:
    """The stream's lines, numbered from 1, each with its line end; invalid UTF-8 bytes are kept as surrogate escapes."""
    decoder = codecs.getincrementaldecoder("utf-8-sig" if encoding == "utf8" else encoding)(errors="surrogateescape")
    number, pending = 0, ""
    read = getattr(stream, "read1", stream.read)  # gzip's read() drops what it decompressed when the file breaks off
    try:
        while chunk := read(1 << 20):
            pieces = decoder.decode(chunk).split("\n")
            if len(pieces) == 1:
                pending += pieces[0]
                continue
            pieces[0] = pending + pieces[0]
            pending = pieces.pop()
            for piece in pieces:
                number += 1
                yield number, piece + "\n"
        pending += decoder.decode(b"", final=True)
    except (OSError, EOFError, zlib.error, pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise Broken(number + 1, exc) from exc
    if pending:
        yield number + 1, pending


def records(lines: Iterator[tuple[int, str]], delimiter: str, quote: str, *, multiline: bool) -> Iterator[Record]:
    """The records of ``lines``; blank lines are skipped, as pyarrow skips them.

    Without ``multiline`` a record is one line. With it, a record that runs over
    several lines, whose inner lines each read as a record as wide as the one
    before them, is a stray quote that swallowed them: malformed.
    """
    pending: deque[tuple[int, str]] = deque()
    width: int | None = None
    while True:
        if not pending:
            following = next(lines, None)
            if following is None:
                return
            pending.append(following)
        number, text = pending[0]
        if not text.rstrip("\r\n"):
            pending.popleft()
            continue
        used = 0

        def feed() -> Iterator[str]:
            nonlocal used
            while multiline or used == 0:
                if used == len(pending):
                    following = next(lines, None)
                    if following is None:
                        return
                    pending.append(following)
                used += 1
                yield pending[used - 1][1]

        try:
            fields: list[str] | None = next(csv.reader(feed(), delimiter=delimiter, quotechar=quote, strict=True))
        except csv.Error:
            fields = None
        span = list(islice(pending, used))
        swallowed = (
            fields is not None and used > 2 and width is not None and _all_records(span[1:-1], delimiter, quote, width)
        )
        if fields is None or swallowed or used == 1:
            pending.popleft()  # a malformed record gives up its first line only: the others are read again
            yield number, span[-1][0] if swallowed else number, None if swallowed else fields, text
        else:
            for _ in range(used):
                pending.popleft()
            yield number, span[-1][0], fields, "".join(t for _, t in span)
        if fields is not None and width is None:
            width = len(fields)


def _all_records(inner: list[tuple[int, str]], delimiter: str, quote: str, width: int) -> bool:
    try:
        return all(
            len(next(csv.reader([text], delimiter=delimiter, quotechar=quote, strict=True), [])) == width
            for _, text in inner
        )
    except csv.Error:
        return False
