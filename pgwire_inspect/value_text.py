"""Decoded column values as text (PostgreSQL's output format) and as JSON."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from psycopg.types.multirange import Multirange
from psycopg.types.range import Range

__all__ = ["value_to_json", "value_to_text"]


def value_to_text(value: Any) -> str:
    """A short human text of a decoded value, for tables.

    Follows PostgreSQL's output where it is unambiguous: arrays as
    ``{1,2,NULL}`` with PostgreSQL's quoting (``array_out``), records as
    ``(1,abc)``, ranges as ``[1,5)``, bytes as ``\\x0102`` (``bytea_output =
    hex``), NaN/infinite floats as ``NaN``/``Infinity``/``-Infinity``.
    Decimal in positional notation with its scale (``12.3400``, as numeric_out).
    Dates and times are ISO 8601 (a space between date and time); UUID, IP
    addresses and intervals (``timedelta``) their ``str``; dicts (json)
    JSON; :class:`~pgwire_inspect.types.UnknownBinary` its hex.

    Args:
        value: a value returned by `~pgwire_inspect.types.ValueDecoder.decode` (None for NULL).

    Returns:
        The text, not truncated; ``"NULL"`` for None.
    """
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "{" + ",".join(_array_item(v) for v in value) + "}"
    if isinstance(value, tuple):
        fields = ("" if v is None else _quote(value_to_text(v), "(),", True) for v in value)
        return "(" + ",".join(fields) + ")"
    if isinstance(value, Multirange):
        return "{" + ",".join(value_to_text(r) for r in value) + "}"
    if isinstance(value, Range):
        if value.isempty:
            return "empty"
        lower = "" if value.lower is None else _quote(value_to_text(value.lower), "()[],", True)
        upper = "" if value.upper is None else _quote(value_to_text(value.upper), "()[],", True)
        return f"{value.bounds[0]}{lower},{upper}{value.bounds[1]}"
    if isinstance(value, dict):
        return json.dumps(value_to_json(value), ensure_ascii=False)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def value_to_json(value: Any) -> Any:
    """A JSON-safe form of a decoded value (for ``json.dumps(..., allow_nan=False)``).

    None, bool, int, str and finite floats stay; lists and tuples become
    lists and dicts dicts, recursively; datetime, date and time become ISO
    8601 strings (``T`` separator); NaN/infinite floats, Decimal, timedelta,
    UUID, IP addresses, ranges, bytes and :class:`UnknownBinary` become the
    text of :func:`value_to_text`.

    Args:
        value: a value returned by :meth:`~pgwire_inspect.types.ValueDecoder.decode`.

    Returns:
        A value made of None, bool, int, float, str, list and dict only.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _float_text(value)
    if isinstance(value, dict):
        return {str(k): value_to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [value_to_json(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value_to_text(value)


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _array_item(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return value_to_text(value)
    text = value_to_text(value)
    if text.upper() == "NULL":
        return f'"{text}"'
    return _quote(text, '{},"\\', False)


def _quote(text: str, specials: str, double: bool) -> str:
    """Quote ``text`` as PostgreSQL's array_out (``double=False``) or record_out/range_out do."""
    if text and not any(c in specials or c in '"\\' or c.isspace() for c in text):
        return text
    if double:
        return '"' + text.replace('"', '""').replace("\\", "\\\\") + '"'
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
