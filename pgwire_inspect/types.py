"""Type OID to name, and column values to Python, on top of psycopg 3.

PostgreSQL sends every column value of a ``DataRow`` (and every ``Bind``
parameter) as bytes in text (format code 0) or binary (format code 1)
format; the type OID and typmod come from ``RowDescription`` (or
``ParameterDescription`` / ``Parse``). This module turns those into type
names (:func:`type_name`) and Python values (:class:`ValueDecoder`) with
psycopg's type registry (``psycopg.postgres.types``) and loaders
(``psycopg.adapt.Transformer``); it only adds what a capture needs and a
live connection does not: session state taken from ``ParameterStatus``
messages instead of a connection, and checks that keep psycopg's C loaders
from reading past the end of malformed binary values.

Spec: PostgreSQL docs, "Frontend/Backend Protocol", sections "Message Data
Types" and "Message Formats" (RowDescription, DataRow, Bind); the binary
formats are the ``*_send`` functions of ``src/backend/utils/adt/``.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone, tzinfo
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import abc, postgres, pq
from psycopg._encodings import pg2pyenc
from psycopg.abc import Buffer
from psycopg.adapt import AdaptersMap, Loader, Transformer
from psycopg.types import datetime as pg_datetime
from psycopg.types.multirange import Multirange, MultirangeInfo
from psycopg.types.range import Range, RangeInfo

from pgwire_inspect.errors import ValueDecodeError

__all__ = ["UnknownBinary", "ValueDecoder", "type_name", "value_to_json", "value_to_text"]

_TEXT = pq.Format.TEXT
_BINARY = pq.Format.BINARY
_FORMAT_NAMES: dict[int, str] = {0: "text", 1: "binary"}

_TYPES = postgres.types


def _oid(name: str) -> int:
    return _TYPES[name].oid


def _with_arrays(names: tuple[str, ...]) -> frozenset[int]:
    return frozenset(o for n in names for o in (_TYPES[n].oid, _TYPES[n].array_oid) if o)


# Binary values of these types have a fixed size in bytes (their typlen in
# src/include/catalog/pg_type.dat); psycopg's C loaders read that many bytes
# without looking at the length, so every value is checked first.
_FIXED_BINARY_SIZE: dict[int, int] = {
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
# Binary values whose psycopg loaders trust lengths inside the data.
_FRAMED_OIDS = frozenset(
    {_NUMERIC_OID, _RECORD_OID, *_ARRAY_ELEMENTS, *_RANGE_SUBTYPES, *_MULTIRANGE_RANGES}
)

# Date/time types (and arrays, ranges of them) whose text form depends on
# DateStyle / IntervalStyle or may lie outside Python's datetime range: when
# psycopg cannot load such a text value it is kept as the raw str.
_RAW_TEXT_OIDS = _with_arrays((
    "date", "timestamp", "timestamptz", "interval", "daterange", "tsrange",
    "tstzrange", "datemultirange", "tsmultirange", "tstzmultirange",
))  # fmt: skip

# Binary formats that change when integer_datetimes is off (float8 seconds).
_FLOAT_DATETIME_OIDS = _with_arrays(("time", "timetz", "timestamp", "timestamptz", "interval"))

# "infinity" / "-infinity" in binary format: DATEVAL_NOEND/NOBEGIN and
# DT_NOEND/DT_NOBEGIN of src/include/datatype/timestamp.h.
_INF4 = {struct.pack("!i", 2**31 - 1): "infinity", struct.pack("!i", -(2**31)): "-infinity"}
_INF8 = {struct.pack("!q", 2**63 - 1): "infinity", struct.pack("!q", -(2**63)): "-infinity"}
_INFINITIES: dict[int, dict[bytes, str]] = {
    _oid("date"): _INF4,
    _oid("timestamp"): _INF8,
    _oid("timestamptz"): _INF8,
    _oid("interval"): {k + j * 2: v for (k, v), j in zip(_INF8.items(), _INF4, strict=True)},
}

# Types whose binary form is text in the client encoding.
_BINARY_TEXT_NAMES = ("text", "varchar", "bpchar", "name", '"char"', "json", "jsonb")

# ParameterStatus names the decoder follows, by lower-case name.
_SESSION_PARAMETERS = {
    n.lower(): n
    for n in ("client_encoding", "TimeZone", "DateStyle", "IntervalStyle", "integer_datetimes")
}

_MAX_DEPTH = 16  # arrays of records of ranges ... nested deeper than this are refused
_MAX_DIMS = 6  # MAXDIM in src/include/utils/array.h
_I32 = struct.Struct("!i")
_ARRAY_HEAD = struct.Struct("!iiI")
_OID = struct.Struct("!I")
_NUMERIC_HEAD = struct.Struct("!HhHH")


def type_name(oid: int, typmod: int = -1, *, user_types: Mapping[int, str] | None = None) -> str:
    """Name a PostgreSQL type the way psycopg displays it.

    Args:
        oid: the type OID (RowDescription field "data type OID").
        typmod: the type modifier (RowDescription "type modifier"), -1 for none.
        user_types: names of types the builtin registry does not know, by OID
            (from :class:`pgwire_inspect.catalog.Catalog.types`); they take
            precedence over the registry.

    Returns:
        e.g. ``"int4"``, ``"varchar(40)"``, ``"numeric(12,4)"``, ``"timestamptz(3)"``,
        ``"int4[]"``; a type from ``user_types`` by that name; ``"oid 16401"``
        for a type nobody knows. Names are psycopg's (``TypeInfo.get_type_display``),
        which are the ``pg_type.typname`` spellings, not ``format_type()``'s SQL
        standard ones (``varchar(40)``, not ``character varying(40)``).
    """
    if user_types and oid in user_types:
        return user_types[oid]
    info = _TYPES.get(oid)
    if info is None:
        return f"oid {oid}"
    try:
        return info.get_type_display(oid, typmod if typmod >= 0 else None)
    except (ValueError, OverflowError):
        return info.get_type_display(oid)


@dataclass(frozen=True)
class UnknownBinary:
    """A binary-format value of a type no loader knows (enum, domain, composite, extension).

    Attributes:
        oid: the type OID the value was sent with.
        data: the value's bytes as they were on the wire.
    """

    oid: int
    data: bytes

    def __str__(self) -> str:
        return "\\x" + self.data.hex()


def _context(adapters: AdaptersMap, status: Mapping[str, str] | None = None) -> Any:
    """A psycopg ``AdaptContext``; with ``status``, its connection is a stand-in that
    answers ``pgconn.parameter_status()`` from ParameterStatus values (UTF-8 text)."""
    connection = None
    if status is not None:
        params = {k.encode(): v.encode() for k, v in status.items()}
        pgconn = SimpleNamespace(parameter_status=params.get, _encoding="utf-8")
        connection = SimpleNamespace(pgconn=pgconn)
    return SimpleNamespace(adapters=adapters, connection=connection)


def _bound_loader(base: type[Loader], context: Any) -> type[Loader]:
    """Subclass a psycopg Python loader so that it sees ``context``'s session state."""

    def __init__(self: Loader, oid: int, _context: Any = None) -> None:
        base.__init__(self, oid, context)

    return type(f"Session{base.__name__}", (base,), {"__init__": __init__})


def _tzinfo(name: str) -> tzinfo:
    """The zone named by a TimeZone ParameterStatus, or UTC when Python does not know it
    (psycopg falls back the same way)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _zoned_loader(adapters: AdaptersMap, fmt: pq.Format, zone: tzinfo) -> type[Loader]:
    """A timestamptz loader giving values in ``zone``, as a psycopg connection does.

    psycopg's C loader (about 0.4 µs a value) reads the offset PostgreSQL
    sent and returns UTC; ``astimezone`` then gives the same instant in the
    session's zone. psycopg's Python loader for a zone is several times slower.
    """
    found = adapters.get_loader(_oid("timestamptz"), fmt)
    assert found is not None
    inner_class: type[abc.Loader] = found

    class ZonedTimestamptzLoader(Loader):
        format = fmt

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._inner = inner_class(oid, context).load

        def load(self, data: Buffer) -> Any:
            value = self._inner(data)
            return value.astimezone(zone) if value.__class__ is datetime else value

    return ZonedTimestamptzLoader


def _transcoder(pg_encoding: str) -> Callable[[Buffer], bytes] | None:
    """A function re-encoding bytes in ``pg_encoding`` as UTF-8, or None for UTF-8 itself.

    SQL_ASCII means the server does not convert: bytes are read as UTF-8
    when they are, other non-ASCII bytes are shown as ``\\xNN`` escapes.
    An encoding without a Python codec fails (LookupError) on non-ASCII bytes.
    """
    try:
        pyenc = pg2pyenc(pg_encoding.encode())
    except psycopg.NotSupportedError:
        pyenc = ""
    if pyenc == "utf-8":
        return None

    def transcode(data: Buffer) -> bytes:
        b = bytes(data)
        if b.isascii():
            return b
        if pyenc == "ascii":
            return b.decode("utf-8", "backslashreplace").encode()
        if not pyenc:
            raise LookupError(f"client_encoding {pg_encoding} has no Python codec")
        return b.decode(pyenc).encode()

    return transcode


def _transcoding_loader(base: type[abc.Loader], to_utf8: Callable[[Buffer], bytes]) -> type[Loader]:
    """Wrap a loader that reads UTF-8 so that it reads the session's client encoding."""

    class TranscodingLoader(Loader):
        format = base.format

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._inner = base(oid, context).load

        def load(self, data: Buffer) -> Any:
            return self._inner(to_utf8(data))

    return TranscodingLoader


@functools.lru_cache(maxsize=32)
def _shared_adapters(status: tuple[tuple[str, str], ...]) -> AdaptersMap:
    """`_session_adapters` for one session state, shared by the connections that have it
    (an adapters map and its loaders take tens of KiB)."""
    params = dict(status)
    return _session_adapters(params, _transcoder(params["client_encoding"]))


def _session_adapters(
    status: Mapping[str, str], to_utf8: Callable[[Buffer], bytes] | None
) -> AdaptersMap:
    """psycopg's default adapters, with the loaders that depend on the session replaced.

    psycopg's C loaders only take session state from a real libpq connection;
    the loaders that need it (TimeZone, DateStyle, IntervalStyle, encoding)
    are replaced by psycopg's Python loaders bound to a stand-in connection.
    """
    tz = status.get("TimeZone")
    datestyle = status.get("DateStyle", "ISO")
    intervalstyle = status.get("IntervalStyle", "postgres")
    context = _context(postgres.adapters, status)
    overrides: list[tuple[int, type[Loader]]] = []
    zoned: list[type[Loader]] = []
    if tz and tz != "UTC":
        zoned = [_zoned_loader(postgres.adapters, fmt, _tzinfo(tz)) for fmt in (_TEXT, _BINARY)]
    if not datestyle.startswith("ISO"):
        overrides.append((_oid("date"), pg_datetime.DateLoader))
        overrides.append((_oid("timestamp"), pg_datetime.TimestampLoader))
        overrides.append((_oid("timestamptz"), pg_datetime.TimestamptzLoader))
    if intervalstyle != "postgres":
        overrides.append((_oid("interval"), pg_datetime.IntervalLoader))
    if not overrides and not zoned and to_utf8 is None:
        return postgres.adapters
    adapters = AdaptersMap(postgres.adapters)
    for loader in zoned:
        adapters.register_loader(_oid("timestamptz"), loader)
    for oid, base in overrides:
        adapters.register_loader(oid, _bound_loader(base, context))
    if to_utf8 is not None:
        for name in _BINARY_TEXT_NAMES:
            text_loader = postgres.adapters.get_loader(_oid(name), _BINARY)
            if text_loader is not None:
                adapters.register_loader(_oid(name), _transcoding_loader(text_loader, to_utf8))
    return adapters


def _check_binary(oid: int, data: Buffer, depth: int = 0) -> str | None:
    """Check the framing of a binary value before psycopg's loaders read it.

    Covers the types whose (C) loaders trust lengths found in the data:
    fixed-size types, numeric, arrays, records, ranges and multiranges, as
    written by ``numeric_send``, ``array_send``, ``record_send``,
    ``range_send`` and ``multirange_send`` (``src/backend/utils/adt/``).

    Returns:
        None if the value is well framed, else the reason it is not.
    """
    n = len(data)
    size = _FIXED_BINARY_SIZE.get(oid)
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
            return f"element type {elem_oid} in an array of {type_name(_ARRAY_ELEMENTS[oid])}"
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
    size = _FIXED_BINARY_SIZE.get(oid)
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
        elif reason := _check_binary(oid, memoryview(data)[pos : pos + length], depth + 1):
            return pos, f"item {i}: {reason}"
        pos += length
    return pos, None


def _trailing(data: Buffer, pos: int, reason: str | None) -> str | None:
    if reason is None and pos != len(data):
        return f"{len(data) - pos} trailing bytes"
    return reason


_Entry = tuple[Callable[[Buffer], Any], int]


class ValueDecoder:
    """Decode column values of one session, following its ParameterStatus messages.

    Values are loaded by psycopg's loaders (C ones where psycopg has them),
    looked up once per (type OID, format code) and cached. Session state
    changes the result the way it does on a psycopg connection: text is
    read in ``client_encoding``, ``timestamptz`` values are returned in
    ``TimeZone``, text dates follow ``DateStyle``, intervals ``IntervalStyle``.

    Args:
        client_encoding: PostgreSQL encoding name (``UTF8``, ``LATIN1``,
            ``WIN1252``, ``SQL_ASCII``, ...), as in ParameterStatus.
        timezone: the session's ``TimeZone`` (an IANA name such as
            ``"Europe/Berlin"``); None means UTC, as psycopg does without one.
        user_types: names of non-builtin types by OID, for error messages.

    Spec: PostgreSQL docs, "Frontend/Backend Protocol", "Message Formats",
    DataRow (B), Bind (F), ParameterStatus (B); "Server Configuration",
    "Client Connection Defaults" (DateStyle, IntervalStyle, TimeZone,
    client_encoding).
    """

    def __init__(
        self,
        client_encoding: str = "UTF8",
        timezone: str | None = None,
        user_types: Mapping[int, str] | None = None,
    ) -> None:
        self._status: dict[str, str] = {"client_encoding": client_encoding}
        if timezone:
            self._status["TimeZone"] = timezone
        self._user_types = dict(user_types or {})
        self._setup()

    def _setup(self) -> None:
        self._to_utf8 = _transcoder(self._status["client_encoding"])
        self._adapters = _shared_adapters(tuple(sorted(self._status.items())))
        self._tx = Transformer(_context(self._adapters))
        self._float_datetimes = self._status.get("integer_datetimes", "on") != "on"
        # (type OID -> (load, fixed binary size or -1)) by format code
        self._entries: dict[int, dict[int, _Entry]] = {_TEXT: {}, _BINARY: {}}
        self._generation = getattr(self, "_generation", -1) + 1

    @property
    def generation(self) -> int:
        """A number that changes whenever session state changes the loaders, so that
        a plan from :meth:`row_plan` can tell it is stale."""
        return self._generation

    def row_plan(self, types: Sequence[tuple[int, int]]) -> list[tuple[Callable[[Any], Any], int]]:
        """The loader of each column of a result, resolved once for all its rows.

        Args:
            types: (type OID, format code) per column.

        Returns:
            Per column, (load, fixed binary size or -1). ``load(data)`` takes the
            value's bytes (never None); when it raises, or the size does not
            match, :meth:`decode` gives the result or the error for that value.
        """
        plan: list[tuple[Callable[[Any], Any], int]] = []
        for oid, fmt in types:
            try:
                plan.append(self._entries[fmt].get(oid) or self._new_entry(oid, fmt))
            except (KeyError, ValueDecodeError):
                plan.append((_no_loader, -1))
        return plan

    def sequence_loader(
        self, types: Sequence[tuple[int, int]]
    ) -> Callable[[Sequence[bytes | None]], Sequence[Any]] | None:
        """A function loading a whole row of a result in one call, or None.

        Only for rows whose columns are all text format, of types psycopg has
        a loader for, in a UTF-8 session: psycopg's ``Transformer.load_sequence``
        then runs the loaders in C, several times faster than value by value.
        It raises on the first value it cannot load; :meth:`decode` then says,
        value by value, what each one is.

        Args:
            types: (type OID, format code) per column.
        """
        if self._to_utf8 is not None or not types:
            return None
        for oid, fmt in types:
            if fmt != _TEXT or oid == 0 or self._adapters.get_loader(oid, _TEXT) is None:
                return None
        tx = Transformer(_context(self._adapters))
        tx.set_loader_types([oid for oid, _ in types], _TEXT)
        return tx.load_sequence

    @property
    def utf8(self) -> bool:
        """True when text arrives in UTF-8 (client_encoding UTF8), so that a text-format
        value's text is its bytes decoded as UTF-8."""
        return self._to_utf8 is None

    def set_parameter(self, name: str, value: str) -> None:
        """Follow one ParameterStatus message.

        Only ``client_encoding``, ``TimeZone``, ``DateStyle``, ``IntervalStyle``
        and ``integer_datetimes`` change decoding; other names are ignored.
        Names are matched without regard to case, as PostgreSQL does.

        Args:
            name: the parameter name from ParameterStatus.
            value: its new value.
        """
        key = _SESSION_PARAMETERS.get(name.lower())
        if key is None or self._status.get(key) == value:
            return
        self._status[key] = value
        self._setup()

    def decode(self, oid: int, fmt: int, data: Buffer | None) -> Any:
        """Decode one DataRow column value or Bind parameter value.

        Args:
            oid: the value's type OID (RowDescription or Parse/ParameterDescription;
                0 means unspecified).
            fmt: the format code, 0 for text or 1 for binary.
            data: the value's bytes, or None for SQL NULL (length -1 on the wire).

        Returns:
            None for NULL; else the Python value psycopg loads (int, Decimal,
            str, datetime, list for arrays, ``Range``, dict for json, ...).
            Types without a psycopg loader give the text as str in text format
            and :class:`UnknownBinary` in binary format. Date/time text that
            psycopg cannot load (non-ISO DateStyle for timestamptz, IntervalStyle
            other than postgres, years outside 1..9999, infinity) is kept as
            the str PostgreSQL sent; binary infinities become ``"infinity"`` /
            ``"-infinity"``.

        Raises:
            ValueDecodeError: the bytes are not a valid value of that type in
                that format (wrong length, bad framing, invalid text in the
                client encoding, unparsable text), or ``fmt`` is not 0 or 1.
        """
        if data is None:
            return None
        if fmt == 0 and data.__class__ is not bytes:
            data = bytes(data)  # psycopg's C text loaders read up to a NUL after the value
        try:  # the hot path: a cached loader that loads
            load, size = self._entries[fmt][oid]
            if size < 0 or len(data) == size:
                return load(data)
        except Exception:
            pass
        return self._decode_slowly(oid, fmt, data)

    def _decode_slowly(self, oid: int, fmt: int, data: Buffer) -> Any:
        """Find or make the loader, and turn failures into results or ValueDecodeError."""
        if fmt not in (_TEXT, _BINARY):
            raise ValueDecodeError(
                f"cannot decode {self._name(oid)} value: unknown format code {fmt}"
            )
        entry = self._entries[fmt].get(oid) or self._new_entry(oid, fmt)
        load, size = entry
        if size >= 0 and len(data) != size:
            raise ValueDecodeError(self._message(oid, fmt, data, f"expected {size} bytes"))
        try:
            return load(data)
        except Exception as ex:
            return self._on_error(oid, fmt, data, ex)

    def _new_entry(self, oid: int, fmt: int) -> _Entry:
        pq_format = _BINARY if fmt == _BINARY else _TEXT
        known = oid != 0 and self._adapters.get_loader(oid, pq_format) is not None
        size = -1
        unknown_binary = not known or (self._float_datetimes and oid in _FLOAT_DATETIME_OIDS)
        if fmt == _BINARY and unknown_binary:
            load: Callable[[Buffer], Any] = lambda data: UnknownBinary(oid, bytes(data))  # noqa: E731
        else:
            try:
                load = self._tx.get_loader(oid, pq_format).load
            except Exception as ex:
                raise ValueDecodeError(
                    f"no {_FORMAT_NAMES[fmt]} loader for {self._name(oid)}: {_one_line(ex)}"
                ) from ex
            if fmt == _TEXT and self._to_utf8 is not None:
                load = _compose(self._to_utf8, load)
            elif fmt == _BINARY:
                size = _FIXED_BINARY_SIZE.get(oid, -1)
                if oid in _FRAMED_OIDS:
                    load = _checked(oid, load)
        self._entries[fmt][oid] = (load, size)
        return load, size

    def _on_error(self, oid: int, fmt: int, data: Buffer, ex: Exception) -> Any:
        if fmt == _BINARY and oid in _INFINITIES and (inf := _INFINITIES[oid].get(bytes(data))):
            return inf
        if fmt == _TEXT and oid in _RAW_TEXT_OIDS and not isinstance(ex, UnicodeError):
            try:
                return self._raw_text(data)
            except (UnicodeError, LookupError):
                pass
        if isinstance(ex, UnicodeDecodeError):
            reason = (
                f"invalid {self._status['client_encoding']} byte "
                f"0x{ex.object[ex.start]:02x} at offset {ex.start}"
            )
        else:
            reason = _one_line(ex)
        raise ValueDecodeError(self._message(oid, fmt, data, reason)) from ex

    def _raw_text(self, data: Buffer) -> str:
        raw = self._to_utf8(data) if self._to_utf8 else bytes(data)
        return raw.decode("utf-8")

    def _name(self, oid: int) -> str:
        return type_name(oid, user_types=self._user_types)

    def _message(self, oid: int, fmt: int, data: Buffer, reason: str) -> str:
        return (
            f"cannot decode {self._name(oid)} ({_FORMAT_NAMES[fmt]} format) "
            f"value of {len(data)} bytes: {reason}"
        )


def _no_loader(data: Any) -> Any:
    raise ValueError("no loader")


def _compose(
    first: Callable[[Buffer], bytes], then: Callable[[Buffer], Any]
) -> Callable[[Buffer], Any]:
    return lambda data: then(first(data))


def _checked(oid: int, load: Callable[[Buffer], Any]) -> Callable[[Buffer], Any]:
    def checked(data: Buffer) -> Any:
        if reason := _check_binary(oid, data):
            raise ValueError(reason)
        return load(data)

    return checked


def _one_line(ex: BaseException) -> str:
    text = " ".join(str(ex).split()) or type(ex).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def value_to_text(value: Any) -> str:
    """A short human text of a decoded value, for tables.

    Follows PostgreSQL's output where it is unambiguous: arrays as
    ``{1,2,NULL}`` with PostgreSQL's quoting (``array_out``), records as
    ``(1,abc)``, ranges as ``[1,5)``, bytes as ``\\x0102`` (``bytea_output =
    hex``), NaN/infinite floats as ``NaN``/``Infinity``/``-Infinity``.
    Decimal in positional notation with its scale (``12.3400``, as numeric_out).
    Dates and times are ISO 8601 (a space between date and time); UUID, IP
    addresses and intervals (``timedelta``) their ``str``; dicts (json)
    JSON; :class:`UnknownBinary` its hex.

    Args:
        value: a value returned by :meth:`ValueDecoder.decode` (None for NULL).

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
        value: a value returned by :meth:`ValueDecoder.decode`.

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
