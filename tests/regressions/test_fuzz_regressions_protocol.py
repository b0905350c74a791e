"""Inputs the fuzzers found that break the protocol parser, kept as regression tests.

Each test states what the parser documents and feeds the smallest input
found that breaks it. Tests marked ``xfail(strict=True)`` fail today; when
the parser is fixed they pass, strict xfail turns that into a failure, and
the marker must go.
"""

from __future__ import annotations

import struct

from pgwire_inspect.protocol import (
    NEED_DATA,
    ConnectionParser,
    MalformedMessage,
    Message,
    ReadyForQuery,
    SessionState,
    SSLRequest,
    SSLResponse,
    StreamParser,
)

RFQ = b"Z\x00\x00\x00\x05I"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# The first bytes of a TLS 1.2 ClientHello record, as psql sends after 'S'.
CLIENT_HELLO = bytes.fromhex("16030100c8010000c40303") + bytes(range(32))


def drain(p: StreamParser) -> list[Message]:
    out: list[Message] = []
    while True:
        m = p.next_message()
        if m is NEED_DATA:
            return out
        assert isinstance(m, Message)
        out.append(m)


def test_many_gaps_in_a_row() -> None:
    """A capture that kept only the headers of many segments gives one gap per segment."""
    p = StreamParser("B", SessionState())
    p.receive_data(RFQ)
    for _ in range(3000):
        p.receive_gap(10)
    p.receive_data(RFQ)
    p.finish()
    msgs = drain(p)
    assert [type(m) for m in msgs] == [ReadyForQuery, MalformedMessage, ReadyForQuery]
    assert (msgs[1].offset, msgs[1].end, msgs[2].offset) == (6, 30006, 30006)


def test_a_few_gaps_in_a_row() -> None:
    """The same with 50 gaps: the result the test above expects."""
    p = StreamParser("B", SessionState())
    p.receive_data(RFQ)
    for _ in range(50):
        p.receive_gap(10)
    p.receive_data(RFQ)
    p.finish()
    msgs = drain(p)
    assert [type(m) for m in msgs] == [ReadyForQuery, MalformedMessage, ReadyForQuery]
    assert (msgs[1].offset, msgs[1].end, msgs[2].offset) == (6, 506, 506)


def test_a_flood_of_ssl_requests() -> None:
    cp = ConnectionParser()
    cp.frontend.receive_data(SSL_REQUEST * 3000)
    assert len(drain(cp.frontend)) == 3000
    cp.backend.receive_data(RFQ)
    msgs = drain(cp.backend)
    assert [type(m) for m in msgs] == [ReadyForQuery]


def test_a_few_ssl_requests_then_an_error_response() -> None:
    """Three unanswered SSLRequests: the backend's next message is still decoded."""
    cp = ConnectionParser()
    cp.frontend.receive_data(SSL_REQUEST * 3)
    assert [type(m) for m in drain(cp.frontend)] == [SSLRequest] * 3
    cp.backend.receive_data(RFQ)
    assert [type(m) for m in drain(cp.backend)] == [ReadyForQuery]


def test_bytes_seen_before_the_ssl_answer_are_accounted() -> None:
    """The ClientHello reaches the frontend parser before the backend's 'S' is parsed."""
    cp = ConnectionParser()
    fed = SSL_REQUEST + CLIENT_HELLO
    cp.frontend.receive_data(fed)
    first = drain(cp.frontend)
    assert isinstance(first[0], SSLRequest)
    cp.backend.receive_data(b"S")
    assert [type(m) for m in drain(cp.backend)] == [SSLResponse]
    cp.frontend.finish()
    later = drain(cp.frontend)
    covered = sum(m.length for m in first + later)
    assert covered + cp.state.encrypted_bytes["F"] == len(fed)
    assert cp.state.encrypted_from["F"] == covered


def test_ssl_answer_before_the_client_hello_is_accounted() -> None:
    """In capture order ('S' first) every byte is in a message or counted as encrypted."""
    cp = ConnectionParser()
    cp.frontend.receive_data(SSL_REQUEST)
    assert [type(m) for m in drain(cp.frontend)] == [SSLRequest]
    cp.backend.receive_data(b"S")
    assert [type(m) for m in drain(cp.backend)] == [SSLResponse]
    cp.frontend.receive_data(CLIENT_HELLO)
    cp.frontend.finish()
    assert drain(cp.frontend) == []
    assert cp.state.encrypted_from["F"] == 8
    assert cp.state.encrypted_bytes["F"] == len(CLIENT_HELLO)


def test_where_decoding_resumes_does_not_depend_on_chunks() -> None:
    """Garbage, a CommandComplete, then a ReadyForQuery with a bad status byte (0x1e)."""
    stream = b"\x04C\x00\x00\x00\rUPDATE 1\x00Z\x00\x00\x00\x05\x1e"

    def outline(chunks: list[bytes]) -> list[tuple[str, int, int]]:
        p = StreamParser("B", SessionState())
        msgs: list[Message] = []
        for c in chunks:
            p.receive_data(c)
            msgs += drain(p)
        p.finish()
        msgs += drain(p)
        return [(m.name, m.offset, m.end) for m in msgs]

    whole = outline([stream])
    assert outline([stream[:19], stream[19:]]) == whole
    assert outline([stream[i : i + 1] for i in range(len(stream))]) == whole


def test_a_byte_after_a_long_skip_is_not_counted_twice_when_tls_starts() -> None:
    """SSLRequest, 65,660 bytes missing (a chunk of skipped bytes is reported at 64 KiB),
    one more byte, then the 'S' answer: that byte is encrypted, not also skipped."""
    cp = ConnectionParser()
    f = cp.frontend
    f.receive_data(SSL_REQUEST)
    assert [type(m) for m in drain(f)] == [SSLRequest]
    f.receive_gap(268)
    for _ in range(122):
        f.receive_gap(536)
    f.receive_data(b"=")
    skipped = drain(f)
    assert [(m.offset, m.end) for m in skipped] == [(8, 65668)]
    cp.backend.receive_data(b"S")
    assert [type(m) for m in drain(cp.backend)] == [SSLResponse]
    f.finish()
    assert drain(f) == [] and drain(f) == []
    assert (cp.state.encrypted_from["F"], cp.state.encrypted_bytes["F"]) == (65668, 1)
    assert f.offset == 8 + 65660 + 1
