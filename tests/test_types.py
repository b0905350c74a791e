"""Tests of pgwire_inspect.types on bytes sent by a real PostgreSQL server.

The server tests select values of every builtin family with psycopg 3 in
text and in binary format, take the raw column bytes the server sent
(``cursor.pgresult.get_value``) and the RowDescription type OID and
typmod, and check that ValueDecoder gives what psycopg itself returned and
that type_name agrees with the server's ``format_type()``.
"""

from __future__ import annotations

import ctypes
import json
import math
import mmap
import os
import struct
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import postgres
from psycopg.types.multirange import MultirangeInfo
from psycopg.types.range import Range, RangeInfo

from pgwire_inspect.errors import ValueDecodeError
from pgwire_inspect.types import (
    UnknownBinary,
    ValueDecoder,
    type_name,
    value_to_json,
    value_to_text,
)

DSN = os.environ.get("PGWIRE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# (label, SQL expression): one column each, selected in one query.
CASES = [
    ("int2", "(-32768)::int2"),
    ("int4", "2147483647::int4"),
    ("int8", "(-9223372036854775808)::int8"),
    ("numeric(12,4)", "12345678.1234::numeric(12,4)"),
    ("numeric", "'-1.5e-20'::numeric"),
    ("numeric NaN", "'NaN'::numeric"),
    ("float4", "3.25::float4"),
    ("float8", "1e308::float8"),
    ("float8 -Infinity", "'-Infinity'::float8"),
    ("float8 NaN", "'NaN'::float8"),
    ("bool", "true"),
    ("text", "'héllo ☃ \"quoted\"'::text"),
    ("varchar(40)", "'abc'::varchar(40)"),
    ("char(3)", "'ab'::char(3)"),
    ("bytea", "'\\x00ff10'::bytea"),
    ("date", "'2024-02-29'::date"),
    ("time", "'13:45:59.123456'::time"),
    ("time(2)", "'13:45:59.129'::time(2)"),
    ("timetz", "'13:45:59+05:30'::timetz"),
    ("timestamp", "'2024-03-01 12:34:56.789'::timestamp"),
    ("timestamptz", "'2024-01-01 00:00:00+00'::timestamptz"),
    ("timestamptz(3) summer", "'2024-07-01 12:34:56.789+00'::timestamptz(3)"),
    ("interval", "'1 year 2 mons 3 days 04:05:06.5'::interval"),
    ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"),
    ("json", '\'{"a": [1, 2.5, null], "b": "x"}\'::json'),
    ("jsonb", '\'{"a": [1, 2.5, null], "b": "ü"}\'::jsonb'),
    ("inet", "'192.168.0.1/24'::inet"),
    ("inet v6", "'::1'::inet"),
    ("cidr", "'10.0.0.0/8'::cidr"),
    ("macaddr", "'08:00:2b:01:02:03'::macaddr"),
    ("int4[]", "ARRAY[[1, 2], [3, NULL]]::int4[]"),
    ("text[]", "ARRAY['a', 'b c', NULL, 'NULL', 'q\"x', 'back\\slash', '', '{}']::text[]"),
    ("timestamptz[]", "ARRAY['2024-01-01 00:00:00+00'::timestamptz, NULL]"),
    ("int4range", "'[1,5)'::int4range"),
    ("empty int4range", "'empty'::int4range"),
    ("tstzrange", "tstzrange('2024-01-01 00:00:00+00', NULL)"),
    ("numrange", "numrange(1.5, 2.25, '(]')"),
    ("int4multirange", "'{[1,3), [5,8)}'::int4multirange"),
    ("record", "ROW(1, 'x y'::text, NULL, '2024-02-29'::date)"),
    ("money", "12.34::money"),
    ("oid", "4294967295::oid"),
    ("xml", "'<a>b</a>'::xml"),
    ("mood", "'happy'::pg_temp.mood"),
    ("NULL", "NULL::int4"),
]

# psycopg's names are the pg_type spellings; format_type() says these instead.
FORMAT_TYPE_SPELLING = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar(40)": "character varying(40)",
    "bpchar(3)": "character(3)",
    "time": "time without time zone",
    "time(2)": "time(2) without time zone",
    "timetz": "time with time zone",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "timestamptz(3)": "timestamp(3) with time zone",
    "int4[]": "integer[]",
    "timestamptz[]": "timestamp with time zone[]",
}

# Labels whose value_to_text (of the binary-decoded value) is exactly the
# text the server sends; the others differ on purpose (true vs t, ISO
# datetimes with "T"-less microseconds, timedelta, json spacing).
SAME_TEXT_AS_SERVER = {
    "int2", "int4", "int8", "numeric(12,4)", "numeric", "numeric NaN", "float4",
    "float8", "float8 -Infinity", "float8 NaN", "text", "varchar(40)", "char(3)",
    "bytea", "date", "time", "uuid", "inet", "inet v6", "cidr", "int4[]",
    "text[]", "int4range", "empty int4range", "numrange", "int4multirange",
    "record", "oid", "xml", "mood", "jsonb",
}  # fmt: skip


def connect(**kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection to the test server; skip (fail in CI) if there is none."""
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=3, **kwargs)
    except psycopg.OperationalError as ex:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {DSN} is unreachable: {ex}")
        pytest.skip(f"PostgreSQL at {DSN} is unreachable: {ex}")


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    with connect() as c:
        c.execute("SET TimeZone = 'Europe/Berlin'")
        c.execute("CREATE TYPE pg_temp.mood AS ENUM ('sad', 'happy')")
        yield c


def decoder_for(conn: psycopg.Connection[Any], **kwargs: Any) -> ValueDecoder:
    """A decoder set up from the session's ParameterStatus values, as a capture would."""
    dec = ValueDecoder(**kwargs)
    for name in ("client_encoding", "TimeZone", "DateStyle", "IntervalStyle", "integer_datetimes"):
        value = conn.info.parameter_status(name)
        assert value is not None
        dec.set_parameter(name, value)
    return dec


def wire_values(conn: psycopg.Connection[Any], exprs: list[str], binary: bool) -> list[tuple]:
    """[(type OID, typmod, raw bytes or None, psycopg's value)] per expression."""
    cur = conn.cursor()
    cur.execute("SELECT " + ", ".join(exprs), binary=binary)
    row = cur.fetchone()
    res = cur.pgresult
    assert row is not None and res is not None
    return [(res.ftype(i), res.fmod(i), res.get_value(0, i), row[i]) for i in range(len(exprs))]


def same(ours: Any, theirs: Any) -> bool:
    """Equal values of the same types, time zones included (repr shows both)."""
    if isinstance(ours, UnknownBinary):
        return isinstance(theirs, bytes) and ours.data == theirs
    return repr(ours) == repr(theirs)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_decode_matches_psycopg(conn: psycopg.Connection[Any], binary: bool) -> None:
    dec = decoder_for(conn)
    fmt = 1 if binary else 0
    values = wire_values(conn, [sql for _, sql in CASES], binary)
    for (label, _), (oid, _mod, raw, expected) in zip(CASES, values, strict=True):
        ours = dec.decode(oid, fmt, raw)
        assert same(ours, expected), f"{label}: {ours!r} != {expected!r}"
        # Types psycopg has no loader for come back as UnknownBinary in binary.
        if label in ("money", "xml", "macaddr", "mood") and binary:
            assert ours == UnknownBinary(oid, raw)


def test_timestamptz_in_session_time_zone(conn: psycopg.Connection[Any]) -> None:
    dec = decoder_for(conn)
    for binary in (False, True):
        (oid, _, raw, expected), (aoid, _, araw, _) = wire_values(
            conn,
            ["'2024-07-01 10:00:00+00'::timestamptz", "ARRAY['2024-01-01 10:00+00'::timestamptz]"],
            binary,
        )
        value = dec.decode(oid, int(binary), raw)
        assert value == expected == datetime(2024, 7, 1, 10, tzinfo=timezone.utc)
        assert value.utcoffset().total_seconds() == 7200  # CEST
        assert str(value.tzinfo) == "Europe/Berlin"
        assert dec.decode(aoid, int(binary), araw)[0].utcoffset().total_seconds() == 3600
    # The same bytes in a UTC session.
    ((oid, _, raw, _),) = wire_values(conn, ["'2024-07-01 10:00:00+00'::timestamptz"], True)
    assert ValueDecoder().decode(oid, 1, raw).tzinfo == timezone.utc


def test_type_names_match_format_type(conn: psycopg.Connection[Any]) -> None:
    values = wire_values(conn, [sql for _, sql in CASES], True)
    pairs = [(oid, mod) for oid, mod, _, _ in values]
    server = conn.execute(
        "SELECT format_type(o, m) FROM unnest(%s::int8[]::oid[], %s::int4[])"
        " WITH ORDINALITY AS u(o, m, i) ORDER BY i",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    ).fetchall()
    mood_oid = conn.execute("SELECT 'pg_temp.mood'::regtype::oid::int8").fetchone()[0]  # type: ignore[index]
    for (label, _), (oid, mod), (formatted,) in zip(CASES, pairs, server, strict=True):
        if oid == mood_oid:
            assert type_name(oid, mod) == f"oid {oid}"
            assert type_name(oid, mod, user_types={oid: formatted}) == formatted
            continue
        name = type_name(oid, mod)
        assert FORMAT_TYPE_SPELLING.get(name, name) == formatted, label
    assert type_name(1043, 44) == "varchar(40)"
    assert type_name(1700, (12 << 16) + 4 + 4) == "numeric(12,4)"


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_value_to_text_and_json(conn: psycopg.Connection[Any], binary: bool) -> None:
    dec = decoder_for(conn)
    text_values = wire_values(conn, [sql for _, sql in CASES], False)
    values = wire_values(conn, [sql for _, sql in CASES], binary)
    for (label, _), (oid, _, raw, _), (_, _, server_text, _) in zip(
        CASES, values, text_values, strict=True
    ):
        value = dec.decode(oid, int(binary), raw)
        json.dumps(value_to_json(value), allow_nan=False)
        if label in SAME_TEXT_AS_SERVER and not (binary and label in ("xml", "mood")):
            assert value_to_text(value) == server_text.decode(), label
    assert value_to_text(None) == "NULL"
    assert value_to_text(True) == "true"
    assert (
        value_to_text(datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc))
        == "2024-03-01 12:00:00+00:00"
    )
    assert value_to_json(datetime(2024, 3, 1, 12, 0)) == "2024-03-01T12:00:00"
    assert value_to_json(Decimal("12.3400")) == "12.3400"
    assert value_to_json([float("nan"), float("inf"), 1.5]) == ["NaN", "Infinity", 1.5]
    assert value_to_json({"d": date(2024, 2, 29), "u": UUID(int=1)}) == {
        "d": "2024-02-29",
        "u": "00000000-0000-0000-0000-000000000001",
    }
    assert value_to_json(b"\x00\xff") == value_to_text(UnknownBinary(17, b"\x00\xff")) == "\\x00ff"


def test_latin1_session(conn: psycopg.Connection[Any]) -> None:
    with connect(client_encoding="LATIN1") as latin1:
        dec = decoder_for(latin1)
        exprs = [
            "'café'::text",
            "'é'::varchar(3)",
            "'é'::name",
            "ARRAY['é', 'a b']",
            "'é'::char(2)",
        ]
        for binary in (False, True):
            for expr, (oid, _, raw, expected) in zip(
                exprs, wire_values(latin1, exprs, binary), strict=True
            ):
                assert "é" in str(expected)
                assert same(dec.decode(oid, int(binary), raw), expected), expr
            # psycopg reads json as UTF-8 whatever the client encoding and fails here.
            cur = latin1.cursor()
            cur.execute("""SELECT '{"k": "é"}'::json, '{"k": "é"}'::jsonb""", binary=binary)
            res = cur.pgresult
            assert res is not None and b"\xe9" in (res.get_value(0, 0) or b"")
            for col in (0, 1):
                assert dec.decode(res.ftype(col), int(binary), res.get_value(0, col)) == {"k": "é"}
            with pytest.raises(UnicodeDecodeError):
                cur.fetchone()


@pytest.mark.parametrize("style", ["SQL, DMY", "German", "Postgres, MDY", "SQL, MDY"])
def test_datestyle(style: str) -> None:
    with connect() as c:
        c.execute(f"SET DateStyle = '{style}'")
        dec = decoder_for(c)
        exprs = [
            "'2024-02-29'::date",
            "'2024-03-01 12:34:56.789'::timestamp",
            "ARRAY['2024-02-29'::date]",
        ]
        for expr, (oid, _, raw, expected) in zip(exprs, wire_values(c, exprs, False), strict=True):
            assert same(dec.decode(oid, 0, raw), expected), expr
        # psycopg cannot read timestamptz text but in ISO DateStyle: the text is kept.
        cur = c.cursor()
        cur.execute("SELECT '2024-03-01 12:34:56.789+00'::timestamptz", binary=False)
        assert cur.pgresult is not None
        raw = cur.pgresult.get_value(0, 0)
        assert raw is not None
        with pytest.raises(NotImplementedError):
            cur.fetchone()
        assert dec.decode(1184, 0, raw) == raw.decode() and "2024" in raw.decode()


@pytest.mark.parametrize("style", ["iso_8601", "sql_standard", "postgres_verbose"])
def test_intervalstyle(style: str) -> None:
    with connect() as c:
        c.execute(f"SET IntervalStyle = '{style}'")
        dec = decoder_for(c)
        cur = c.cursor()
        cur.execute("SELECT '1 year 2 mons 3 days 04:05:06.5'::interval", binary=False)
        assert cur.pgresult is not None
        raw = cur.pgresult.get_value(0, 0)
        assert raw is not None
        with pytest.raises(NotImplementedError):
            cur.fetchone()
        assert dec.decode(1186, 0, raw) == raw.decode()
        ((oid, _, braw, expected),) = wire_values(
            c, ["'1 year 2 mons 3 days 04:05:06.5'::interval"], True
        )
        assert dec.decode(oid, 1, braw) == expected


def test_infinity(conn: psycopg.Connection[Any]) -> None:
    dec = decoder_for(conn)
    exprs = [
        "'infinity'::date",
        "'-infinity'::timestamp",
        "'infinity'::timestamptz",
        "'2023-02-28 BC'::date",
    ]
    for binary in (False, True):
        cur = conn.cursor()
        cur.execute("SELECT " + ", ".join(exprs), binary=binary)
        res = cur.pgresult
        assert res is not None
        with pytest.raises(psycopg.DataError):
            cur.fetchone()
        got = [dec.decode(res.ftype(i), int(binary), res.get_value(0, i)) for i in range(3)]
        assert got == ["infinity", "-infinity", "infinity"]
        if binary:
            with pytest.raises(ValueDecodeError, match=r"date \(binary format\).*too small"):
                dec.decode(res.ftype(3), 1, res.get_value(0, 3))
        else:
            assert dec.decode(res.ftype(3), 0, res.get_value(0, 3)) == "2023-02-28 BC"


def test_malformed_binary_arrays_from_real_bytes(conn: psycopg.Connection[Any]) -> None:
    dec = ValueDecoder()
    values = wire_values(
        conn,
        [
            "ARRAY[[1, 2], [3, NULL]]::int4[]",
            "ARRAY['a', NULL]::text[]",
            "ROW(1, ARRAY[2])",
            "'{[1,3)}'::int4multirange",
            "1.5::numeric",
        ],
        True,
    )
    for oid, _, raw, expected in values:
        assert dec.decode(oid, 1, raw) == expected
        for cut in range(len(raw)):  # every truncation
            with pytest.raises(ValueDecodeError, match="binary format"):
                dec.decode(oid, 1, raw[:cut])
        with pytest.raises(ValueDecodeError, match=r"trailing bytes|bad numeric"):
            dec.decode(oid, 1, raw + b"\x00")
    oid, _, raw, _ = values[0]
    bad = {
        "ndim 7": struct.pack("!i", 7) + raw[4:],
        "huge dims": raw[:12] + struct.pack("!i", 2**30) + raw[16:],
        "negative dims": raw[:12]
        + struct.pack("!i", -2)
        + raw[16:20]
        + struct.pack("!i", -2)
        + raw[24:],
        "element of 3 bytes": raw[:28] + struct.pack("!i", 3) + raw[32:35],
    }
    for what, data in bad.items():
        with pytest.raises(ValueDecodeError, match=r"int4\[\] \(binary format\)"):
            dec.decode(oid, 1, data)
        assert what


def test_offline_binary_and_text() -> None:
    dec = ValueDecoder()
    assert dec.decode(23, 1, b"\x00\x00\x00\x2a") == 42
    assert dec.decode(23, 0, b"42") == 42
    assert dec.decode(21, 1, b"\xff\xfe") == -2
    assert dec.decode(25, 0, None) is None
    assert dec.decode(25, 1, "☃".encode()) == "☃"


@pytest.mark.parametrize(
    ("oid", "data", "name"),
    [(23, b"\x00\x00\x2a", "int4"), (23, b"\x00\x00\x00\x00\x2a", "int4"),
     (20, b"\x00" * 7, "int8"), (16, b"", "bool"), (2950, b"\x00" * 15, "uuid"),
     (1184, b"\x00" * 9, "timestamptz"),
     (1700, b"\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01", "numeric")],
)  # fmt: skip
def test_bad_binary_length(oid: int, data: bytes, name: str) -> None:
    with pytest.raises(
        ValueDecodeError,
        match=rf"^cannot decode {name} \(binary format\) value of {len(data)} bytes: ",
    ):
        ValueDecoder().decode(oid, 1, data)


def test_bad_text() -> None:
    dec = ValueDecoder()
    with pytest.raises(
        ValueDecodeError,
        match=r"^cannot decode text \(text format\) .*invalid UTF8 byte 0xff at offset 3",
    ):
        dec.decode(25, 0, b"abc\xff")
    with pytest.raises(ValueDecodeError, match=r"int4 \(text format\)"):
        dec.decode(23, 0, b"4x2")
    with pytest.raises(ValueDecodeError, match="format code 2"):
        dec.decode(23, 2, b"42")
    with pytest.raises(ValueDecodeError) as info:
        dec.decode(3802, 0, b'{"a": ')
    assert "\n" not in str(info.value)


def test_client_encodings() -> None:
    dec = ValueDecoder("LATIN1")
    assert dec.decode(25, 0, b"caf\xe9") == "café"
    assert dec.decode(1043, 1, b"caf\xe9") == "café"
    assert dec.decode(1009, 0, b'{caf\xe9,"a b"}') == ["café", "a b"]
    assert ValueDecoder("WIN1252").decode(25, 0, b"\x80") == "€"
    # SQL_ASCII: no conversion; UTF-8 when it is, \x escapes when not.
    sql_ascii = ValueDecoder("SQL_ASCII")
    assert sql_ascii.decode(25, 0, "é".encode()) == "é"
    assert sql_ascii.decode(25, 0, b"caf\xe9") == "caf\\xe9"
    # Following ParameterStatus: the same bytes, read again after the change.
    follow = ValueDecoder()
    with pytest.raises(ValueDecodeError):
        follow.decode(25, 0, b"caf\xe9")
    follow.set_parameter("client_encoding", "LATIN1")
    assert follow.decode(25, 0, b"caf\xe9") == "café"
    with pytest.raises(ValueDecodeError, match="EUC_TW has no Python codec"):
        ValueDecoder("EUC_TW").decode(25, 0, b"\xa4\xa1")
    assert ValueDecoder("EUC_TW").decode(25, 0, b"abc") == "abc"


def test_unknown_types_and_session_switches() -> None:
    dec = ValueDecoder(user_types={16401: "mood"})
    assert dec.decode(16401, 0, b"happy") == "happy"
    value = dec.decode(16401, 1, b"happy")
    assert value == UnknownBinary(16401, b"happy") and str(value) == "\\x6861707079"
    assert dec.decode(0, 1, b"\x01") == UnknownBinary(
        0, b"\x01"
    )  # Bind parameter of unspecified type
    dec.set_parameter("integer_datetimes", "off")
    assert dec.decode(1114, 1, b"\x00" * 8) == UnknownBinary(1114, b"\x00" * 8)
    assert dec.decode(1082, 1, b"\x00" * 4) == date(2000, 1, 1)
    dec.set_parameter("application_name", "ignored")
    dec.set_parameter("integer_datetimes", "on")
    dec.set_parameter("TIMEZONE", "Asia/Tokyo")
    assert dec.decode(1184, 1, b"\x00" * 8).utcoffset().total_seconds() == 9 * 3600


# Binary values whose loaders follow lengths found in the data.
_ALL = list(postgres.types)
_FRAMED = sorted(
    {t.array_oid for t in _ALL if t.array_oid}
    | {t.oid for t in _ALL if isinstance(t, RangeInfo | MultirangeInfo)}
    | {postgres.types.get_oid("numeric"), postgres.types.get_oid("record")}
)
_ELEMENTS = [16, 20, 21, 23, 25, 1082, 1184, 1700, 2249, 3904, 1007, 1009, 2287, 0, 16401]


class Guarded:
    """Copies bytes to the end of a page followed by an inaccessible page, so that
    reading one byte past a value's end crashes at once instead of going unseen."""

    def __init__(self) -> None:
        self.page = mmap.PAGESIZE
        self.mm = mmap.mmap(-1, 2 * self.page)
        self.cbuf = (ctypes.c_char * (2 * self.page)).from_buffer(self.mm)
        libc = ctypes.CDLL(None, use_errno=True)
        guard = ctypes.c_void_p(ctypes.addressof(self.cbuf) + self.page)
        if libc.mprotect(guard, self.page, 0) != 0:  # PROT_NONE
            pytest.skip("mprotect is not available")

    def __call__(self, data: bytes) -> memoryview:
        start = self.page - len(data)
        self.mm[start : self.page] = data
        return memoryview(self.mm)[start : self.page]


@pytest.fixture(scope="module")
def guarded() -> Guarded:
    return Guarded()


@st.composite
def framed_bytes(draw: st.DrawFn) -> bytes:
    """Random bytes that often look like a binary array, record or range."""
    elem = draw(st.sampled_from(_ELEMENTS))
    head = draw(
        st.sampled_from(
            [b"", struct.pack("!iiI", 1, 0, elem), struct.pack("!iiI", 2, 1, elem),
             struct.pack("!i", 2), bytes([draw(st.integers(0, 255))])]
        )
    )  # fmt: skip
    dims = draw(st.lists(st.integers(-2, 3).map(lambda d: struct.pack("!ii", d, 1)), max_size=3))
    items = draw(st.lists(st.tuples(st.integers(-2, 20), st.binary(max_size=12)), max_size=4))
    body = b"".join(struct.pack("!i", n) + data for n, data in items)
    return head + b"".join(dims) + body + draw(st.binary(max_size=4))


_HOSTILE = ValueDecoder(timezone="Europe/Berlin")  # one decoder: loaders keep state


@settings(max_examples=400, deadline=None)
@given(oid=st.sampled_from(_FRAMED), data=framed_bytes())
def test_hostile_binary_values_raise_cleanly(guarded: Guarded, oid: int, data: bytes) -> None:
    try:
        _HOSTILE.decode(oid, 1, guarded(data))
    except ValueDecodeError as ex:
        assert "\n" not in str(ex)


def test_array_element_type_must_match(guarded: Guarded) -> None:
    # psycopg's C array loader keeps the element loader of the first array it
    # reads; a later array claiming another element type must not reach it.
    dec = ValueDecoder()
    oid_array = postgres.types.get_oid("oid[]")
    assert dec.decode(oid_array, 1, guarded(struct.pack("!iiIii", 1, 0, 26, 0, 1))) == []
    claims_arrays = struct.pack("!iiIii", 1, 0, 4192, 1, 1) + struct.pack("!ii", 4, 1)
    with pytest.raises(ValueDecodeError, match="element type 4192 in an array of oid"):
        dec.decode(oid_array, 1, guarded(claims_arrays))
    assert dec.decode(oid_array, 1, guarded(struct.pack("!iiIiiii", 1, 0, 26, 1, 1, 4, 7))) == [7]


def test_range_bounds_cannot_be_null(guarded: Guarded) -> None:
    # range_send never writes length -1; psycopg would read a bound of -1
    # bytes as an int4 from past the end of the value.
    dec = ValueDecoder()
    int4range = postgres.types.get_oid("int4range")
    with pytest.raises(ValueDecodeError, match=r"int4range \(binary format\).*claims -1 bytes"):
        dec.decode(int4range, 1, guarded(b"\x12" + struct.pack("!i", -1)))
    lower_only = b"\x12" + struct.pack("!ii", 4, 5)  # [5,)
    assert dec.decode(int4range, 1, guarded(lower_only)) == Range(5, None, "[)")


def test_text_values_in_memoryviews() -> None:
    # A value sliced out of a larger buffer reads as itself, not up to the next NUL.
    dec = ValueDecoder()
    assert dec.decode(701, 0, memoryview(b"1.523")[:3]) == 1.5
    assert dec.decode(23, 0, memoryview(b"427")[:2]) == 42


def test_nan_float_and_decimal_roundtrip_text() -> None:
    dec = ValueDecoder()
    assert math.isnan(dec.decode(701, 0, b"NaN"))
    assert dec.decode(1700, 0, b"NaN").is_nan()
    assert value_to_text(dec.decode(701, 0, b"-Infinity")) == "-Infinity"


def test_fixed_binary_sizes_are_pg_type_typlen(conn: psycopg.Connection[Any]) -> None:
    from pgwire_inspect.binary_checks import FIXED_BINARY_SIZE as _FIXED_BINARY_SIZE

    rows = conn.execute(
        "SELECT oid::int8, typlen FROM pg_type WHERE oid = ANY(%s::int8[]::oid[])",
        (list(_FIXED_BINARY_SIZE),),
    ).fetchall()
    assert dict(rows) == _FIXED_BINARY_SIZE
    # And the server really sends that many bytes in binary format.
    exprs = ["true", "1::int2", "1::int4", "1::int8", "1::oid", "1::float4", "1::float8",
             "current_date", "localtime", "current_time", "localtimestamp", "now()",
             "'1 day'::interval", "gen_random_uuid()"]  # fmt: skip
    sizes = {oid: len(raw) for oid, _, raw, _ in wire_values(conn, exprs, True)}
    assert sizes == _FIXED_BINARY_SIZE
