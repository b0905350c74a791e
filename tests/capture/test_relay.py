"""RelayCapture against the real PostgreSQL server, and against local sockets.

The server is taken from env PGWIRE_TEST_DSN (default
postgresql://postgres@127.0.0.1:5432/postgres) through the ``pg_dsn``
fixture: when it cannot be reached these tests are skipped, or fail when
env CI=true. The recorded frames go through the project's own decoder
(decode_frame, Reassembler, the protocol parser) and through scapy as a
second opinion on the checksums.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from sqlalchemy.engine import make_url

from pgwire_inspect.capture import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    Frame,
    decode_frame,
    open_capture,
    write_pcap,
)
from pgwire_inspect.capture.relay import MAX_SEGMENT, RelayCapture, segments
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.protocol import NEED_DATA, ConnectionParser
from pgwire_inspect.reassembly import (
    ConnectionStarted,
    Event,
    Reassembler,
    StreamData,
    StreamEnd,
    StreamGap,
)


@pytest.fixture
def server(pg_dsn: str) -> tuple[str, int, str, str]:
    """(host, port, user, database) of the test server."""
    url = make_url(pg_dsn)
    return (
        url.host or "127.0.0.1",
        url.port or 5432,
        url.username or "postgres",
        url.database or "postgres",
    )


@pytest.fixture
def relay(server: tuple[str, int, str, str]) -> Iterator[RelayCapture]:
    with RelayCapture(server[0], server[1]) as cap:
        yield cap


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("RelayCapture")]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def local_port(sock_or_conn: Any) -> int:
    sock = socket.socket(fileno=os.dup(sock_or_conn.fileno()))
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def events_of(frames: list[Frame], port: int) -> list[Event]:
    r = Reassembler()
    events: list[Event] = []
    for frame in frames:
        seg = decode_frame(frame)
        assert seg is not None
        if port in (seg.sport, seg.dport):
            events += r.feed(seg)
    return events + r.finish()


def stream(events: list[Event], direction: str) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, StreamData) and e.direction == direction
    )


def messages(events: list[Event]) -> dict[str, list[str]]:
    """Message names per direction, parsed in the order the bytes were relayed."""
    parser = ConnectionParser()
    out: dict[str, list[str]] = {"F": [], "B": []}
    for e in events:
        if isinstance(e, StreamData):
            p = parser.parser(e.direction)
            p.receive_data(e.data)
            while (m := p.next_message()) is not NEED_DATA:
                out[e.direction].append(type(m).__name__)
    return out


def startup(user: str, database: str) -> bytes:
    """StartupMessage, protocol 3.0 (PostgreSQL docs, Message Formats)."""
    body = struct.pack("!I", 196608) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", 4 + len(body)) + body


def query(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", 4 + len(body)) + body


TERMINATE = b"X\x00\x00\x00\x04"


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# -- against PostgreSQL -----------------------------------------------------------------


def test_psycopg2_select_1(relay: RelayCapture, server: tuple[str, int, str, str]) -> None:
    _host, port, user, database = server
    t0 = time.time()
    conn = psycopg2.connect(
        host=relay.listen_host, port=relay.listen_port, user=user, dbname=database,
        sslmode="disable", connect_timeout=5,
    )  # fmt: skip
    cport = local_port(conn)
    cur = conn.cursor()
    cur.execute("select 1")
    assert cur.fetchall() == [(1,)]
    conn.close()
    assert relay.wait_for_close(cport, timeout=10.0)
    t1 = time.time()

    frames = relay.frames()
    assert [f.no for f in frames] == list(range(1, len(frames) + 1))
    assert all(f.linktype == 1 and f.wirelen == len(f.data) for f in frames)
    assert all(t0 <= f.ts <= t1 for f in frames)
    segs = [decode_frame(f) for f in frames]
    assert all(s is not None for s in segs)
    ends = {((s.src, s.sport), (s.dst, s.dport)) for s in segs if s is not None}
    client, srv = ("127.0.0.1", cport), (relay.addresses[0], port)
    assert ends == {(client, srv), (srv, client)}
    flags = [s.flags for s in segs if s is not None]
    assert flags[:3] == [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK]

    events = events_of(frames, cport)
    assert isinstance(events[0], ConnectionStarted) and events[0].handshake
    assert events[0].client == client and events[0].server == srv
    assert not [e for e in events if isinstance(e, StreamGap)]
    assert {(e.direction, e.reason) for e in events if isinstance(e, StreamEnd)} == {
        ("F", "FIN"),
        ("B", "FIN"),
    }
    f, b = stream(events, "F"), stream(events, "B")
    assert (len(f), len(b)) == relay.relayed(cport)
    assert f.startswith(startup(user, database)[:8]) and f.endswith(TERMINATE)
    assert query("BEGIN") + query("select 1") in f  # psycopg2 opens a transaction
    names = messages(events)
    assert names["F"] == ["StartupMessage", "Query", "Query", "Terminate"]
    assert "AuthenticationOk" in names["B"] and "MalformedMessage" not in names["B"]
    assert names["B"][-5:] == [
        "ReadyForQuery", "RowDescription", "DataRow", "CommandComplete", "ReadyForQuery",
    ]  # fmt: skip


def test_exact_bytes_and_sequence_numbers(
    relay: RelayCapture, server: tuple[str, int, str, str]
) -> None:
    _host, _port, user, database = server
    sent = startup(user, database) + query("select 1 as one, 'two' as two") + TERMINATE
    with socket.create_connection((relay.listen_host, relay.listen_port)) as sock:
        cport = local_port(sock)
        sock.sendall(sent)
        received = recv_all(sock)
    assert relay.wait_for_close(cport, timeout=10.0)
    events = events_of(relay.frames(), cport)
    assert stream(events, "F") == sent
    assert stream(events, "B") == received
    assert relay.relayed(cport) == (len(sent), len(received))

    # Every segment continues its direction's sequence; ACKs never run ahead.
    segs = [s for s in map(decode_frame, relay.frames()) if s is not None]
    next_seq: dict[int, int] = {}
    for s in segs:
        if s.flags & TCP_SYN:
            next_seq[s.sport] = (s.seq + 1) & 0xFFFFFFFF
            continue
        assert s.seq == next_seq[s.sport]
        if s.flags & TCP_ACK:
            assert s.ack == next_seq[s.dport]
        next_seq[s.sport] = (s.seq + len(s.payload) + (1 if s.flags & TCP_FIN else 0)) & 0xFFFFFFFF
        if s.payload:
            assert s.flags == TCP_PSH | TCP_ACK


def test_checksums_agree_with_scapy(relay: RelayCapture, server: tuple[str, int, str, str]) -> None:
    _host, _port, user, database = server
    with socket.create_connection((relay.listen_host, relay.listen_port)) as sock:
        cport = local_port(sock)
        sock.sendall(startup(user, database) + query("select 'x'") + TERMINATE)
        recv_all(sock)
    assert relay.wait_for_close(cport, timeout=10.0)
    for frame in relay.frames():
        pkt = Ether(frame.data)
        ip_sum, tcp_sum = pkt[IP].chksum, pkt[TCP].chksum
        del pkt[IP].chksum, pkt[TCP].chksum
        again = Ether(bytes(pkt))
        assert (ip_sum, tcp_sum) == (again[IP].chksum, again[TCP].chksum)
        assert bytes(again) == frame.data


def test_segments_split_one_read() -> None:
    data = bytes(range(256)) * 1024  # 262,144 bytes: one full read of the relay
    pieces = segments(data)
    assert [len(p) for p in pieces] == [MAX_SEGMENT] * 4 + [len(data) - 4 * MAX_SEGMENT]
    assert b"".join(pieces) == data
    assert segments(b"x" * MAX_SEGMENT) == [b"x" * MAX_SEGMENT]
    assert segments(b"") == []


def test_large_results_fit_frames(relay: RelayCapture, server: tuple[str, int, str, str]) -> None:
    # How much one read returns depends on timing; whatever it is, each frame
    # must fit an IP datagram and the stream must come out whole.
    _host, _port, user, database = server
    sent = startup(user, database) + query("select repeat('x', 300000)") + TERMINATE
    with socket.create_connection((relay.listen_host, relay.listen_port)) as sock:
        cport = local_port(sock)
        sock.sendall(sent)
        received = recv_all(sock)
    assert relay.wait_for_close(cport, timeout=10.0)
    frames = relay.frames()
    segs = [s for s in map(decode_frame, frames) if s is not None]
    assert max(len(s.payload) for s in segs) <= MAX_SEGMENT
    assert all(len(f.data) - 14 <= 65535 for f in frames)
    events = events_of(frames, cport)
    assert stream(events, "B") == received and b"x" * 300000 in received
    assert not [e for e in events if isinstance(e, StreamGap)]


def test_pcap_round_trip(
    relay: RelayCapture, server: tuple[str, int, str, str], tmp_path: Path
) -> None:
    _host, _port, user, database = server
    with socket.create_connection((relay.listen_host, relay.listen_port)) as sock:
        cport = local_port(sock)
        sock.sendall(startup(user, database) + query("select now()") + TERMINATE)
        recv_all(sock)
    assert relay.wait_for_close(cport, timeout=10.0)
    frames = relay.frames()
    path = tmp_path / "relay.pcap"
    assert write_pcap(path, frames) == len(frames)
    back = list(open_capture(path))
    assert [(f.no, f.linktype, f.data, f.wirelen) for f in back] == [
        (f.no, f.linktype, f.data, f.wirelen) for f in frames
    ]
    assert [f.ts for f in back] == pytest.approx([f.ts for f in frames], abs=1e-6)
    assert stream(events_of(back, cport), "F") == stream(events_of(frames, cport), "F")


def test_client_reset(relay: RelayCapture, server: tuple[str, int, str, str]) -> None:
    _host, _port, user, database = server
    sock = socket.create_connection((relay.listen_host, relay.listen_port))
    cport = local_port(sock)
    sock.sendall(startup(user, database))
    time.sleep(0.2)  # the server answers
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    assert relay.wait_for_close(cport, timeout=10.0)
    segs = [s for s in map(decode_frame, relay.frames()) if s is not None]
    assert segs[-1].flags == TCP_RST | TCP_ACK and segs[-1].sport == cport
    events = events_of(relay.frames(), cport)
    assert {(e.direction, e.reason) for e in events if isinstance(e, StreamEnd)} == {
        ("F", "RST"),
        ("B", "RST"),
    }


def test_stop_ends_threads_and_closes_sockets(server: tuple[str, int, str, str]) -> None:
    before_fds, before_threads = open_fds(), relay_threads()
    assert before_threads == []
    relay = RelayCapture(server[0], server[1]).start()
    idle = socket.create_connection((relay.listen_host, relay.listen_port))
    cport = local_port(idle)
    deadline = time.monotonic() + 5
    while (len(relay.frames()), len(relay_threads())) != (3, 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(relay.frames()) == 3  # the handshake, then nothing: an idle connection
    assert len(relay_threads()) == 3  # accepting, and both directions of the connection
    start = time.monotonic()
    relay.stop()
    assert time.monotonic() - start < 2
    assert relay_threads() == []
    assert idle.recv(10) == b""  # the relay closed its side
    idle.close()
    assert open_fds() == before_fds
    assert relay.wait_for_close(cport, timeout=0.1) is False  # stopped: no waiting
    kept = relay.frames()
    relay.stop()
    assert relay.frames() == kept


# -- without PostgreSQL ---------------------------------------------------------------------


def test_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with RelayCapture("127.0.0.1", closed_port) as relay:
        with socket.create_connection((relay.listen_host, relay.listen_port)) as sock:
            cport = local_port(sock)
            with contextlib.suppress(ConnectionResetError):  # the relay resets it
                assert sock.recv(10) == b""
        assert relay.wait_for_close(cport, timeout=5.0)
    segs = [decode_frame(f) for f in relay.frames()]
    assert [(s.sport, s.flags) for s in segs if s is not None] == [
        (cport, TCP_SYN),
        (closed_port, TCP_RST | TCP_ACK),
    ]
    assert len(relay.problems) == 1
    assert relay.problems[0].startswith(
        f"cannot connect to 127.0.0.1:{closed_port} for 127.0.0.1:{cport}: "
    )


def test_ipv6() -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")

    def echo() -> None:
        peer, _ = listener.accept()
        with peer:
            while data := peer.recv(65536):
                peer.sendall(data.upper())

    listener.settimeout(10)
    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    with RelayCapture("::1", port) as relay:
        assert relay.listen_host == "::1"
        with socket.create_connection((relay.listen_host, relay.listen_port)) as sock:
            cport = local_port(sock)
            sock.sendall(b"hello relay")
            assert sock.recv(100) == b"HELLO RELAY"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""
        assert relay.wait_for_close(cport, timeout=5.0)
    thread.join()
    listener.close()
    frames = relay.frames()
    assert all(f.data[12:14] == b"\x86\xdd" for f in frames)
    events = events_of(frames, cport)
    assert stream(events, "F") == b"hello relay" and stream(events, "B") == b"HELLO RELAY"
    for frame in frames:
        pkt = Ether(frame.data)
        tcp_sum = pkt[TCP].chksum
        del pkt[TCP].chksum
        assert Ether(bytes(pkt))[TCP].chksum == tcp_sum
        assert pkt[IPv6].plen == len(frame.data) - 54


def test_bad_host() -> None:
    with pytest.raises(CaptureError, match=r"^cannot resolve host 'no-such-host\.invalid': "):
        RelayCapture("no-such-host.invalid", 5432)
