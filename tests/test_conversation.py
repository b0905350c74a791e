"""Pairing queries with responses: simple, pipelined, extended, prepared, async messages."""

from __future__ import annotations

import struct

from pgwire_inspect.conversation import ConversationBuilder


def typed(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!i", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def i16(*v: int) -> bytes:
    return struct.pack(f"!{len(v)}h", *v)


def i32(*v: int) -> bytes:
    return struct.pack(f"!{len(v)}i", *v)


STARTUP = i32(0) + i32(196608) + cstr("user") + cstr("u") + b"\0"
STARTUP = i32(len(STARTUP)) + STARTUP[4:]
HELLO = typed(b"R", i32(0)) + typed(b"S", cstr("TimeZone") + cstr("UTC")) + typed(b"Z", b"I")


def rd(*cols: tuple[str, int, int]) -> bytes:
    body = i16(len(cols))
    for name, oid, fmt in cols:
        body += cstr(name) + i32(0) + i16(0) + i32(oid) + i16(4) + i32(-1) + i16(fmt)
    return typed(b"T", body)


def row(*values: bytes | None) -> bytes:
    body = i16(len(values))
    for v in values:
        body += i32(-1) if v is None else i32(len(v)) + v
    return typed(b"D", body)


def notice(msg: str) -> bytes:
    return typed(b"N", b"S" + cstr("NOTICE") + b"M" + cstr(msg) + b"\0")


class Wire:
    """Feeds a connection frame by frame, alternating directions as on the wire."""

    def __init__(self) -> None:
        self.b = ConversationBuilder()
        self.conn = self.b.open(0, ("127.0.0.1", 40000), ("127.0.0.1", 5432), 1, 0.0, True)
        self.off = {"F": 0, "B": 0}
        self.frame = 1

    def send(self, d: str, data: bytes, ts: float = 0.0) -> None:
        self.frame += 1
        self.b.data(0, d, self.off[d], data, self.frame, ts)
        self.off[d] += len(data)


def started() -> Wire:
    w = Wire()
    w.send("F", STARTUP)
    w.send("B", HELLO)
    return w


def test_startup_messages_are_not_a_query() -> None:
    w = started()
    assert w.conn.queries == []
    assert [m.name for m in w.conn.startup] == ["StartupMessage", "AuthenticationOk",
                                                  "ParameterStatus", "ReadyForQuery"]


def test_pipelined_simple_queries_pair_in_order_with_notice_in_between() -> None:
    w = started()
    w.send("F", typed(b"Q", cstr("select 1")) + typed(b"Q", cstr("select 2; select 3")), 1.0)
    w.send("B", rd(("a", 23, 0)) + row(b"1") + notice("in the middle")
           + typed(b"C", cstr("SELECT 1")) + typed(b"Z", b"I"), 1.5)
    w.send("B", rd(("b", 23, 0)) + row(b"2") + typed(b"C", cstr("SELECT 1")) + rd(("c", 23, 0))
           + row(b"3") + row(None) + typed(b"C", cstr("SELECT 2")) + typed(b"Z", b"T"), 2.0)
    q1, q2 = w.conn.queries
    assert q1.sql == "select 1" and q2.sql == "select 2; select 3"
    assert [r.tag for r in q1.results] == ["SELECT 1"]
    assert any(m.name == "NoticeResponse" for m in q1.responses)
    assert [r.tag for r in q2.results] == ["SELECT 1", "SELECT 2"]
    assert w.conn.decode_row(q2.results[1], q2.results[1].rows[1]) == [None]
    assert w.conn.decode_row(q2.results[1], q2.results[1].rows[0]) == [3]
    assert (q1.status, q2.status) == ("I", "T")
    assert q1.duration == 0.5 and q2.duration == 1.0


def test_extended_prepared_statement_reuses_its_description_and_bind_formats() -> None:
    w = started()
    parse = typed(b"P", cstr("s1") + cstr("select $1::int4 as n") + i16(1) + i32(23))
    describe_s = typed(b"D", b"S" + cstr("s1"))
    sync = typed(b"S", b"")
    w.send("F", parse + describe_s + sync)
    w.send("B", typed(b"1", b"") + typed(b"t", i16(1) + i32(23)) + rd(("n", 23, 0))
           + typed(b"Z", b"I"))
    bind = typed(b"B", cstr("") + cstr("s1") + i16(1, 1) + i16(1) + i32(4) + i32(41) + i16(1, 1))
    execute = typed(b"E", cstr("") + i32(0))
    w.send("F", bind + execute + sync)
    w.send("B", typed(b"2", b"") + row(i32(42)) + typed(b"C", cstr("SELECT 1"))
           + typed(b"Z", b"I"))
    prepare, run = w.conn.queries
    assert prepare.kind == run.kind == "extended"
    assert run.sql == "select $1::int4 as n" and run.statement == "s1"
    assert run.parameters == [(23, 1, i32(41))]
    result = run.results[0]
    assert result.description is None and [c.name for c in result.columns] == ["n"]
    assert result.formats == (1,)
    assert w.conn.decode_row(result, result.rows[0]) == [42]


def test_error_in_extended_query_ends_at_sync() -> None:
    w = started()
    w.send("F", typed(b"P", cstr("") + cstr("select x") + i16(0)) + typed(b"B", cstr("") + cstr("")
           + i16(0) + i16(0) + i16(0)) + typed(b"E", cstr("") + i32(0)) + typed(b"S", b""))
    w.send("B", typed(b"E", b"S" + cstr("ERROR") + b"C" + cstr("42703") + b"M"
                      + cstr("column \"x\" does not exist") + b"P" + cstr("8") + b"\0")
           + typed(b"Z", b"I"))
    w.send("F", typed(b"Q", cstr("select 1")))
    w.send("B", rd(("a", 23, 0)) + row(b"1") + typed(b"C", cstr("SELECT 1")) + typed(b"Z", b"I"))
    bad, good = w.conn.queries
    assert bad.error is not None and bad.error.message.fields()["position"] == "8"
    assert bad.status == "I" and bad.results == []
    assert good.error is None and good.row_count == 1


def test_terminate_after_last_query_is_trailing() -> None:
    w = started()
    w.send("F", typed(b"Q", cstr("")))
    w.send("B", typed(b"I", b"") + typed(b"Z", b"I"))
    w.send("F", typed(b"X", b""))
    (q,) = w.conn.queries
    assert q.results[0].complete is not None and q.results[0].complete.name == "EmptyQueryResponse"
    assert [m.name for m in w.conn.trailing] == ["Terminate"]


def test_message_frames_point_at_first_byte() -> None:
    w = started()
    msg = typed(b"Q", cstr("select 1"))
    w.send("F", msg[:3])
    w.send("F", msg[3:])
    (q,) = w.conn.queries
    wm = q.requests[0]
    assert wm.frame == 4 and wm.last_frame == 5
