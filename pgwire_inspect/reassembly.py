"""TCP reassembly: segments in capture order to ordered per-direction byte streams.

A :class:`Reassembler` is fed :class:`~pgwire_inspect.capture.TcpSegment`
objects in the order the capture holds them and returns events: a
connection started, bytes at a stream offset, a gap of bytes that were
never captured, a direction ended. Every stream byte is delivered exactly
once and in order; duplicates (a live capture on loopback sees each
segment twice), retransmissions and overlaps keep the bytes received
first; out-of-order segments wait in a bounded buffer until the hole
before them fills or is declared a gap.

Spec: RFC 9293 (TCP): sequence numbers are 32-bit and wrap around; SYN and
FIN each occupy one sequence number; the first data byte after a SYN has
sequence number ISN + 1.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from pgwire_inspect.capture import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegment

__all__ = [
    "MAX_OUT_OF_ORDER",
    "ConnectionStarted",
    "Direction",
    "EndReason",
    "Event",
    "Reassembler",
    "StreamData",
    "StreamEnd",
    "StreamGap",
]

#: Bytes of out-of-order data buffered beyond a hole before the hole is
#: declared a :class:`StreamGap` (1 MiB).
MAX_OUT_OF_ORDER = 1 << 20

_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_WRAP = 1 << 32

Direction = Literal["F", "B"]
EndReason = Literal["FIN", "RST", "end of capture"]
Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ConnectionStarted:
    """The first packet of a TCP connection was seen.

    Attributes:
        conn: connection number, 0, 1, ... in order of first packets.
        client: (IP address, port) of the frontend.
        server: (IP address, port) of the backend.
        frame: 1-based frame number of the connection's first packet.
        ts: its timestamp, seconds since the epoch.
        handshake: True when the client's SYN was seen (the streams then
            start at their first byte); False for a capture that begins
            in the middle of the connection.
    """

    conn: int
    client: Endpoint
    server: Endpoint
    frame: int
    ts: float
    handshake: bool

    def __repr__(self) -> str:
        c, s = self.client, self.server
        return (
            f"ConnectionStarted({self.conn}, {c[0]}:{c[1]} -> {s[0]}:{s[1]}, "
            f"frame={self.frame}, handshake={self.handshake})"
        )


@dataclass(frozen=True, slots=True)
class StreamData:
    """Bytes of one direction's stream, in order.

    Attributes:
        conn: connection number.
        direction: ``"F"`` client to server (frontend), ``"B"`` server to
            client (backend).
        offset: byte offset of ``data[0]`` in that direction's stream; 0 is
            the first byte after the SYN (or the first byte seen, when the
            capture began mid-connection).
        data: the bytes; the next event of this direction continues at
            ``offset + len(data)``.
        frame: 1-based number of the frame that carried them.
        ts: that frame's timestamp, seconds since the epoch.
    """

    conn: int
    direction: Direction
    offset: int
    data: bytes
    frame: int
    ts: float

    def __repr__(self) -> str:
        head = self.data[:16]
        more = "..." if len(self.data) > 16 else ""
        return (
            f"StreamData({self.conn}{self.direction}, offset={self.offset}, "
            f"len={len(self.data)}, frame={self.frame}, data={head!r}{more})"
        )


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Bytes of a stream that the capture does not hold.

    Attributes:
        conn: connection number.
        direction: ``"F"`` or ``"B"``.
        offset: stream byte offset of the first missing byte.
        length: number of missing bytes (from the sequence numbers).
        frame_before: frame that carried the byte before the gap, None at
            the start of the stream.
        frame_after: frame that carried the byte after the gap, None when
            no later byte of the stream was captured.
    """

    conn: int
    direction: Direction
    offset: int
    length: int
    frame_before: int | None
    frame_after: int | None

    def __repr__(self) -> str:
        return (
            f"StreamGap({self.conn}{self.direction}, offset={self.offset}, "
            f"length={self.length}, frames={self.frame_before}..{self.frame_after})"
        )


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """One direction of a connection ended; no more events follow for it.

    Attributes:
        conn: connection number.
        direction: ``"F"`` or ``"B"``.
        reason: ``"FIN"`` (orderly close of this direction), ``"RST"``
            (either side reset the connection) or ``"end of capture"``.
        frame: the frame of the FIN or RST, None at the end of capture.
        ts: its timestamp (seconds since the epoch), None at the end of capture.
    """

    conn: int
    direction: Direction
    reason: EndReason
    frame: int | None
    ts: float | None

    def __repr__(self) -> str:
        return f"StreamEnd({self.conn}{self.direction}, {self.reason}, frame={self.frame})"


Event = ConnectionStarted | StreamData | StreamGap | StreamEnd
"""Any of the four event types a :class:`Reassembler` returns."""


class _Half:
    """Reassembly state of one direction of one connection."""

    __slots__ = (
        "base",
        "conn",
        "direction",
        "ended",
        "last_frame",
        "max_acked",
        "next_off",
        "pending",
        "pending_bytes",
    )

    def __init__(self, conn: int, direction: Direction) -> None:
        self.conn = conn
        self.direction = direction
        self.base: int | None = None  # sequence number of stream offset 0
        self.next_off = 0  # stream offset of the next byte to deliver
        # Out-of-order chunks, sorted, non-overlapping, all beyond next_off:
        # (start, end, data or None for bytes known lost, frame, ts).
        self.pending: list[tuple[int, int, bytes | None, int, float]] = []
        self.pending_bytes = 0
        self.last_frame: int | None = None
        self.max_acked = 0  # highest stream offset the peer acknowledged
        self.ended = False

    def offset(self, seq: int) -> int:
        """The stream offset of sequence number ``seq``, unwrapped near next_off."""
        assert self.base is not None
        delta = ((seq - self.base) - self.next_off) & _MASK
        if delta >= _HALF:
            delta -= _WRAP
        return self.next_off + delta

    def add(
        self, start: int, data: bytes, missing: int, frame: int, ts: float, out: list[Event]
    ) -> None:
        """Take ``data`` at stream offset ``start`` (and ``missing`` lost bytes after it)."""
        end = start + len(data)
        lost_end = end + missing
        if lost_end <= self.next_off:
            return  # all of it was delivered already: duplicate or retransmission
        if start < self.next_off:  # keep the bytes received first
            data = data[self.next_off - start :]
            start = self.next_off
            if end < start:
                end = start
        if data and start == self.next_off:
            # Deliver at once, but only up to the first buffered chunk: the
            # bytes buffered there were received first and win.
            limit = self.pending[0][0] if self.pending else end
            now = data if limit >= end else data[: limit - start]
            out.append(StreamData(self.conn, self.direction, start, now, frame, ts))
            self.next_off = start + len(now)
            self.last_frame = frame
            data = data[len(now) :]
            start = self.next_off
        if data:
            self._insert(start, end, data, frame, ts)
        if lost_end > end:
            self._insert(max(end, self.next_off), lost_end, None, frame, ts)
        self._drain(out)
        while self.pending_bytes > MAX_OUT_OF_ORDER:
            self._gap_to(self.pending[0][0], out)
            self._drain(out)

    def _insert(self, start: int, end: int, data: bytes | None, frame: int, ts: float) -> None:
        """Buffer the parts of [start, end) that no buffered chunk covers yet."""
        pending = self.pending
        i = bisect.bisect_right(pending, start, key=lambda c: c[0]) - 1
        if i < 0:
            i = 0
        cur = start
        pieces: list[tuple[int, int]] = []
        while i < len(pending) and cur < end:
            p_start, p_end = pending[i][0], pending[i][1]
            if p_end <= cur:
                i += 1
                continue
            if p_start >= end:
                break
            if p_start > cur:
                pieces.append((cur, p_start))
            cur = max(cur, p_end)
            i += 1
        if cur < end:
            pieces.append((cur, end))
        for p_start, p_end in pieces:
            chunk = None if data is None else data[p_start - start : p_end - start]
            bisect.insort(pending, (p_start, p_end, chunk, frame, ts), key=lambda c: c[0])
            if chunk is not None:
                self.pending_bytes += len(chunk)

    def _drain(self, out: list[Event]) -> None:
        """Deliver buffered chunks that now continue the stream."""
        pending = self.pending
        while pending and pending[0][0] <= self.next_off:
            start, end, data, frame, ts = pending.pop(0)
            if data is not None:
                self.pending_bytes -= len(data)
            if end <= self.next_off:
                continue
            skip = self.next_off - start
            if data is None:
                after = pending[0][3] if pending and pending[0][0] == end else None
                out.append(
                    StreamGap(
                        self.conn,
                        self.direction,
                        self.next_off,
                        end - self.next_off,
                        self.last_frame,
                        after,
                    )
                )
                self.last_frame = frame
            else:
                out.append(
                    StreamData(self.conn, self.direction, self.next_off, data[skip:], frame, ts)
                )
                self.last_frame = frame
            self.next_off = end

    def _gap_to(self, offset: int, out: list[Event]) -> None:
        """Declare [next_off, offset) missing and move past it."""
        if offset <= self.next_off:
            return
        after = self.pending[0][3] if self.pending and self.pending[0][0] == offset else None
        out.append(
            StreamGap(
                self.conn,
                self.direction,
                self.next_off,
                offset - self.next_off,
                self.last_frame,
                after,
            )
        )
        self.next_off = offset

    def flush(self, out: list[Event], until: int | None = None) -> None:
        """Deliver everything buffered, declaring the holes before it gaps.

        With ``until`` (a FIN's offset), also declare the bytes up to it
        missing and drop anything buffered beyond it.
        """
        while self.pending:
            if until is not None and self.pending[0][0] >= until:
                self.pending.clear()
                self.pending_bytes = 0
                break
            self._gap_to(self.pending[0][0], out)
            self._drain(out)
        if until is not None:
            self._gap_to(until, out)

    def end(self, reason: EndReason, frame: int | None, ts: float | None, out: list[Event]) -> None:
        out.append(StreamEnd(self.conn, self.direction, reason, frame, ts))
        self.ended = True
        self.pending = []
        self.pending_bytes = 0


class _Connection:
    """One TCP connection: its endpoints and two halves."""

    __slots__ = ("client", "client_isn", "halves", "number", "reset", "server")

    def __init__(self, number: int, client: Endpoint, server: Endpoint) -> None:
        self.number = number
        self.client = client
        self.server = server
        self.client_isn: int | None = None
        self.reset = False
        self.halves: dict[str, _Half] = {"F": _Half(number, "F"), "B": _Half(number, "B")}

    @property
    def closed(self) -> bool:
        return self.reset or (self.halves["F"].ended and self.halves["B"].ended)

    def finish(self, out: list[Event]) -> None:
        """End the open halves as at the end of the capture."""
        for half in self.halves.values():
            if half.ended:
                continue
            half.flush(out)
            if half.max_acked > half.next_off:  # the peer acknowledged bytes never captured
                half._gap_to(half.max_acked, out)
            half.end("end of capture", None, None, out)


class Reassembler:
    """Turns TCP segments, in capture order, into per-connection byte streams.

    Feed every segment of a capture to :meth:`feed`, then call
    :meth:`finish` once. Both return :data:`Event` lists; concatenated they
    describe each connection as: one :class:`ConnectionStarted`, then for
    each direction :class:`StreamData` and :class:`StreamGap` events whose
    offsets tile the stream from 0 without overlap, then one
    :class:`StreamEnd`.

    Who is the client: the sender of a SYN without ACK; the receiver of a
    SYN+ACK; without either, the side not on a port in ``server_ports`` (or
    ``hint_ports`` when every port is tracked); otherwise, with every port
    tracked, the side on the higher port (servers listen on the lower one);
    otherwise the sender of the connection's first segment.

    A SYN without ACK on a 4-tuple whose connection is known, with another
    initial sequence number, starts a new connection (a reused port); the
    old connection's open directions end as at the end of capture.

    Memory is bounded by the out-of-order buffer of each direction
    (:data:`MAX_OUT_OF_ORDER` bytes beyond a hole, plus one segment) and a
    few words per connection; delivered bytes are not kept.

    Args:
        server_ports: when given, only segments from or to one of these
            ports are tracked; None tracks every TCP connection.

    Follows RFC 9293 (sequence number arithmetic modulo 2**32; SYN and FIN
    occupy one sequence number each).
    """

    def __init__(self, server_ports: Collection[int] | None = None, *,
                 hint_ports: Collection[int] = ()) -> None:
        self.server_ports = frozenset(server_ports) if server_ports is not None else None
        #: Ports that are servers' when no SYN says who the client is (all tracked).
        self.hint_ports = frozenset(hint_ports)
        self._conns: dict[tuple[Endpoint, Endpoint], _Connection] = {}
        self._all: list[_Connection] = []
        self._finished = False
        #: After `feed`: (connection number, direction, stream offset of the
        #: segment's first payload byte), also for duplicates and retransmissions;
        #: None for segments of no tracked connection. For annotated hex dumps.
        self.last_location: tuple[int, Direction, int] | None = None

    @property
    def connections(self) -> int:
        """Number of connections seen so far."""
        return len(self._all)

    def feed(self, seg: TcpSegment) -> list[Event]:
        """Take the next segment of the capture.

        Args:
            seg: a TCP segment; segments must come in capture order.

        Returns:
            The events this segment causes, possibly none (a duplicate, an
            out-of-order segment waiting for a hole to fill, a segment of
            an ended direction, or one not on ``server_ports``).

        Raises:
            RuntimeError: after :meth:`finish`.
        """
        if self._finished:
            raise RuntimeError("Reassembler.feed() called after finish()")
        self.last_location = None
        ports = self.server_ports
        if ports is not None and seg.sport not in ports and seg.dport not in ports:
            return []
        out: list[Event] = []
        a = (seg.src, seg.sport)
        b = (seg.dst, seg.dport)
        key = (a, b) if a <= b else (b, a)
        flags = seg.flags
        syn_only = flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        conn = self._conns.get(key)
        if conn is not None and syn_only and conn.client_isn != seg.seq:
            if not conn.closed:
                conn.finish(out)
            conn = None
        if conn is None:
            conn = self._start(key, seg, out)
        if conn.closed:
            return out
        sender = a
        direction: Direction = "F" if sender == conn.client else "B"
        half = conn.halves[direction]
        peer = conn.halves["B" if direction == "F" else "F"]

        if flags & TCP_SYN:
            if half.base is None or (half.next_off == 0 and not half.pending):
                half.base = (seg.seq + 1) & _MASK
            if direction == "F":
                conn.client_isn = seg.seq
            elif flags & TCP_ACK:  # the SYN+ACK acknowledges the client's ISN + 1
                if peer.base is None:
                    peer.base = seg.ack
                if conn.client_isn is None:
                    conn.client_isn = (seg.ack - 1) & _MASK
        elif half.base is None:
            half.base = seg.seq  # mid-connection: the first byte seen is offset 0
        if flags & TCP_ACK and peer.base is not None and not peer.ended:
            acked = peer.offset(seg.ack)
            if acked > peer.max_acked:
                peer.max_acked = acked

        if flags & TCP_RST:
            conn.reset = True
            for h in (half, peer):
                if not h.ended:
                    h.flush(out)
                    h.end("RST", seg.frame, seg.ts, out)
            return out
        if half.ended:
            return out
        start = half.offset((seg.seq + 1) & _MASK if flags & TCP_SYN else seg.seq)
        self.last_location = (conn.number, direction, start)
        payload = seg.payload
        missing = seg.missing
        if start < 0:  # bytes from before the first byte seen
            cut = -start
            if cut >= len(payload) + missing:
                payload, missing, start = b"", 0, 0
            elif cut >= len(payload):
                missing -= cut - len(payload)
                payload, start = b"", 0
            else:
                payload, start = payload[cut:], 0
        if payload or missing:
            half.add(start, payload, missing, seg.frame, seg.ts, out)
        if flags & TCP_FIN:
            fin_off = start + len(payload) + missing
            if fin_off >= half.next_off:
                half.flush(out, until=fin_off)
                half.end("FIN", seg.frame, seg.ts, out)
        return out

    def _start(
        self, key: tuple[Endpoint, Endpoint], seg: TcpSegment, out: list[Event]
    ) -> _Connection:
        a = (seg.src, seg.sport)
        b = (seg.dst, seg.dport)
        flags = seg.flags & (TCP_SYN | TCP_ACK)
        ports = self.server_ports if self.server_ports is not None else self.hint_ports
        if flags == TCP_SYN:
            client, server = a, b
        elif flags == TCP_SYN | TCP_ACK:
            client, server = b, a
        elif ports and (seg.dport in ports) != (seg.sport in ports):
            client, server = (a, b) if seg.dport in ports else (b, a)
        elif self.server_ports is None and seg.sport != seg.dport:
            # No handshake and no known port: servers listen on the lower port,
            # clients use high ephemeral ports (RFC 6335, section 6).
            client, server = (a, b) if seg.dport < seg.sport else (b, a)
        else:
            client, server = a, b
        conn = _Connection(len(self._all), client, server)
        self._conns[key] = conn
        self._all.append(conn)
        out.append(
            ConnectionStarted(conn.number, client, server, seg.frame, seg.ts, flags == TCP_SYN)
        )
        return conn

    def finish(self) -> list[Event]:
        """End of the capture: flush every open direction.

        Buffered out-of-order data is delivered with the holes before it
        reported as :class:`StreamGap`; bytes the peer acknowledged but the
        capture never held are reported as a final gap (when the capture
        lost a FIN but kept its acknowledgment, that gap counts the FIN's
        one sequence number as a byte); every direction still open gets
        ``StreamEnd(reason="end of capture")``. Idempotent: a second call
        returns no events.

        Returns:
            The events, connection by connection, F before B.
        """
        if self._finished:
            return []
        self._finished = True
        out: list[Event] = []
        for conn in self._all:
            if not conn.closed:
                conn.finish(out)
        return out
