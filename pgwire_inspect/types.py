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
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import abc, postgres, pq
from psycopg._encodings import pg2pyenc
from psycopg.abc import Buffer
from psycopg.adapt import AdaptersMap, Loader, Transformer
from psycopg.types import datetime as pg_datetime

from pgwire_inspect.binary_checks import FIXED_BINARY_SIZE, FRAMED_OIDS, check_binary
from pgwire_inspect.errors import ValueDecodeError
from pgwire_inspect.value_text import value_to_json, value_to_text

__all__ = ["UnknownBinary", "ValueDecoder", "type_name", "value_to_json", "value_to_text"]
# value_to_json and value_to_text live in value_text.py; they are re-exported here.

_TEXT = pq.Format.TEXT
_BINARY = pq.Format.BINARY
_FORMAT_NAMES: dict[int, str] = {0: "text", 1: "binary"}

_TYPES = postgres.types


def _oid(name: str) -> int:
    return _TYPES[name].oid


def _with_arrays(names: tuple[str, ...]) -> frozenset[int]:
    return frozenset(o for n in names for o in (_TYPES[n].oid, _TYPES[n].array_oid) if o)


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


#: Zone names whose offset is always zero (tzdata's UTC and its aliases, and
#: GMT's): their timestamptz values come from psycopg's C loader as they are,
#: in ``datetime.timezone.utc`` (equal to the same instant in any zone),
#: without a conversion per value.
_UTC_NAMES = frozenset(n.lower() for n in (
    "UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
    "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0", "GMT-0", "Etc/GMT-0",
    "Greenwich", "Etc/Greenwich",
))


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
    if tz and tz.lower() not in _UTC_NAMES:
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
            In UTC and zones that are always UTC (``Etc/UTC``, ``GMT`` ...)
            values come in ``datetime.timezone.utc``.
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
        self._generation = -1  # made 0 by the first _setup
        self._setup()

    def _setup(self) -> None:
        self._to_utf8 = _transcoder(self._status["client_encoding"])
        self._adapters = _shared_adapters(tuple(sorted(self._status.items())))
        self._tx = Transformer(_context(self._adapters))
        self._float_datetimes = self._status.get("integer_datetimes", "on") != "on"
        # (type OID -> (load, fixed binary size or -1)) by format code
        self._entries: dict[int, dict[int, _Entry]] = {_TEXT: {}, _BINARY: {}}
        self._generation += 1

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
                size = FIXED_BINARY_SIZE.get(oid, -1)
                if oid in FRAMED_OIDS:
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
        if reason := check_binary(oid, data):
            raise ValueError(reason)
        return load(data)

    return checked


def _one_line(ex: BaseException) -> str:
    text = " ".join(str(ex).split()) or type(ex).__name__
    return text if len(text) <= 200 else text[:197] + "..."
