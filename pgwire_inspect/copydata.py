"""COPY data as rows, and the names of replication CopyData messages.

COPY text format: one row per line, columns separated by a tab, ``\\N`` for
NULL, backslash escapes (PostgreSQL docs, COPY, "Text Format"). CSV format:
RFC 4180 with PostgreSQL's defaults (COPY, "CSV Format"). Binary COPY is
left as bytes. Streaming replication CopyData payloads start with a byte
that names them (PostgreSQL docs, "Streaming Replication Protocol").
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

__all__ = ["REPLICATION_MESSAGES", "copy_rows", "is_csv_copy", "replication_message"]

#: First byte of a CopyData payload on a replication connection → its name.
REPLICATION_MESSAGES: dict[int, str] = {
    ord("w"): "XLogData",
    ord("k"): "Primary keepalive message",
    ord("r"): "Standby status update",
    ord("h"): "Hot standby feedback message",
    ord("p"): "New archive",
    ord("n"): "Progress report",
    ord("d"): "Archive or manifest data",
}

_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)")
_CSV_OPTION = re.compile(r"\bCSV\b", re.IGNORECASE)


def replication_message(payload: bytes) -> str | None:
    """The name of a replication CopyData payload by its first byte, or None."""
    return REPLICATION_MESSAGES.get(payload[0]) if payload else None


def is_csv_copy(sql: str | None) -> bool:
    """Whether a COPY statement asks for CSV format (``CSV`` or ``FORMAT csv``)."""
    return bool(sql and _CSV_OPTION.search(sql))


def _unescape(field: str) -> str:
    def sub(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] == "x" and len(code) > 1:
            return chr(int(code[1:], 16))
        if code[0] in "01234567":
            return chr(int(code, 8))
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(sub, field) if "\\" in field else field


def copy_rows(chunks: Iterable[bytes], *, csv_format: bool, encoding: str = "utf-8",
              limit: int | None = None) -> list[list[str | None]]:
    """Split COPY text or CSV data into rows of column values.

    Args:
        chunks: the CopyData payloads in order (rows may span chunks).
        csv_format: CSV instead of the text format.
        encoding: the session's client encoding, as a Python codec name.
        limit: stop after this many rows.

    Returns:
        The rows; None stands for NULL (``\\N`` in text format, an unquoted
        empty field in CSV).
    """
    text = b"".join(chunks).decode(encoding, "backslashreplace")
    rows: list[list[str | None]] = []
    if csv_format:
        for record in csv.reader(io.StringIO(text)):
            rows.append([value if value != "" else None for value in record])
            if limit is not None and len(rows) >= limit:
                break
        return rows
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if line == "\\.":
            break
        rows.append([None if f == "\\N" else _unescape(f) for f in line.split("\t")])
        if limit is not None and len(rows) >= limit:
            break
    return rows
