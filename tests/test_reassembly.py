"""Reassembler: built segments for each TCP situation, and the recorded Zeek captures."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwire_inspect.capture import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    TcpSegment,
    decode_frame,
    open_capture,
)
from pgwire_inspect.reassembly import (
    MAX_OUT_OF_ORDER,
    ConnectionStarted,
    Event,
    Reassembler,
    StreamData,
    StreamEnd,
    StreamGap,
)

ZEEK = Path(__file__).resolve().parents[1].parent / "shared" / "captures" / "zeek"

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 5432)
WRAP = 1 << 32


class Wire:
    """Makes segments between CLIENT and SERVER, numbering frames 1, 2, ..."""

    def __init__(self, client: tuple[str, int] = CLIENT, server: tuple[str, int] = SERVER) -> None:
        self.client = client
        self.server = server
        self.frame = 0

    def seg(
        self,
        direction: str,
        seq: int,
        payload: bytes = b"",
        flags: int = TCP_ACK,
        ack: int = 0,
        missing: int = 0,
    ) -> TcpSegment:
        self.frame += 1
        src, dst = (self.client, self.server) if direction == "F" else (self.server, self.client)
        return TcpSegment(
            self.frame, 1000.0 + self.frame, src[0], src[1], dst[0], dst[1],
            seq % WRAP, ack % WRAP, flags, payload, 54, missing,
        )  # fmt: skip

    def data(self, direction: str, pieces: Iterable[tuple[int, bytes]]) -> list[TcpSegment]:
        """Segments from (seq, payload) pairs."""
        return [self.seg(direction, seq, p, TCP_ACK | TCP_PSH) for seq, p in pieces]

    def handshake(self, c_isn: int, s_isn: int) -> list[TcpSegment]:
        return [
            self.seg("F", c_isn, flags=TCP_SYN),
            self.seg("B", s_isn, flags=TCP_SYN | TCP_ACK, ack=c_isn + 1),
            self.seg("F", c_isn + 1, ack=s_isn + 1),
        ]


def run(segs: Iterable[TcpSegment], server_ports: Sequence[int] | None = None) -> list[Event]:
    r = Reassembler(server_ports)
    events: list[Event] = []
    for s in segs:
        events += r.feed(s)
    events += r.finish()
    check_tiling(events)
    return events


def check_tiling(events: list[Event]) -> None:
    """Each direction: data and gaps tile the stream from 0; one StreamEnd, last."""
    nxt: dict[tuple[int, str], int] = {}
    ended: set[tuple[int, str]] = set()
    started: set[int] = set()
    for e in events:
        if isinstance(e, ConnectionStarted):
            assert e.conn not in started
            started.add(e.conn)
            nxt[e.conn, "F"] = nxt[e.conn, "B"] = 0
            continue
        key = (e.conn, e.direction)
        assert e.conn in started and key not in ended, e
        if isinstance(e, StreamData):
            assert e.offset == nxt[key] and e.data, e
            nxt[key] += len(e.data)
        elif isinstance(e, StreamGap):
            assert e.offset == nxt[key] and e.length > 0, e
            nxt[key] += e.length
        else:
            ended.add(key)
    assert ended == set(nxt), "every direction ends exactly once"


def stream(events: list[Event], conn: int = 0, direction: str = "F") -> bytes:
    return b"".join(
        e.data
        for e in events
        if isinstance(e, StreamData) and e.conn == conn and e.direction == direction
    )


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def closing(w: Wire, c_next: int, s_next: int) -> list[TcpSegment]:
    return [
        w.seg("F", c_next, flags=TCP_FIN | TCP_ACK, ack=s_next),
        w.seg("B", s_next, flags=TCP_FIN | TCP_ACK, ack=c_next + 1),
        w.seg("F", c_next + 1, ack=s_next + 1),
    ]


# -- the basic cases ----------------------------------------------------------


def test_in_order_conversation() -> None:
    w = Wire()
    segs = w.handshake(100, 9000)
    segs += w.data("F", [(101, b"hello "), (107, b"server")])
    segs += w.data("B", [(9001, b"hi client")])
    segs += closing(w, 113, 9010)
    events = run(segs)
    assert events == [
        ConnectionStarted(0, CLIENT, SERVER, 1, 1001.0, True),
        StreamData(0, "F", 0, b"hello ", 4, 1004.0),
        StreamData(0, "F", 6, b"server", 5, 1005.0),
        StreamData(0, "B", 0, b"hi client", 6, 1006.0),
        StreamEnd(0, "F", "FIN", 7, 1007.0),
        StreamEnd(0, "B", "FIN", 8, 1008.0),
    ]
    assert "hello" in repr(events[1]) and "offset=0" in repr(events[1])


def test_every_segment_twice_like_live_loopback() -> None:
    w = Wire()
    once = w.handshake(5, 7) + w.data("F", [(6, b"abc"), (9, b"def")]) + closing(w, 12, 8)
    twice = [s for s in once for _ in (0, 1)]
    events = run(twice)
    assert stream(events) == b"abcdef"
    assert kinds(events) == kinds(run(once))
    assert [e.frame for e in events if isinstance(e, StreamData)] == [4, 5]  # first copies


def test_retransmission_overlapping_keeps_first_bytes() -> None:
    w = Wire()
    segs = w.handshake(0, 0)
    segs += w.data("F", [(1, b"AAAA"), (3, b"xxBBBB"), (1, b"yyyyyyyyyyCC")])
    events = run(segs)
    # Offsets 2-3 of the second segment and 0-7 of the third were seen before.
    assert stream(events) == b"AAAABBBByyCC"
    datas = [e for e in events if isinstance(e, StreamData)]
    assert [(d.offset, d.data, d.frame) for d in datas] == [
        (0, b"AAAA", 4),
        (4, b"BBBB", 5),
        (8, b"yyCC", 6),
    ]


def test_reordering_waits_for_the_hole() -> None:
    w = Wire()
    segs = w.handshake(1000, 0)
    a, b, c = w.data("F", [(1001, b"one "), (1005, b"two "), (1009, b"three")])
    r = Reassembler()
    for s in segs:
        r.feed(s)
    assert r.feed(c) == []  # beyond a hole: buffered
    assert r.feed(b) == []
    out = r.feed(a)
    assert [(e.offset, e.data) for e in out if isinstance(e, StreamData)] == [
        (0, b"one "),
        (4, b"two "),
        (8, b"three"),
    ]


def test_out_of_order_overlaps_keep_first_received() -> None:
    w = Wire()
    segs = w.handshake(0, 0)
    # 10..14 arrives first, then 8..16 (overlapping it), then 1..10 fills the hole.
    segs += w.data("F", [(11, b"KEEP!"), (9, b"--xxxxx++"), (1, b"abcdefgh")])
    assert stream(run(segs)) == b"abcdefgh--KEEP!++"


def test_sequence_wraparound() -> None:
    isn = WRAP - 6
    w = Wire()
    segs = w.handshake(isn, WRAP - 1)  # the server's first data byte has seq 0
    segs += w.data("F", [(isn + 1, b"abcd"), (isn + 5, b"efgh"), (isn + 9, b"ijkl")])
    segs += w.data("B", [(0, b"XY"), (2, b"Z")])
    segs += closing(w, isn + 13, 3)
    events = run(segs)
    assert stream(events, 0, "F") == b"abcdefghijkl"
    assert stream(events, 0, "B") == b"XYZ"
    assert [e.offset for e in events if isinstance(e, StreamData) and e.direction == "F"] == [
        0,
        4,
        8,
    ]


def test_wraparound_with_reordering_and_a_long_stream() -> None:
    # Over 4 GiB of sequence space would take too long; cross the wrap twice
    # by starting just before it and jumping with gaps.
    w = Wire()
    isn = WRAP - 100
    segs = w.handshake(isn, 0)
    pieces = [(isn + 1 + i * 50, bytes([65 + i]) * 50) for i in range(6)]
    random.Random(3).shuffle(pieces)
    segs += w.data("F", pieces)
    assert stream(run(segs)) == b"".join(bytes([65 + i]) * 50 for i in range(6))


def test_gap_reported_at_fin_with_offset_and_length() -> None:
    w = Wire()
    segs = w.handshake(0, 0)
    segs += w.data("F", [(1, b"12345"), (16, b"after")])  # bytes 5..14 never captured
    segs.append(w.seg("F", 21, flags=TCP_FIN | TCP_ACK))
    events = run(segs)
    gap = [e for e in events if isinstance(e, StreamGap)]
    assert gap == [StreamGap(0, "F", 5, 10, 4, 5)]
    assert stream(events) == b"12345after"
    assert StreamEnd(0, "F", "FIN", 6, 1006.0) in events


def test_gap_before_fin_with_nothing_after() -> None:
    w = Wire()
    segs = w.handshake(0, 0) + w.data("F", [(1, b"ab")])
    segs.append(w.seg("F", 10, flags=TCP_FIN | TCP_ACK))  # 7 bytes before the FIN missing
    events = run(segs)
    assert [e for e in events if isinstance(e, StreamGap)] == [StreamGap(0, "F", 2, 7, 4, None)]


def test_gap_declared_when_the_buffer_is_full() -> None:
    w = Wire()
    segs = w.handshake(0, 0) + w.data("F", [(1, b"start")])
    chunk = b"z" * 65536
    seq = 1 + 5 + 100  # a 100-byte hole after "start"
    r = Reassembler()
    events: list[Event] = []
    for s in segs:
        events += r.feed(s)
    buffered = 0
    while buffered <= MAX_OUT_OF_ORDER:
        out = r.feed(w.seg("F", seq, chunk, TCP_ACK))
        seq += len(chunk)
        buffered += len(chunk)
        events += out
        if buffered <= MAX_OUT_OF_ORDER:
            assert out == [], buffered
    gaps = [e for e in events if isinstance(e, StreamGap)]
    assert gaps == [StreamGap(0, "F", 5, 100, 4, 5)]
    assert len(stream(events)) == 5 + buffered


def test_finish_flushes_buffered_data_and_acked_bytes() -> None:
    w = Wire()
    segs = w.handshake(0, 0)
    segs += w.data("B", [(1, b"first"), (21, b"later")])  # hole at 5..19
    segs.append(w.seg("F", 1, ack=40))  # the client acknowledged 39 server bytes
    events = run(segs)
    assert [e for e in events if isinstance(e, StreamGap)] == [
        StreamGap(0, "B", 5, 15, 4, 5),
        StreamGap(0, "B", 25, 14, 5, None),
    ]
    ends = [e for e in events if isinstance(e, StreamEnd)]
    assert ends == [
        StreamEnd(0, "F", "end of capture", None, None),
        StreamEnd(0, "B", "end of capture", None, None),
    ]
    assert events[-1] == ends[-1]


def test_snaplen_cut_is_a_gap_at_once() -> None:
    w = Wire()
    segs = w.handshake(0, 0)
    segs.append(w.seg("B", 1, b"D" * 100, TCP_ACK, missing=1400))
    segs.append(w.seg("B", 1501, b"E" * 100, TCP_ACK, missing=50))
    r = Reassembler()
    for s in segs[:3]:
        r.feed(s)
    assert r.feed(segs[3]) == [
        StreamData(0, "B", 0, b"D" * 100, 4, 1004.0),
        StreamGap(0, "B", 100, 1400, 4, None),
    ]
    assert r.feed(segs[4]) == [
        StreamData(0, "B", 1500, b"E" * 100, 5, 1005.0),
        StreamGap(0, "B", 1600, 50, 5, None),
    ]


def test_rst_ends_both_directions() -> None:
    w = Wire()
    segs = w.handshake(0, 0) + w.data("F", [(1, b"Q")])
    segs.append(w.seg("B", 1, flags=TCP_RST))
    segs += w.data("F", [(2, b"late")])  # after the reset: ignored
    events = run(segs)
    assert events[-2:] == [
        StreamEnd(0, "B", "RST", 5, 1005.0),
        StreamEnd(0, "F", "RST", 5, 1005.0),
    ]
    assert stream(events) == b"Q"


# -- connections --------------------------------------------------------------


def test_new_connection_on_a_reused_four_tuple() -> None:
    w = Wire()
    segs = w.handshake(100, 500) + w.data("F", [(101, b"first")]) + closing(w, 106, 501)
    segs += w.handshake(7000, 8000) + w.data("F", [(7001, b"second")])
    segs.append(w.seg("F", 7007, flags=TCP_RST))
    events = run(segs)
    starts = [e for e in events if isinstance(e, ConnectionStarted)]
    assert [(s.conn, s.frame, s.handshake) for s in starts] == [(0, 1, True), (1, 8, True)]
    assert stream(events, 0) == b"first"
    assert stream(events, 1) == b"second"


def test_reused_port_without_a_seen_close() -> None:
    w = Wire()
    segs = w.handshake(100, 500) + w.data("F", [(101, b"old")])
    segs += w.handshake(9100, 9500) + w.data("F", [(9101, b"new")])
    events = run(segs)
    assert stream(events, 0) == b"old" and stream(events, 1) == b"new"
    ends0 = [e for e in events if isinstance(e, StreamEnd) and e.conn == 0]
    assert {e.reason for e in ends0} == {"end of capture"}
    assert events.index(ends0[-1]) < events.index(
        next(e for e in events if isinstance(e, ConnectionStarted) and e.conn == 1)
    )


def test_retransmitted_syn_is_the_same_connection() -> None:
    w = Wire()
    segs = [w.seg("F", 50, flags=TCP_SYN), *w.handshake(50, 80)]
    segs += w.data("F", [(51, b"x")])
    events = run(segs)
    assert sum(isinstance(e, ConnectionStarted) for e in events) == 1


def test_mid_connection_start() -> None:
    w = Wire()
    # The capture starts with a server segment; the port decides who is the client.
    segs = w.data("B", [(77777, b"tail of a result")])
    segs += w.data("F", [(123, b"Q..."), (127, b"more")])
    segs += w.data("B", [(77777 - 10, b"0123456789")])  # from before the first byte seen
    events = run(segs, server_ports=[5432])
    assert events[0] == ConnectionStarted(0, CLIENT, SERVER, 1, 1001.0, False)
    assert stream(events, 0, "B") == b"tail of a result"
    assert stream(events, 0, "F") == b"Q...more"
    without_ports = run(segs)  # then the lower port is taken as the server's
    first = without_ports[0]
    assert isinstance(first, ConnectionStarted) and first.server == SERVER


def test_syn_ack_first_makes_the_receiver_the_client() -> None:
    w = Wire()
    segs = [w.seg("B", 300, flags=TCP_SYN | TCP_ACK, ack=11)]
    segs += w.data("F", [(11, b"abc")])
    events = run(segs)
    assert events[0] == ConnectionStarted(0, CLIENT, SERVER, 1, 1001.0, False)
    assert [(e.offset, e.data) for e in events if isinstance(e, StreamData)] == [(0, b"abc")]


def test_data_on_the_syn() -> None:
    w = Wire()
    segs = [w.seg("F", 41, b"fast open", TCP_SYN)]
    segs += [w.seg("B", 0, flags=TCP_SYN | TCP_ACK, ack=51)]
    segs += w.data("F", [(51, b"!")])
    events = run(segs)
    assert [(e.offset, e.data) for e in events if isinstance(e, StreamData)] == [
        (0, b"fast open"),
        (9, b"!"),
    ]


def test_server_ports_filter_and_numbering() -> None:
    other = Wire(("10.0.0.1", 40001), ("10.0.0.3", 8080))
    pg = Wire(("10.0.0.1", 40002), SERVER)
    segs = other.handshake(0, 0) + pg.handshake(0, 0) + other.data("F", [(1, b"GET")])
    events = run(segs, server_ports=[5432])
    assert [e.conn for e in events if isinstance(e, ConnectionStarted)] == [0]
    everything = run(segs)
    assert [e.client[1] for e in everything if isinstance(e, ConnectionStarted)] == [40001, 40002]


def test_feed_after_finish() -> None:
    r = Reassembler()
    r.finish()
    assert r.finish() == []
    with pytest.raises(RuntimeError):
        r.feed(Wire().seg("F", 0))


# -- properties ---------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=400),
    cuts=st.lists(st.integers(1, 400), max_size=12),
    isn=st.one_of(st.integers(0, WRAP - 1), st.integers(WRAP - 300, WRAP - 1)),
    seed=st.integers(0, 1000),
)
def test_any_split_duplication_and_order(data: bytes, cuts: list[int], isn: int, seed: int) -> None:
    """No loss: whatever the segmentation, duplication, overlap and order, the bytes come out."""
    rng = random.Random(seed)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = list(itertools.pairwise(bounds))
    # Overlapping retransmissions of random ranges, with the same bytes.
    for _ in range(rng.randint(0, 4)):
        a = rng.randrange(len(data))
        pieces.append((a, rng.randint(a + 1, len(data))))
    pieces += rng.sample(pieces, k=min(len(pieces), rng.randint(0, 3)))  # duplicates
    rng.shuffle(pieces)
    w = Wire()
    segs = w.handshake(isn, 0)
    segs += w.data("F", [(isn + 1 + a, data[a:b]) for a, b in pieces])
    segs.append(w.seg("F", isn + 1 + len(data), flags=TCP_FIN | TCP_ACK))
    events = run(segs)
    assert stream(events) == data
    assert not [e for e in events if isinstance(e, StreamGap)]


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=2, max_size=300),
    lost=st.sets(st.integers(0, 9), max_size=4),
    seed=st.integers(0, 1000),
)
def test_losses_become_exact_gaps(data: bytes, lost: set[int], seed: int) -> None:
    """With some segments lost, data and gaps still tile the stream up to the FIN."""
    rng = random.Random(seed)
    n = 10
    size = -(-len(data) // n)
    pieces = [(i * size, min(len(data), (i + 1) * size)) for i in range(n) if i * size < len(data)]
    kept = [p for i, p in enumerate(pieces) if i not in lost]
    rng.shuffle(kept)
    w = Wire()
    segs = w.handshake(5, 0) + w.data("F", [(6 + a, data[a:b]) for a, b in kept])
    segs.append(w.seg("F", 6 + len(data), flags=TCP_FIN | TCP_ACK))
    events = run(segs)
    out = bytearray()
    for e in events:
        if isinstance(e, StreamData):
            out += e.data
        elif isinstance(e, StreamGap):
            out += b"\0" * e.length
    expected = bytearray(data)
    for i, (a, b) in enumerate(pieces):
        if i in lost:
            expected[a:b] = b"\0" * (b - a)
    assert out == expected


# -- recorded captures --------------------------------------------------------


def reassemble_file(name: str, server_ports: Sequence[int] | None = (5432,)) -> list[Event]:
    path = ZEEK / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    segs = [s for s in map(decode_frame, open_capture(path)) if s is not None]
    return run(segs, server_ports)


def test_psql_select_now() -> None:
    events = reassemble_file("psql-select-now.pcap")
    f, b = stream(events, 0, "F"), stream(events, 0, "B")
    assert f[:8] == (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")  # SSLRequest
    assert b[:1] == b"N"  # SSLResponse: no TLS
    length = int.from_bytes(f[8:12], "big")
    assert int.from_bytes(f[12:16], "big") == 196608  # StartupMessage, protocol 3.0
    assert b"user\x00" in f[16 : 8 + length]
    assert b"Q\x00\x00\x00\x11select now()\x00" in f
    assert f.endswith(b"X\x00\x00\x00\x04")  # Terminate
    assert b"C\x00\x00\x00\rSELECT 1\x00" in b
    assert [(e.direction, e.reason) for e in events if isinstance(e, StreamEnd)] == [
        ("F", "FIN"),
        ("B", "FIN"),
    ]
    assert not [e for e in events if isinstance(e, StreamGap)]


def test_no_sslrequest_capture_starts_with_the_startup_message() -> None:
    events = reassemble_file("psql-login-no-sslrequest.pcap")
    for conn in (0, 1):
        f = stream(events, conn, "F")
        assert int.from_bytes(f[:4], "big") == 76
        assert int.from_bytes(f[4:8], "big") == 196608


def test_every_recorded_capture_tiles_without_gaps() -> None:
    if not ZEEK.exists():
        pytest.skip("the Zeek captures are not present")
    for path in sorted(ZEEK.glob("*.pcap")):
        ports = (15432,) if "15432" in path.name else (5432,)
        events = reassemble_file(path.name, ports)  # run() checks the tiling
        assert not [e for e in events if isinstance(e, StreamGap)], path.name
        starts = [e for e in events if isinstance(e, ConnectionStarted)]
        assert starts and all(s.server[1] in ports for s in starts), path.name
    greenhouse = reassemble_file("greenhouse-app.pcap")
    assert sum(isinstance(e, ConnectionStarted) for e in greenhouse) == 2


def test_recorded_capture_shuffled_and_duplicated_gives_the_same_streams() -> None:
    events = reassemble_file("psql-create-insert-select-delete-drop.pcap")
    path = ZEEK / "psql-create-insert-select-delete-drop.pcap"
    segs = [s for s in map(decode_frame, open_capture(path)) if s is not None]
    # Keep the SYN and SYN+ACK first and the FINs last; shuffle and duplicate the rest.
    assert [s.flags & (TCP_SYN | TCP_ACK) for s in segs[:2]] == [TCP_SYN, TCP_SYN | TCP_ACK]
    head, body = segs[:2], [s for s in segs[2:] if not s.flags & TCP_FIN]
    tail = [s for s in segs[2:] if s.flags & TCP_FIN]
    rng = random.Random(7)
    body = body + rng.sample(body, len(body) // 2)
    rng.shuffle(body)
    shuffled = run(head + body + tail)
    for d in "FB":
        assert stream(shuffled, 0, d) == stream(events, 0, d)
