"""Guessing a CSV file's encoding, delimiter, quote and header from its first 64 KiB.

Every guess is only a default: the spec's ``encoding``, ``delimiter``,
``quote`` and ``header`` override it. The dialect comes from the standard
library's ``csv.Sniffer``; encoding detection is a rule small enough to
state: a sample that decodes as UTF-8 is UTF-8; one that holds valid UTF-8
multi-byte sequences next to a few broken ones is UTF-8 with bad rows (they
are quarantined); one with high bytes and no valid UTF-8 sequence is cp1252
(or latin-1, which accepts every byte).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass

SAMPLE_BYTES = 64 * 1024
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


@dataclass(frozen=True)
class Dialect:
    encoding: str
    delimiter: str
    quote: str
    header: bool
    #: Quoted values hold line breaks. Off unless the sample shows one: with it
    #: on, an unclosed quote swallows the lines after it, and parsing is slower.
    multiline: bool


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf8"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf16"
    text = sample[: sample.rfind(b"\n") + 1] or sample  # never judge a character cut at the sample's end
    try:
        text.decode("utf-8")
        return "utf8"
    except UnicodeDecodeError:
        pass
    if _UTF8_MULTIBYTE.search(text):
        return "utf8"
    try:
        text.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin1"


def sniff(
    sample: bytes,
    *,
    encoding: str | None,
    delimiter: str | None,
    quote: str | None,
    header: bool | None,
    multiline: bool | None = None,
) -> Dialect:
    encoding = encoding or detect_encoding(sample)
    text = sample.decode("utf-8" if encoding == "utf8" else encoding, errors="replace")
    lines = text.splitlines(keepends=True)
    if len(sample) >= SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    head = "".join(lines[:200])
    guessed: type[csv.Dialect] | None = None
    if head.strip() and (delimiter is None or quote is None):
        try:
            guessed = csv.Sniffer().sniff(head, delimiters=",;\t|")
        except csv.Error:
            guessed = None
    delimiter = delimiter or (guessed.delimiter if guessed else ",")
    quote = quote or (guessed.quotechar if guessed and guessed.quotechar else '"')
    if header is None:
        header = _has_header(head, delimiter)
    return Dialect(
        encoding, delimiter, quote, header, _multiline(head, delimiter, quote) if multiline is None else multiline
    )


def _multiline(head: str, delimiter: str, quote: str) -> bool:
    if quote not in head:
        return False
    try:
        rows = list(csv.reader(io.StringIO(head), delimiter=delimiter, quotechar=quote))
    except csv.Error:
        return False
    # A line break inside a row of the right width; an unclosed quote instead swallows
    # the rest of the sample into one short row, which must not switch the mode on.
    width = len(rows[0]) if rows else 0
    return any(len(row) == width and any("\n" in cell or "\r" in cell for cell in row) for row in rows[1:])


def _has_header(head: str, delimiter: str) -> bool:
    """No header only when the first row looks like data: a numeric cell, and csv.Sniffer agrees.

    Sniffer.has_header alone says "no header" for many all-text files, and
    losing a real header costs more than reading a data row as names.
    """
    first = head.splitlines()[0] if head.strip() else ""
    if not any(_numeric(cell) for cell in first.split(delimiter)):
        return True
    if len(head.splitlines()) < 2:
        return False
    try:
        return csv.Sniffer().has_header(head)
    except csv.Error:
        return True


def _numeric(cell: str) -> bool:
    try:
        float(cell.strip().strip('"'))
        return True
    except ValueError:
        return False
