"""Capture without raw sockets: a recording TCP relay.

:class:`RelayCapture` listens on a free loopback port and relays every
connection made to it to the server, byte for byte, in both directions.
What it relays it records as the frames a packet capture of the same
connection would hold: Ethernet (zero MAC addresses, as Linux loopback
shows them) / IPv4 or IPv6 / TCP, with a three-way handshake, sequence
and acknowledgment numbers that count the relayed bytes, FIN or RST at the
end and correct checksums. The client's address and port are the real
client's, the server's the real server's; only the relay in between is
left out. It needs no root and no CAP_NET_RAW, and works where sniffing
cannot (containers, macOS, Windows, a remote server).

The frames are built with :mod:`struct`, like the headers
:func:`~pgwire_inspect.capture.links.decode_frame` reads.

Specs: RFC 9293 (TCP: header, sequence numbers, SYN and FIN each take one
sequence number, the checksum's pseudo-header), RFC 791 (IPv4), RFC 8200
(IPv6 and its pseudo-header), RFC 1071 (the checksum), IEEE 802.3.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pgwire_inspect.capture._model import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, Frame
from pgwire_inspect.capture.fragments import internet_checksum
from pgwire_inspect.errors import CaptureError

__all__ = ["MAX_SEGMENT", "RelayCapture", "segments"]

#: Largest TCP payload of one recorded frame, in bytes: what fits an IPv4
#: datagram of 65535 bytes after 20-byte IP and TCP headers. Longer reads
#: are recorded as several frames.
MAX_SEGMENT = 65495

_RECV_SIZE = 262144


def segments(data: bytes) -> list[bytes]:
    """Split the bytes of one read into TCP payloads of at most :data:`MAX_SEGMENT` bytes.

    Returns:
        The pieces, in order; their concatenation is ``data``.
    """
    return [data[i : i + MAX_SEGMENT] for i in range(0, len(data), MAX_SEGMENT)]
_CONNECT_TIMEOUT = 10.0
_WINDOW = 65535
_TTL = 64
_ETH_IPV4 = bytes(12) + b"\x08\x00"
_ETH_IPV6 = bytes(12) + b"\x86\xdd"
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_MASK = 0xFFFFFFFF


@dataclass(slots=True)
class _Half:
    """One direction of a relayed connection: its endpoint and counters."""

    addr: bytes  # packed IP address of the sender
    port: int
    seq: int  # sequence number of the next byte (or SYN/FIN) this side sends
    ip_id: int
    relayed: int = 0


@dataclass(slots=True)
class _Conn:
    """A relayed connection: the client's socket, the server's, and what was recorded."""

    client: socket.socket
    client_ip: str
    client_port: int
    family: int
    server: socket.socket | None = None
    halves: dict[str, _Half] = field(default_factory=dict)  # "F" client, "B" server
    aborted: bool = False
    threads: list[threading.Thread] = field(default_factory=list)


class RelayCapture:
    """A TCP relay to one server that records the relayed traffic as frames.

    Clients connect to ``(listen_host, listen_port)`` instead of the
    server. Every connection is relayed to ``(host, port)`` and recorded as
    Ethernet/IP/TCP frames (link type 1): the handshake when the relay has
    connected to the server, one frame per read of at most
    :data:`MAX_SEGMENT` payload bytes (flags PSH, ACK), FIN and the peer's
    ACK when a side shuts down, RST when a side resets the connection (the
    relay then resets the other side too). Timestamps are
    :func:`time.time` when the relay read the bytes. A server that refuses
    a connection shows as the client's SYN answered with RST.

    The same interface as :class:`~pgwire_inspect.capture.LiveCapture`:
    :meth:`start`, :meth:`stop`, :meth:`frames`, :meth:`wait_for_close`,
    and use as a context manager.

    Args:
        host: the server's host name or address.
        port: the server's TCP port.

    Attributes:
        host, port: as given.
        addresses: the server's addresses, resolved when created; the
            relay connects to the first, and listens on the loopback
            address of its family (127.0.0.1 or ::1).
        listen_host: the address clients connect to.
        listen_port: the port clients connect to; 0 until :meth:`start`.
        linktype: the LINKTYPE of the frames: always 1 (Ethernet).
        problems: one line per connection that could not be relayed, e.g.
            ``"cannot connect to 127.0.0.1:5432 for 127.0.0.1:50312: ..."``.

    Raises:
        CaptureError: the host name does not resolve.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise CaptureError(f"cannot resolve host {host!r}: {exc}") from None
        infos = [i for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6)]
        if not infos:
            raise CaptureError(f"cannot resolve host {host!r}: no IPv4 or IPv6 address")
        self.family = infos[0][0]
        self.addresses = list(dict.fromkeys(str(i[4][0]).split("%")[0] for i in infos))
        self._target: Any = infos[0][4]
        self.listen_host = "127.0.0.1" if self.family == socket.AF_INET else "::1"
        self.listen_port = 0
        self.linktype = 1
        self.problems: list[str] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._stopping = False
        self._running = False
        self._cond = threading.Condition()
        self._frames: list[Frame] = []
        self._closes: dict[int, set[str]] = {}  # client port -> {"F", "B", "RST"}
        self._relayed: dict[int, tuple[int, int]] = {}
        self._conns: list[_Conn] = []
        self._rng = random.Random()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> RelayCapture:
        """Listen on a free loopback port and start relaying in daemon threads.

        Calling it again while running does nothing.

        Returns:
            self, with :attr:`listen_port` set.

        Raises:
            CaptureError: "cannot listen on ...": no loopback address of
                the server's family.
        """
        if self._listener is not None:
            return self
        listener = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            listener.bind((self.listen_host, 0))
            listener.listen(128)
            listener.setblocking(False)
            self._wake_r, self._wake_w = os.pipe()
        except OSError as exc:
            listener.close()
            raise CaptureError(f"cannot listen on {self.listen_host}: {exc}") from None
        self._listener = listener
        self.listen_port = int(listener.getsockname()[1])
        self._stopping = False
        self._running = True
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"RelayCapture :{self.listen_port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop relaying: end every connection and thread, close every socket (idempotent).

        Connections still open are cut without recording anything more;
        the frames recorded so far stay available from :meth:`frames`.
        """
        with self._cond:
            self._stopping = True
        if self._accept_thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            self._accept_thread.join()
            self._accept_thread = None
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            self._shutdown(conn)
        for conn in conns:
            for thread in list(conn.threads):
                thread.join()
            self._close(conn)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        with self._cond:
            self._running = False
            self._cond.notify_all()

    def __enter__(self) -> RelayCapture:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- results -----------------------------------------------------------

    def frames(self) -> list[Frame]:
        """The frames recorded so far, numbered 1.. in the order they were recorded.

        Returns:
            A new list (a snapshot; relaying may go on). Link type 1,
            ``wirelen == len(data)``, timestamps in seconds since the epoch.
        """
        with self._cond:
            return list(self._frames)

    def wait_for_close(self, client_port: int, timeout: float) -> bool:
        """Wait until the connection from ``client_port`` has been closed.

        Closed means a FIN was recorded from both the client and the
        server, or an RST from either (RFC 9293, section 3.6).

        Args:
            client_port: the TCP port of the client connected to the relay
                (the client port the frames show).
            timeout: the longest wait, in seconds.

        Returns:
            True once closed; False on timeout or when the relay stopped first.
        """

        def closed() -> bool:
            seen = self._closes.get(client_port, ())
            return "RST" in seen or ("F" in seen and "B" in seen)

        with self._cond:
            self._cond.wait_for(lambda: closed() or not self._running, timeout)
            return closed()

    def relayed(self, client_port: int) -> tuple[int, int]:
        """Bytes relayed so far on the connection from ``client_port``.

        Args:
            client_port: the TCP port of the client connected to the relay.

        Returns:
            (client to server, server to client) byte counts; (0, 0) for a
            port the relay has not seen.
        """
        with self._cond:
            return self._relayed.get(client_port, (0, 0))

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        where = f"{self.listen_host}:{self.listen_port}"
        return f"RelayCapture({where} -> {self.host}:{self.port}, {state})"

    # -- the relay threads -------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        watch: list[Any] = [listener, self._wake_r]
        while not self._stopping:
            ready, _, _ = select.select(watch, [], [])
            if self._stopping:
                break
            if listener not in ready:
                continue
            try:
                client, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self.problems.append(
                    f"cannot accept on {self.listen_host}:{self.listen_port}: {exc}"
                )
                continue
            client.setblocking(True)
            conn = _Conn(client, str(peer[0]).split("%")[0], int(peer[1]), self.family)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"RelayCapture :{peer[1]}", daemon=True
            )
            conn.threads.append(thread)
            with self._cond:
                self._conns.append(conn)
            thread.start()

    def _connect(self, conn: _Conn) -> socket.socket | None:
        """Connect to the server without blocking stop(); None on failure."""
        server = socket.socket(self.family, socket.SOCK_STREAM)
        server.setblocking(False)
        err = server.connect_ex(self._target)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self._refused(conn, server, os.strerror(err))
            return None
        if err:
            wake: list[Any] = [self._wake_r]
            _, writable, _ = select.select(wake, [server], [], _CONNECT_TIMEOUT)
            if self._stopping:
                server.close()
                return None
            if not writable:
                self._refused(conn, server, "timed out")
                return None
            err = server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._refused(conn, server, os.strerror(err))
                return None
        server.setblocking(True)
        return server

    def _refused(self, conn: _Conn, server: socket.socket, why: str) -> None:
        server.close()
        host = self.addresses[0]
        self.problems.append(
            f"cannot connect to {host}:{self.port} for {conn.client_ip}:{conn.client_port}: {why}"
        )
        self._begin(conn, host)
        self._record(conn, "F", TCP_SYN)
        self._record(conn, "B", TCP_RST | TCP_ACK)
        with contextlib.suppress(OSError):
            conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _begin(self, conn: _Conn, server_ip: str) -> None:
        """Set up both halves with random initial sequence numbers (RFC 9293, 3.4.1)."""
        fam = conn.family
        rng = self._rng
        conn.halves["F"] = _Half(
            socket.inet_pton(fam, conn.client_ip),
            conn.client_port,
            rng.getrandbits(32),
            rng.getrandbits(16),
        )
        conn.halves["B"] = _Half(
            socket.inet_pton(fam, server_ip), self.port, rng.getrandbits(32), rng.getrandbits(16)
        )

    def _serve(self, conn: _Conn) -> None:
        """Connect to the server, record the handshake, relay both directions."""
        try:
            server = self._connect(conn)
            if server is None:
                return
            with self._cond:
                if self._stopping:  # stop() has shut the sockets it knows down
                    server.close()
                    return
                conn.server = server
            self._begin(conn, str(server.getpeername()[0]).split("%")[0])
            self._record(conn, "F", TCP_SYN)
            self._record(conn, "B", TCP_SYN | TCP_ACK)
            self._record(conn, "F", TCP_ACK)
            back = threading.Thread(
                target=self._pump,
                args=(conn, server, conn.client, "B"),
                name=f"RelayCapture :{conn.client_port} B",
                daemon=True,
            )
            conn.threads.append(back)
            back.start()
            self._pump(conn, conn.client, server, "F")
            back.join()
        finally:
            if not self._stopping:
                self._close(conn)

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, side: str) -> None:
        """Relay one direction until it ends; record what passes."""
        peer = "B" if side == "F" else "F"
        while True:
            try:
                data: bytes | None = src.recv(_RECV_SIZE)
            except OSError:
                data = None
            if self._stopping or conn.aborted:
                return
            if data is None:  # the sender reset the connection
                self._abort(conn, side, dst)
                return
            if not data:
                self._record(conn, side, TCP_FIN | TCP_ACK)
                self._record(conn, peer, TCP_ACK)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            for payload in segments(data):
                self._record(conn, side, TCP_PSH | TCP_ACK, payload)
            try:
                dst.sendall(data)
            except OSError:
                if not (self._stopping or conn.aborted):
                    self._abort(conn, peer, src)
                return

    def _abort(self, conn: _Conn, side: str, other: socket.socket) -> None:
        """``side`` reset the connection: record it and reset the other side too."""
        with self._cond:
            if conn.aborted:
                return
            conn.aborted = True
        self._record(conn, side, TCP_RST | TCP_ACK)
        with contextlib.suppress(OSError):
            other.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._shutdown(conn)

    @staticmethod
    def _shutdown(conn: _Conn) -> None:
        """Wake the threads blocked on this connection's sockets."""
        for sock in (conn.client, conn.server):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _close(self, conn: _Conn) -> None:
        for sock in (conn.client, conn.server):
            if sock is not None:
                sock.close()
        with self._cond:
            if conn in self._conns:
                self._conns.remove(conn)

    # -- recording ---------------------------------------------------------

    def _record(self, conn: _Conn, side: str, flags: int, payload: bytes = b"") -> None:
        """Append one frame sent by ``side`` ("F" client, "B" server)."""
        with self._cond:
            if conn.aborted and not flags & TCP_RST:
                return  # nothing follows a reset
            src = conn.halves[side]
            dst = conn.halves["B" if side == "F" else "F"]
            ack = dst.seq if flags & TCP_ACK else 0
            data = _frame_bytes(conn.family, src, dst, src.seq, ack, flags, payload)
            no = len(self._frames) + 1
            self._frames.append(Frame(no, time.time(), 1, data, len(data)))
            src.seq = (src.seq + len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)) & _MASK
            src.ip_id = (src.ip_id + 1) & 0xFFFF
            src.relayed += len(payload)
            f, b = conn.halves["F"].relayed, conn.halves["B"].relayed
            self._relayed[conn.client_port] = (f, b)
            if flags & (TCP_FIN | TCP_RST):
                seen = self._closes.setdefault(conn.client_port, set())
                seen.add("RST" if flags & TCP_RST else side)
                self._cond.notify_all()


def _frame_bytes(
    family: int, src: _Half, dst: _Half, seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    """Ethernet / IPv4 or IPv6 / TCP bytes of one segment, checksums filled in."""
    tcp_len = 20 + len(payload)
    tcp = bytearray(_TCP.pack(src.port, dst.port, seq, ack, 0x50, flags, _WINDOW, 0, 0))
    if family == socket.AF_INET:
        pseudo = src.addr + dst.addr + struct.pack("!BBH", 0, 6, tcp_len)
        ip = bytearray(
            _IPV4.pack(0x45, 0, 20 + tcp_len, src.ip_id, 0x4000, _TTL, 6, 0, src.addr, dst.addr)
        )
        ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
        eth = _ETH_IPV4
    else:
        pseudo = src.addr + dst.addr + struct.pack("!IxxxB", tcp_len, 6)
        ip = bytearray(_IPV6.pack(0x60000000, tcp_len, 6, _TTL, src.addr, dst.addr))
        eth = _ETH_IPV6
    tcp[16:18] = internet_checksum(pseudo + bytes(tcp) + payload).to_bytes(2, "big")
    return b"".join((eth, ip, tcp, payload))
