"""LiveCapture against the real PostgreSQL server.

The server is taken from env PGWIRE_TEST_DSN (default
postgresql://postgres@127.0.0.1:5432/postgres). When it cannot be reached
these tests are skipped, or fail when env CI=true.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from pgwire_inspect.capture import TCP_FIN, LiveCapture, decode_frame
from pgwire_inspect.capture.sniff import _pick_interface
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.reassembly import Reassembler, StreamData, StreamEnd, StreamGap

DSN = os.environ.get("PGWIRE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_params = psycopg2.extensions.parse_dsn(DSN)
HOST = _params.get("host", "127.0.0.1")
PORT = int(_params.get("port", 5432))


def _connect() -> Any:
    try:
        return psycopg2.connect(DSN, sslmode="disable", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {DSN} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {DSN} is unreachable: {exc}")


@pytest.fixture(scope="module")
def server() -> None:
    _connect().close()


@pytest.fixture
def capture(server: None) -> Iterator[LiveCapture]:
    cap = LiveCapture(HOST, PORT)
    try:
        cap.start()
    except CaptureError as exc:
        if "needs root" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(str(exc))
        raise
    yield cap
    cap.stop()


def client_port(conn: Any) -> int:
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def streams(cap: LiveCapture, port: int) -> tuple[bytes, bytes, list[Any]]:
    """Reassemble the connection from ``port``: (F bytes, B bytes, all its events)."""
    r = Reassembler([PORT])
    events: list[Any] = []
    for fr in cap.frames():
        seg = decode_frame(fr)
        assert seg is not None  # only TCP to or from the server is kept
        assert PORT in (seg.sport, seg.dport)
        assert seg.src in cap.addresses or seg.dst in cap.addresses
        if port in (seg.sport, seg.dport):
            events += r.feed(seg)
    events += r.finish()
    f = b"".join(e.data for e in events if isinstance(e, StreamData) and e.direction == "F")
    b = b"".join(e.data for e in events if isinstance(e, StreamData) and e.direction == "B")
    return f, b, events


def test_select_1_on_the_wire(capture: LiveCapture) -> None:
    t0 = time.time()
    conn = _connect()
    port = client_port(conn)
    cur = conn.cursor()
    cur.execute("select 1")
    assert cur.fetchall() == [(1,)]
    conn.close()
    assert capture.wait_for_close(port, timeout=10.0)
    t1 = time.time()

    frames = capture.frames()
    assert [f.no for f in frames] == list(range(1, len(frames) + 1))
    assert all(f.linktype == capture.linktype == 1 for f in frames)  # lo: Ethernet, zero MACs
    assert all(t0 - 1 <= f.ts <= t1 + 1 for f in frames)

    segs = [s for s in map(decode_frame, frames) if s is not None and port in (s.sport, s.dport)]
    if capture.iface == "lo":
        # Linux loopback: Ethernet headers with zero MAC addresses, and every
        # packet seen twice (going out and coming in); both copies are kept.
        assert all(f.data[:12] == bytes(12) for f in frames)
        copies: dict[tuple[int, int, int, bytes], int] = {}
        for s in segs:
            if s.payload:  # the last packets may still be on their way in
                key = (s.sport, s.seq, s.flags, s.payload)
                copies[key] = copies.get(key, 0) + 1
        assert len(copies) >= 6 and set(copies.values()) == {2}
    assert any(b"user\x00postgres\x00" in s.payload for s in segs if s.dport == PORT)
    fins = {("F" if s.dport == PORT else "B") for s in segs if s.flags & TCP_FIN}
    assert fins == {"F", "B"}

    f, b, events = streams(capture, port)
    assert f[4:8] == b"\x00\x03\x00\x00"  # StartupMessage, protocol 3.0
    assert b"Q\x00\x00\x00\rselect 1\x00" in f
    assert f.endswith(b"X\x00\x00\x00\x04")  # Terminate
    assert b"C\x00\x00\x00\rSELECT 1\x00" in b  # CommandComplete
    assert not [e for e in events if isinstance(e, StreamGap)]
    ends = {(e.direction, e.reason) for e in events if isinstance(e, StreamEnd)}
    assert ends == {("F", "FIN"), ("B", "FIN")}


def test_large_result_is_not_dropped(capture: LiveCapture) -> None:
    conn = _connect()
    port = client_port(conn)
    cur = conn.cursor()
    cur.execute("select g, 'row ' || g from generate_series(1, 100000) g")
    assert len(cur.fetchall()) == 100000
    conn.close()
    assert capture.wait_for_close(port, timeout=20.0)
    _f, b, events = streams(capture, port)
    assert not [e for e in events if isinstance(e, StreamGap)]
    assert b.count(b"D\x00\x00\x00") >= 100000  # DataRow messages
    assert b"C\x00\x00\x00\x12SELECT 100000\x00" in b


def test_other_traffic_is_not_kept(capture: LiveCapture) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            client.sendall(b"not postgres")
            assert peer.recv(100) == b"not postgres"
            peer.close()
    conn = _connect()
    port = client_port(conn)
    conn.close()
    assert capture.wait_for_close(port, timeout=10.0)
    segs = [decode_frame(f) for f in capture.frames()]
    assert segs
    assert all(s is not None and PORT in (s.sport, s.dport) for s in segs)
    assert not any(b"not postgres" in s.payload for s in segs if s is not None)


def test_wait_for_close_times_out(capture: LiveCapture) -> None:
    start = time.monotonic()
    assert capture.wait_for_close(1, timeout=0.3) is False
    assert 0.25 <= time.monotonic() - start < 5


def test_stop_is_idempotent_and_keeps_frames() -> None:
    with LiveCapture(HOST, PORT) as cap:
        conn = _connect()
        port = client_port(conn)
        conn.close()
        assert cap.wait_for_close(port, timeout=10.0)
    kept = cap.frames()
    assert kept
    cap.stop()
    cap.stop()
    assert cap.frames() == kept
    assert cap.wait_for_close(port, timeout=0.1)  # closes seen before stop still count
    assert cap.wait_for_close(port + 1, timeout=5.0) is False  # stopped: no waiting


def test_bad_interface_and_host() -> None:
    with pytest.raises(CaptureError, match=r"^cannot capture on interface 'nosuchif0': "):
        LiveCapture(HOST, PORT, iface="nosuchif0").start()
    with pytest.raises(CaptureError, match=r"^cannot resolve host 'no-such-host\.invalid': "):
        LiveCapture("no-such-host.invalid", PORT)


def test_interface_choice() -> None:
    import scapy.route  # noqa: F401
    from scapy.config import conf

    assert _pick_interface(conf, "127.0.0.1") == conf.loopback_name
    assert _pick_interface(conf, "127.3.4.5") == conf.loopback_name
    assert _pick_interface(conf, "::1") == conf.loopback_name
    own = [
        a
        for name, iface in conf.ifaces.items()
        if name != conf.loopback_name
        for a in iface.ips.get(4, [])
    ]
    for addr in own:  # this machine's own addresses are reached over loopback
        assert _pick_interface(conf, addr) == conf.loopback_name


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_without_privileges() -> None:
    code = (
        "import importlib, os\n"
        "for m in ('scapy.arch', 'scapy.layers.l2', 'scapy.route', 'scapy.route6'):\n"
        "    importlib.import_module(m)\n"
        "from pgwire_inspect.capture import LiveCapture\n"
        "from pgwire_inspect.errors import CaptureError\n"
        f"cap = LiveCapture({HOST!r}, {PORT})\n"
        "os.setgid(65534)\n"
        "os.setuid(65534)\n"
        "try:\n"
        "    cap.start()\n"
        "except CaptureError as exc:\n"
        "    print(exc)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert done.stdout.startswith("live capture needs root or CAP_NET_RAW: "), done
    assert done.stderr == ""
