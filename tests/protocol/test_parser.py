"""Parser tests: every case fed whole, one byte at a time, and with trailing bytes.

The wire bytes are written out from the layouts in the PostgreSQL docs,
"Message Formats"; each case says what the parser must make of them.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest

from pgwire_inspect.protocol import (
    NEED_DATA,
    ConnectionParser,
    MalformedMessage,
    Message,
    StreamParser,
)


def typed(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!i", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def i16(*v: int) -> bytes:
    return struct.pack(f"!{len(v)}h", *v)


def i32(*v: int) -> bytes:
    return struct.pack(f"!{len(v)}i", *v)


STARTUP = (i32(0) + i32(196608) + cstr("user") + cstr("postgres") + cstr("database")
           + cstr("db") + b"\0")
STARTUP = i32(len(STARTUP)) + STARTUP[4:]

RD_BODY = (i16(2) + cstr("id") + i32(16396) + i16(1) + i32(23) + i16(4) + i32(-1) + i16(0)
           + cstr("username") + i32(16396) + i16(2) + i32(1043) + i16(-1) + i32(44) + i16(0))

Setup = Callable[[ConnectionParser], None]


def after_startup(cp: ConnectionParser) -> None:
    cp.state.frontend_startup = False


def sasl_started(cp: ConnectionParser) -> None:
    cp.state.frontend_startup = False
    cp.state.auth_code = 10


def ssl_asked(cp: ConnectionParser) -> None:
    cp.state.pending_answers.append("SSL")


# (id, direction, setup, wire bytes, expected name, expected fields)
CASES: list[tuple[str, str, Setup | None, bytes, str, dict[str, Any]]] = [
    ("startup", "F", None, STARTUP, "StartupMessage",
     {"protocol_version": "3.0", "parameters": {"user": "postgres", "database": "db"}}),
    ("sslrequest", "F", None, i32(8, 80877103), "SSLRequest", {}),
    ("gssencrequest", "F", None, i32(8, 80877104), "GSSENCRequest", {}),
    ("cancel", "F", None, i32(16, 80877102, 4242) + b"\x01\x02\x03\x04", "CancelRequest",
     {"process_id": 4242, "secret_key": "01020304"}),
    ("cancel-3.2-long-key", "F", None, i32(12 + 32, 80877102, 7) + bytes(range(32)),
     "CancelRequest", {"process_id": 7, "secret_key": bytes(range(32)).hex()}),
    ("sslresponse", "B", ssl_asked, b"N", "SSLResponse", {"answer": "N"}),
    ("query", "F", after_startup, typed(b"Q", cstr("select 1")), "Query", {"sql": "select 1"}),
    ("parse", "F", after_startup, typed(b"P", cstr("s1") + cstr("select $1") + i16(1) + i32(23)),
     "Parse", {"statement": "s1", "query": "select $1", "parameter_types": [23]}),
    ("bind", "F", after_startup,
     typed(b"B", cstr("") + cstr("s1") + i16(1, 1) + i16(2) + i32(4) + b"\0\0\0\x2a" + i32(-1)
           + i16(1, 1)),
     "Bind", {"portal": "", "statement": "s1", "parameter_formats": [1], "parameters":
              ["0000002a", None], "result_formats": [1]}),
    ("describe", "F", after_startup, typed(b"D", b"P" + cstr("")), "Describe",
     {"kind": "P", "target": ""}),
    ("execute", "F", after_startup, typed(b"E", cstr("") + i32(100)), "Execute",
     {"portal": "", "max_rows": 100}),
    ("close", "F", after_startup, typed(b"C", b"S" + cstr("s1")), "Close",
     {"kind": "S", "target": "s1"}),
    ("sync", "F", after_startup, typed(b"S", b""), "Sync", {}),
    ("flush", "F", after_startup, typed(b"H", b""), "Flush", {}),
    ("terminate", "F", after_startup, typed(b"X", b""), "Terminate", {}),
    ("password", "F", after_startup, typed(b"p", cstr("md5abc")), "PasswordMessage",
     {"password": "md5abc"}),
    ("sasl-initial", "F", sasl_started,
     typed(b"p", cstr("SCRAM-SHA-256") + i32(5) + b"n,,n="), "SASLInitialResponse",
     {"mechanism": "SCRAM-SHA-256", "data": b"n,,n=".hex()}),
    ("copydata-f", "F", after_startup, typed(b"d", b"1\tx\n"), "CopyData", {"data": "3109780a"}),
    ("copyfail", "F", after_startup, typed(b"f", cstr("no")), "CopyFail", {"message": "no"}),
    ("auth-ok", "B", None, typed(b"R", i32(0)), "AuthenticationOk", {"code": 0}),
    ("auth-md5", "B", None, typed(b"R", i32(5) + b"salt"), "AuthenticationMD5Password",
     {"code": 5, "salt": b"salt".hex()}),
    ("auth-sasl", "B", None, typed(b"R", i32(10) + cstr("SCRAM-SHA-256") + b"\0"),
     "AuthenticationSASL", {"code": 10, "mechanisms": ["SCRAM-SHA-256"]}),
    ("parameterstatus", "B", None, typed(b"S", cstr("TimeZone") + cstr("UTC")), "ParameterStatus",
     {"parameter": "TimeZone", "value": "UTC"}),
    ("backendkey", "B", None, typed(b"K", i32(99) + b"\xaa\xbb\xcc\xdd"), "BackendKeyData",
     {"process_id": 99, "secret_key": "aabbccdd"}),
    ("backendkey-3.2", "B", None, typed(b"K", i32(99) + bytes(32)), "BackendKeyData",
     {"process_id": 99, "secret_key": "00" * 32}),
    ("readyforquery", "B", None, typed(b"Z", b"T"), "ReadyForQuery", {"status": "T"}),
    ("rowdescription", "B", None, typed(b"T", RD_BODY), "RowDescription",
     {"columns": [
         {"name": "id", "table_oid": 16396, "column": 1, "type_oid": 23, "typlen": 4,
          "typmod": -1, "format": 0},
         {"name": "username", "table_oid": 16396, "column": 2, "type_oid": 1043, "typlen": -1,
          "typmod": 44, "format": 0}]}),
    ("datarow", "B", None, typed(b"D", i16(3) + i32(1) + b"1" + i32(-1) + i32(0)), "DataRow",
     {"raw": ["31", None, ""]}),
    ("commandcomplete", "B", None, typed(b"C", cstr("SELECT 2")), "CommandComplete",
     {"tag": "SELECT 2"}),
    ("emptyquery", "B", None, typed(b"I", b""), "EmptyQueryResponse", {}),
    ("error", "B", None,
     typed(b"E", b"S" + cstr("ERROR") + b"C" + cstr("42P01") + b"M" + cstr("no table")
           + b"P" + cstr("15") + b"\0"),
     "ErrorResponse", {"severity": "ERROR", "code": "42P01", "message": "no table",
                       "position": "15"}),
    ("notice", "B", None, typed(b"N", b"S" + cstr("NOTICE") + b"M" + cstr("hi") + b"\0"),
     "NoticeResponse", {"severity": "NOTICE", "message": "hi"}),
    ("parsecomplete", "B", None, typed(b"1", b""), "ParseComplete", {}),
    ("bindcomplete", "B", None, typed(b"2", b""), "BindComplete", {}),
    ("closecomplete", "B", None, typed(b"3", b""), "CloseComplete", {}),
    ("nodata", "B", None, typed(b"n", b""), "NoData", {}),
    ("portalsuspended", "B", None, typed(b"s", b""), "PortalSuspended", {}),
    ("parameterdescription", "B", None, typed(b"t", i16(2) + i32(23, 25)),
     "ParameterDescription", {"parameter_types": [23, 25]}),
    ("copyout", "B", None, typed(b"H", b"\0" + i16(2, 0, 0)), "CopyOutResponse",
     {"format": 0, "column_formats": [0, 0]}),
    ("copyin", "B", None, typed(b"G", b"\1" + i16(1, 1)), "CopyInResponse",
     {"format": 1, "column_formats": [1]}),
    ("notification", "B", None, typed(b"A", i32(12) + cstr("ch") + cstr("hello")),
     "NotificationResponse", {"process_id": 12, "channel": "ch", "payload": "hello"}),
    ("fcallresponse", "B", None, typed(b"V", i32(2) + b"ok"), "FunctionCallResponse",
     {"result": "6f6b"}),
    ("negotiate", "B", None, typed(b"v", i32(0, 1) + cstr("_pq_.x")), "NegotiateProtocolVersion",
     {"newest_minor_version": 0, "unrecognized_options": ["_pq_.x"]}),
]

TRAILERS = {"F": typed(b"S", b""), "B": typed(b"Z", b"I")}


def parser_for(direction: str, setup: Setup | None) -> StreamParser:
    cp = ConnectionParser()
    if setup:
        setup(cp)
    return cp.parser(direction)


def drain(p: StreamParser) -> list[Message]:
    out = []
    while (m := p.next_message()) is not NEED_DATA:
        assert isinstance(m, Message)
        out.append(m)
    return out


def check(msg: Message, wire: bytes, name: str, expected: dict[str, Any]) -> None:
    assert msg.name == name, msg
    assert msg.offset == 0
    assert msg.raw == wire
    assert msg.length == len(wire)
    assert msg.fields() == expected
    spans = msg.spans()
    # The field spans cover the message exactly once, in order.
    assert spans[0].start == 0 and spans[-1].end == len(wire)
    for a, b in itertools.pairwise(spans):
        assert a.end == b.start, (a, b)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_whole(case: tuple[str, str, Setup | None, bytes, str, dict[str, Any]]) -> None:
    _, direction, setup, wire, name, expected = case
    p = parser_for(direction, setup)
    p.receive_data(wire)
    msgs = drain(p)
    assert len(msgs) == 1
    check(msgs[0], wire, name, expected)
    assert p.buffered == 0


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_byte_at_a_time(case: tuple[str, str, Setup | None, bytes, str, dict[str, Any]]) -> None:
    _, direction, setup, wire, name, expected = case
    p = parser_for(direction, setup)
    for i in range(len(wire) - 1):
        p.receive_data(wire[i : i + 1])
        assert p.next_message() is NEED_DATA, f"message returned after {i + 1} bytes"
    p.receive_data(wire[-1:])
    msgs = drain(p)
    assert len(msgs) == 1
    check(msgs[0], wire, name, expected)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_trailing_bytes(case: tuple[str, str, Setup | None, bytes, str, dict[str, Any]]) -> None:
    _, direction, setup, wire, name, expected = case
    p = parser_for(direction, setup)
    trailer = TRAILERS[direction]
    p.receive_data(wire + trailer + trailer[:3])
    msgs = drain(p)
    check(msgs[0], wire, name, expected)
    # A startup packet leaves the frontend in the startup phase when it is an SSLRequest etc.
    if not (direction == "F" and setup is None and name != "StartupMessage"):
        assert len(msgs) == 2
        assert msgs[1].raw == trailer and msgs[1].offset == len(wire)
        assert p.buffered == 3


def test_password_message_kind_follows_authentication_request() -> None:
    cp = ConnectionParser()
    cp.frontend.receive_data(STARTUP)
    assert drain(cp.frontend)[0].name == "StartupMessage"
    cp.backend.receive_data(typed(b"R", i32(10) + cstr("SCRAM-SHA-256") + b"\0"))
    drain(cp.backend)
    cp.frontend.receive_data(typed(b"p", cstr("SCRAM-SHA-256") + i32(3) + b"abc"))
    assert drain(cp.frontend)[0].name == "SASLInitialResponse"
    cp.backend.receive_data(typed(b"R", i32(11) + b"r=abc"))
    drain(cp.backend)
    cp.frontend.receive_data(typed(b"p", b"c=biws,r=abc,p=xyz"))
    assert drain(cp.frontend)[0].name == "SASLResponse"


def test_ssl_answer_s_turns_both_directions_encrypted() -> None:
    cp = ConnectionParser()
    cp.frontend.receive_data(i32(8, 80877103))
    assert [m.name for m in drain(cp.frontend)] == ["SSLRequest"]
    cp.backend.receive_data(b"S\x16\x03\x03\x00\x10")
    msgs = drain(cp.backend)
    assert [m.name for m in msgs] == ["SSLResponse"]
    cp.frontend.receive_data(b"\x16\x03\x01\x02\x00" + bytes(100))
    assert drain(cp.frontend) == []
    assert cp.state.encrypted_by == "TLS"
    assert cp.state.encrypted_bytes == {"F": 105, "B": 5}
    assert cp.state.encrypted_from == {"B": 1, "F": 8}


def test_ssl_answer_n_then_startup() -> None:
    cp = ConnectionParser()
    cp.frontend.receive_data(i32(8, 80877103))
    cp.backend.receive_data(b"N")
    assert [m.name for m in drain(cp.frontend)] == ["SSLRequest"]
    assert [m.name for m in drain(cp.backend)] == ["SSLResponse"]
    cp.frontend.receive_data(STARTUP + typed(b"Q", cstr("select 1")))
    assert [m.name for m in drain(cp.frontend)] == ["StartupMessage", "Query"]


def test_direct_tls() -> None:
    cp = ConnectionParser()
    cp.frontend.receive_data(b"\x16\x03\x01\x00\x05hello")
    assert drain(cp.frontend) == []
    assert cp.state.encrypted_by == "TLS"
    assert cp.state.encrypted_bytes["F"] == 10


def test_backend_key_data_protocol_3_2_keeps_following_ready_for_query() -> None:
    p = ConnectionParser().backend
    p.receive_data(typed(b"K", i32(1) + bytes(range(64))) + typed(b"Z", b"I"))
    msgs = drain(p)
    assert [m.name for m in msgs] == ["BackendKeyData", "ReadyForQuery"]
    assert msgs[0].fields()["secret_key"] == bytes(range(64)).hex()


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (typed(b"D", i16(1) + i32(100) + b"abc"), "values[0].value needs 100 bytes"),
        (typed(b"D", i16(30000) + i32(1) + b"x"), "30000 column values"),
        (typed(b"D", i16(1) + i32(-5)), "values[0].value needs -5 bytes"),
        (typed(b"C", b"SELECT 1"), "no terminating zero"),
        (typed(b"T", i16(5) + cstr("x")), "5 column descriptions"),
        (typed(b"C", cstr("SELECT 1") + b"xx"), "2 bytes left over"),
    ],
)
def test_malformed_body_is_reported_and_parsing_goes_on(wire: bytes, reason: str) -> None:
    p = ConnectionParser().backend
    good = typed(b"Z", b"I")
    p.receive_data(good + wire + good)
    msgs = drain(p)
    assert [m.name for m in msgs] == ["ReadyForQuery", "MalformedMessage", "ReadyForQuery"]
    bad = msgs[1]
    assert isinstance(bad, MalformedMessage)
    assert reason in bad.reason
    assert bad.offset == len(good) and bad.length == len(wire)
    assert len(good) < bad.error_offset <= len(good) + len(wire)
    assert msgs[2].offset == len(good) + len(wire)


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\xff\xfe\xfd\xfc\xfb\xfa", "unknown B message type"),
        (b"Z" + i32(0x7FFFFFFF), "impossible length"),
        (b"D" + i32(-20) + b"\0\0", "impossible length"),
        (b"D" + i32(2), "impossible length"),
    ],
)
def test_garbage_between_messages_resynchronizes(garbage: bytes, reason: str) -> None:
    p = ConnectionParser().backend
    rows = typed(b"D", i16(1) + i32(1) + b"7") * 3 + typed(b"Z", b"I")
    p.receive_data(typed(b"Z", b"I") + garbage + rows)
    p.finish()
    msgs = drain(p)
    names = [m.name for m in msgs]
    assert names == ["ReadyForQuery", "MalformedMessage", "DataRow", "DataRow", "DataRow",
                     "ReadyForQuery"], msgs
    bad = msgs[1]
    assert isinstance(bad, MalformedMessage)
    assert reason in bad.reason
    assert bad.offset == 6 and bad.length == len(garbage)
    assert msgs[2].offset == 6 + len(garbage)


def test_huge_claimed_length_does_not_allocate_or_hang() -> None:
    p = ConnectionParser().backend
    p.receive_data(b"D" + i32(0x3FFFFFFF) + b"\0\1")
    assert p.next_message() is NEED_DATA
    assert p.buffered == 7
    p.finish()
    msg = p.next_message()
    assert isinstance(msg, MalformedMessage) and "stream ends inside a message" in msg.reason


def test_gap_then_resync_at_next_message() -> None:
    p = ConnectionParser().backend
    row = typed(b"D", i16(1) + i32(3) + b"abc")
    p.receive_data(row + row[:5])
    p.receive_gap(len(row) - 5 + 4)  # the rest of row 2 and the first 4 bytes of row 3
    p.receive_data(row[4:] + row + row + typed(b"Z", b"I"))
    p.finish()
    msgs = drain(p)
    names = [m.name for m in msgs]
    assert names == ["DataRow", "MalformedMessage", "DataRow", "DataRow", "ReadyForQuery"]
    assert msgs[2].offset == 3 * len(row)
    assert "bytes missing from the capture" in msgs[1].reason  # type: ignore[attr-defined]


def test_startup_with_wrong_protocol_is_malformed() -> None:
    p = ConnectionParser().frontend
    p.receive_data(i32(16, 0x00020000) + b"user\0x\0\0\0" + typed(b"Q", cstr("select 1")))
    p.finish()
    msgs = drain(p)
    assert msgs[0].name == "MalformedMessage"
    assert "protocol version" in msgs[0].reason  # type: ignore[attr-defined]
    assert msgs[-1].name == "Query"
