"""Framing checks of binary-format values, before psycopg's C loaders read them.

psycopg's C binary loaders trust lengths found inside the data (fixed-size
types, numeric, arrays, records, ranges, multiranges); on truncated or
forged bytes they would read past the value. `check_binary` checks the
framing first, the way the server's ``*_recv`` functions do
(``src/backend/utils/adt/``).
"""

from __future__ import annotations

import struct

from psycopg import postgres
from psycopg.abc import Buffer
from psycopg.types.multirange import MultirangeInfo
from psycopg.types.range import RangeInfo

__all__ = ["FIXED_BINARY_SIZE", "FRAMED_OIDS", "check_binary"]

_TYPES = postgres.types


def _oid(name: str) -> int:
    return _TYPES[name].oid


#: Binary values of these types have a fixed size in bytes (their typlen in
#: src/include/catalog/pg_type.dat); psycopg's C loaders read that many bytes
#: without looking at the length, so every value is checked first.
FIXED_BINARY_SIZE: dict[int, int] = {
    _oid(name): size
    for name, size in (
        ("bool", 1), ("int2", 2), ("int4", 4), ("int8", 8), ("oid", 4),
        ("float4", 4), ("float8", 8), ("date", 4), ("time", 8), ("timetz", 12),
        ("timestamp", 8), ("timestamptz", 8), ("interval", 16), ("uuid", 16),
    )
}  # fmt: skip

_NUMERIC_OID = _oid("numeric")
_RECORD_OID = _oid("record")
_ARRAY_ELEMENTS = {t.array_oid: t.oid for t in _TYPES if t.array_oid}
_RANGE_SUBTYPES = {t.oid: t.subtype_oid for t in _TYPES if isinstance(t, RangeInfo)}
_MULTIRANGE_RANGES = {t.oid: t.range_oid for t in _TYPES if isinstance(t, MultirangeInfo)}
#: Binary values whose psycopg loaders trust lengths inside the data.
FRAMED_OIDS = frozenset(
    {_NUMERIC_OID, _RECORD_OID, *_ARRAY_ELEMENTS, *_RANGE_SUBTYPES, *_MULTIRANGE_RANGES}
)

_MAX_DEPTH = 16  # arrays of records of ranges ... nested deeper than this are refused
_MAX_DIMS = 6  # MAXDIM in src/include/utils/array.h
_I32 = struct.Struct("!i")
_ARRAY_HEAD = struct.Struct("!iiI")
_OID = struct.Struct("!I")
_NUMERIC_HEAD = struct.Struct("!HhHH")


def check_binary(oid: int, data: Buffer, depth: int = 0) -> str | None:
    """Check the framing of a binary value before psycopg's loaders read it.

    Covers the types whose (C) loaders trust lengths found in the data:
    fixed-size types, numeric, arrays, records, ranges and multiranges, as
    written by ``numeric_send``, ``array_send``, ``record_send``,
    ``range_send`` and ``multirange_send`` (``src/backend/utils/adt/``).

    Args:
        oid: the value's type OID.
        data: the value's bytes (binary format).
        depth: how deep in nested values this one is (arrays of records ...).

    Returns:
        None if the value is well framed, else the reason it is not.
    """
    n = len(data)
    size = FIXED_BINARY_SIZE.get(oid)
    if size is not None:
        return None if n == size else f"expected {size} bytes, got {n}"
    if depth > _MAX_DEPTH:
        return "values nested too deep"
    if oid in _ARRAY_ELEMENTS:  # ndim, flags, element OID, (size, lower bound) per dim, items
        if n < 12:
            return f"array header needs 12 bytes, got {n}"
        ndim, flags, elem_oid = _ARRAY_HEAD.unpack_from(data)
        pos = 12 + 8 * ndim
        if not 0 <= ndim <= _MAX_DIMS or flags not in (0, 1) or n < pos:
            return f"bad array header (ndim {ndim}, flags {flags}, {n} bytes)"
        if elem_oid != _ARRAY_ELEMENTS[oid]:  # as array_recv checks; psycopg's C
            # loader keeps the element loader of the first array it reads
            return f"element type {elem_oid} in an array of {_TYPES[_ARRAY_ELEMENTS[oid]].name}"
        count = 1 if ndim else 0
        for d in range(ndim):
            (dim,) = _I32.unpack_from(data, 12 + 8 * d)
            if dim < 0:
                return f"negative array dimension {dim}"
            count *= dim
        if count > (n - pos) // 4:
            return f"array of {count} elements in {n} bytes"
        return _trailing(data, *_check_items(data, pos, elem_oid, count, depth))
    if oid == _NUMERIC_OID:
        ndigits = _NUMERIC_HEAD.unpack_from(data)[0] if n >= 8 else -1
        return None if ndigits >= 0 and n == 8 + 2 * ndigits else f"bad numeric of {n} bytes"
    if oid in _RANGE_SUBTYPES:
        flags = data[0] if n else 0x01
        if flags & 0x01:  # RANGE_EMPTY: nothing follows
            return None if n == 1 else "bad empty range"
        bounds = (not flags & 0x08) + (not flags & 0x10)  # RANGE_LB_INF, RANGE_UB_INF
        return _trailing(data, *_check_items(data, 1, _RANGE_SUBTYPES[oid], bounds, depth, False))
    if oid != _RECORD_OID and oid not in _MULTIRANGE_RANGES:
        return None
    if n < 4:
        return f"header needs 4 bytes, got {n}"
    (count,) = _I32.unpack_from(data)
    if oid in _MULTIRANGE_RANGES:  # count, then length-prefixed ranges
        if not 0 <= count <= (n - 4) // 5:
            return f"{count} ranges in {n} bytes"
        return _trailing(data, *_check_items(data, 4, _MULTIRANGE_RANGES[oid], count, depth, False))
    # record: count, then (type OID, length-prefixed value) per field
    if not 0 <= count <= (n - 4) // 8:
        return f"{count} fields in {n} bytes"
    pos = 4
    for i in range(count):
        if pos + 4 > n:
            return f"field {i} of {count} missing"
        (field_oid,) = _OID.unpack_from(data, pos)
        pos, reason = _check_items(data, pos + 4, field_oid, 1, depth)
        if reason:
            return f"field {i}: {reason}"
    return _trailing(data, pos, None)


def _check_items(
    data: Buffer, pos: int, oid: int, count: int, depth: int, nullable: bool = True
) -> tuple[int, str | None]:
    """Check ``count`` length-prefixed values of type ``oid`` from byte offset ``pos``.

    Length -1 (NULL) is allowed in arrays and records only (``nullable``).

    Returns:
        (offset after the last value, None) or (offset reached, reason).
    """
    n = len(data)
    size = FIXED_BINARY_SIZE.get(oid)
    if size is not None and n == pos + count * (4 + size):
        # No NULLs: every length word is ``size``; compare them byte-wise, in C.
        w, step = _I32.pack(size), 4 + size
        if (
            data[pos::step] == w[:1] * count
            and data[pos + 1 :: step] == w[1:2] * count
            and data[pos + 2 :: step] == w[2:3] * count
            and data[pos + 3 :: step] == w[3:] * count
        ):
            return n, None
    for i in range(count):
        if pos + 4 > n:
            return pos, f"item {i} of {count} missing"
        (length,) = _I32.unpack_from(data, pos)
        pos += 4
        if length == -1 and nullable:
            continue
        if length < 0 or pos + length > n:
            return pos, f"item {i} claims {length} bytes, {n - pos} left"
        if size is not None:
            if length != size:
                return pos, f"item {i} has {length} bytes, expected {size}"
        elif reason := check_binary(oid, memoryview(data)[pos : pos + length], depth + 1):
            return pos, f"item {i}: {reason}"
        pos += length
    return pos, None


def _trailing(data: Buffer, pos: int, reason: str | None) -> str | None:
    if reason is None and pos != len(data):
        return f"{len(data) - pos} trailing bytes"
    return reason
