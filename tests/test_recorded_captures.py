"""The captures in captures/ decode to exactly what the client and server sent.

Each capture was recorded by captures/record.py through a TCP relay that
wrote down every byte it passed on (NAME.json, "streams": one entry per
TCP connection, with the relay's port towards the server as
"client_port"), and with what the client saw (the SQL it sent, the rows it
fetched). Those records do not depend on the decoder, so they are the
reference here. The tcpdump-any capture has no relay record; its tests are
in test_recorded_auth.py.

The helpers here (`reference`, `decode`, `paired`, `names`) are shared by
the other test_recorded_*.py files.
"""

from __future__ import annotations

import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from captures.scenarios import show
from pgwire_inspect.capture import open_capture
from pgwire_inspect.conversation import Connection
from pgwire_inspect.decode import Decoded, decode_frames
from pgwire_inspect.protocol import DataRow, MalformedMessage, Message, Parse, Query

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
ALL = sorted(p.stem for p in CAPTURES.glob("*.pcap"))
#: Captures recorded through the relay (every one but tcpdump-any).
NAMES = [n for n in ALL
         if json.loads((CAPTURES / f"{n}.json").read_text()).get("streams")]


def reference(name: str) -> dict[str, Any]:
    """NAME.json: the relay's streams and the client's view."""
    return json.loads((CAPTURES / f"{name}.json").read_text())


def server_port(name: str) -> int:
    """The server port the capture was recorded against (5432 unless NAME.json says)."""
    return int(reference(name).get("server", ["", 5432])[1])


@cache
def decode(name: str) -> Decoded:
    """Decode NAME.pcap, looking at the server port it was recorded against (cached: read only)."""
    return decode_frames(open_capture(CAPTURES / f"{name}.pcap"), ports=[server_port(name)])


def paired(name: str) -> list[tuple[Connection, dict[str, Any]]]:
    """Each decoded connection with the relay's record of it.

    Matched by the client port the relay used towards the server; records
    without one (older captures) are matched in order.
    """
    conns = decode(name).connections
    streams = reference(name)["streams"]
    assert len(conns) == len(streams)
    if all("client_port" in s for s in streams):
        by_port = {c.client[1]: c for c in conns}
        assert len(by_port) == len(conns)
        return [(by_port[s["client_port"]], s) for s in streams]
    return list(zip(conns, streams, strict=True))


def names(messages: list[Any], direction: str | None = None) -> list[str]:
    """The names of WireMessages (or Messages), optionally of one direction only."""
    return [m.name for m in messages if direction is None or m.direction == direction]


def of_type(conn: Connection, cls: type[Message]) -> list[Any]:
    """The messages of one class on a connection, in wire order per direction."""
    return [w.message for w in conn.messages if isinstance(w.message, cls)]


def frame_messages(stream: bytes, startup: bool) -> list[tuple[str, int]]:
    """Split a stream at message boundaries by the type byte and length fields only.

    In the frontend stream, untyped startup packets (SSLRequest,
    CancelRequest, StartupMessage) come first, up to the StartupMessage.
    """
    out = []
    pos = 0
    while startup and pos < len(stream):
        (length,) = struct.unpack_from("!i", stream, pos)
        (code,) = struct.unpack_from("!i", stream, pos + 4)
        out.append(("startup", length))
        pos += length
        if code >> 16 == 3:
            break
    while pos < len(stream):
        (length,) = struct.unpack_from("!i", stream, pos + 1)
        out.append((chr(stream[pos]), length + 1))
        pos += length + 1
    assert pos == len(stream)
    return out


def decoded(name: str) -> Connection:
    """The one connection of a single-connection capture."""
    result = decode(name)
    assert len(result.connections) == 1
    return result.connections[0]


def test_there_are_captures() -> None:
    assert len(NAMES) >= 15
    assert "tcpdump-any" in ALL


@pytest.mark.parametrize("name", ALL)
def test_captures_are_small(name: str) -> None:
    limit = 400_000 if name.startswith("pgbench") else 100_000
    assert (CAPTURES / f"{name}.pcap").stat().st_size < limit


@pytest.mark.parametrize("name", NAMES)
def test_streams_are_decoded_byte_for_byte(name: str) -> None:
    for conn, ref in paired(name):
        for d in "FB":
            msgs = [w.message for w in conn.messages if w.direction == d]
            assert not [m for m in msgs if isinstance(m, MalformedMessage)]
            wire = bytes.fromhex(ref[d])
            # Every byte the relay passed on is in exactly one message, in order.
            assert b"".join(m.raw for m in msgs) == wire
            offsets = [m.offset for m in msgs]
            assert offsets == sorted(offsets)
            assert offsets[:1] == ([0] if wire else [])
            # Boundaries agree with a plain split of the reference stream.
            sizes = [length for _, length in frame_messages(wire, startup=(d == "F"))]
            assert [m.length for m in msgs] == sizes
        assert conn.gaps == []
        assert set(conn.ended.values()) == {"FIN"}


@pytest.mark.parametrize("name", NAMES)
def test_sql_on_the_wire_is_what_the_client_sent(name: str) -> None:
    wire = [" ".join((w.message.sql if isinstance(w.message, Query) else w.message.query).split())
            for w in decode(name).messages if isinstance(w.message, Query | Parse)]
    for sql in [s for s in reference(name).get("sent", []) if s]:
        assert " ".join(sql.split()) in wire, sql


def test_simple_query_values_match_what_psycopg2_fetched() -> None:
    conn = decoded("psycopg2-simple")
    ref = reference("psycopg2-simple")
    q0 = conn.queries[0]
    # Find the first user query (the driver may send none before it).
    assert q0.sql is not None and q0.sql.startswith("select 1::int4")
    result = q0.results[0]
    assert [conn.column_type(c) for c in result.columns] == [
        "int4", "varchar(40)", "text", "numeric(12,4)", "bool", "timestamptz", "bytea"]
    values = conn.decode_row(result, result.rows[0])
    fetched = ref["rows"][0][0]
    assert [show(v) for v in values] == fetched
    two = conn.queries[1]
    assert [r.tag for r in two.results] == ["SELECT 1", "SELECT 1"]
    assert [c.name for c in two.results[1].columns] == ["b", "c"]
    err = conn.queries[2]
    assert err.error is not None and err.error.message.fields()["code"] == "22012"
    assert err.status == "I"
    notice = conn.queries[3]
    assert any(w.name == "NoticeResponse" for w in notice.responses)
    assert conn.queries[4].row_count == 5


def test_extended_binary_values_match_what_psycopg_fetched() -> None:
    conn = decoded("psycopg-extended")
    ref = reference("psycopg-extended")
    got = []
    for q in conn.queries:
        for r in q.results:
            if r.rows:
                got.append([[show(v) for v in conn.decode_row(r, row)]
                            for row in r.rows])
    assert got == ref["rows"]
    formats = {r.formats for q in conn.queries for r in q.results if r.rows}
    assert (0, 0, 0) in formats and (1, 1, 1) in formats


@pytest.mark.parametrize("name", ["orm-demo-psycopg2", "orm-demo-psycopg"])
def test_orm_demo_rows_hold_the_instances_values(name: str) -> None:
    conn = decoded(name)
    ref = reference(name)
    rows = []
    for q in conn.queries:
        for r in q.results:
            names = [c.name for c in r.columns]
            for row in r.rows:
                assert isinstance(row.message, DataRow)
                values = [show(v) for v in conn.decode_row(r, row)]
                rows.append(dict(zip(names, values, strict=True)))
    for inst in ref["instances"]:
        attrs = inst["attributes"]
        assert any(set(attrs.values()) <= set(row.values()) for row in rows), attrs


@pytest.mark.parametrize("cut", [0, 1, 7, 100, 333])
def test_capture_starting_mid_connection_resumes_at_a_boundary(cut: int) -> None:
    from pgwire_inspect.conversation import ConversationBuilder

    ref = reference("psycopg2-simple")["streams"][0]
    streams = {d: bytes.fromhex(ref[d]) for d in "FB"}
    whole = ConversationBuilder()
    part = ConversationBuilder()
    for b, skip, handshake in ((whole, 0, True), (part, cut, False)):
        c = b.open(0, ("127.0.0.1", 1), ("127.0.0.1", 5432), 1, 0.0, handshake)
        for d in "FB":
            c.feed(d, skip, streams[d][skip:], 1, 0.0)
            c.end(d, "FIN", 1, 0.0)
    full = [(m.direction, m.offset, m.raw) for m in whole.connections[0].parser_messages()]
    got = part.connections[0].parser_messages()
    malformed = [m for m in got if isinstance(m, MalformedMessage)]
    good = [(m.direction, m.offset, m.raw) for m in got if not isinstance(m, MalformedMessage)]
    # Everything decoded after the cut is a message of the full decode, and only the
    # bytes before the first boundary in each direction were skipped.
    assert set(good) <= set(full)
    for d in "FB":
        later = [x for x in full if x[0] == d and x[1] >= cut]
        first_good = min((x[1] for x in good if x[0] == d), default=None)
        assert first_good is not None
        assert [x for x in later if x[1] >= first_good] == [x for x in good if x[0] == d]
        assert first_good - cut <= max(len(x[2]) for x in full if x[0] == d)
    assert all("middle of the connection" in m.reason for m in malformed)
