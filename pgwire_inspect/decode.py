"""The decoding pipeline: frames → TCP segments → byte streams → messages → conversation.

This is the one place that wires the layers together (DESIGN.md, "The data
flow"); the CLI, the live ORM runner and the Python API all call it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from .capture import FragmentReassembler, Frame, decode_frame
from .conversation import (
    Connection,
    ConversationBuilder,
    QueryExchange,
    ResultSet,
    WireMessage,
)
from .errors import CaptureError
from .reassembly import ConnectionStarted, Reassembler, StreamData, StreamEnd, StreamGap

__all__ = ["DEFAULT_PORTS", "Decoded", "FrameLocation", "decode_frames"]

#: The PostgreSQL port looked at when the caller names none.
DEFAULT_PORTS: tuple[int, ...] = (5432,)


@dataclass(frozen=True, slots=True)
class FrameLocation:
    """Where one frame's TCP payload lies in its connection's stream.

    Attributes:
        conn_key: the connection's key (`Connection.key`).
        direction: "F" or "B".
        stream_offset: stream offset of the payload's first byte.
        payload_offset: byte offset of the payload in the frame.
        length: payload bytes captured.
    """

    conn_key: int
    direction: str
    stream_offset: int
    payload_offset: int
    length: int


@dataclass
class Decoded:
    """What the pipeline made of a capture.

    Attributes:
        connections: the connections found, numbered 0.. in order of their first packet.
        frames: how many frames were read.
        tcp_frames: frames that held a TCP segment on a tracked port.
        skipped: frames that could not be decoded, by reason (unknown link type ...).
        truncated: frames cut short by the snapshot length.
        problems: other one-line warnings (a truncated capture file ...).
        kept_frames: the frames, when the caller asked to keep them (for --hexdump).
        locations: with ``keep_frames``, frame number → where its TCP payload is
            in its connection's stream (see `FrameLocation`).
        ignored: TCP connections left out because they are not PostgreSQL
            (only when looking on every port).
    """

    connections: list[Connection] = field(default_factory=list)
    frames: int = 0
    tcp_frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    problems: list[str] = field(default_factory=list)
    kept_frames: list[Frame] = field(default_factory=list)
    ignored: int = 0
    locations: dict[int, FrameLocation] = field(default_factory=dict)

    def connection(self, conn_id: int) -> Connection | None:
        """The shown connection numbered ``conn_id``, or None."""
        return next((c for c in self.connections if c.id == conn_id), None)

    def location(self, frame_no: int) -> tuple[Connection, FrameLocation] | None:
        """Where frame ``frame_no``'s TCP payload lies in a shown connection's stream."""
        loc = self.locations.get(frame_no)
        if loc is None:
            return None
        conn = next((c for c in self._all if c.key == loc.conn_key), None)
        if conn is None or conn not in self.connections:
            return None
        return conn, loc

    _all: list[Connection] = field(default_factory=list, repr=False)

    @property
    def queries(self) -> list[QueryExchange]:
        """Every query of every connection, connection by connection."""
        return [q for c in self.connections for q in c.queries]

    @property
    def messages(self) -> list[WireMessage]:
        """Every kept message of every connection, connection by connection."""
        return [m for c in self.connections for m in c.messages]


_STARTUP_NAMES = frozenset({"StartupMessage", "SSLRequest", "GSSENCRequest", "CancelRequest"})
#: Messages a connection first seen mid-stream must decode cleanly before it is
#: taken for PostgreSQL.
_MIDSTREAM_PROOF = 4


class _Router:
    """Decides which connections are PostgreSQL and numbers the ones shown.

    With fixed ports every connection on them is shown. With ports=None,
    a connection is shown when it is on a default port, when its frontend
    starts with a startup packet, or when it was caught mid-stream and its
    first messages decode cleanly; messages wait (in order) until then.
    """

    def __init__(self, auto: bool, emit: Callable[[WireMessage, Connection], None] | None,
                 emit_rows: Callable[[Connection, ResultSet, list[WireMessage]], None] | None
                 ) -> None:
        self.auto = auto
        self.emit = emit
        self.emit_rows = emit_rows
        self.next_id = 0
        self.state: dict[int, str] = {}  # builder key -> "pending" | "shown" | "ignored"
        self.waiting: dict[int, list[WireMessage]] = {}
        self.good: dict[int, int] = {}

    def opened(self, key: int, conn: Connection) -> None:
        if not self.auto or conn.server[1] in DEFAULT_PORTS:
            self._show(key, conn)
        else:
            self.state[key] = "pending"
            self.waiting[key] = []
            self.good[key] = 0

    def _show(self, key: int, conn: Connection) -> None:
        self.state[key] = "shown"
        conn.emit = self.emit  # its next messages skip the router
        if self.emit is not None:
            conn.emit_rows = self.emit_rows
        conn.id = self.next_id
        self.next_id += 1
        waiting = self.waiting.pop(key, [])
        if waiting:
            fixed = [wm._replace(conn=conn.id) for wm in waiting]
            if conn.keep_messages:
                index = {id(old): new for old, new in zip(waiting, fixed, strict=True)}
                conn.relabel(index)
            if self.emit is not None:
                for wm in fixed:
                    self.emit(wm, conn)

    def message(self, key: int, wm: WireMessage, conn: Connection) -> None:
        state = self.state.get(key)
        if state == "shown":
            if self.emit is not None:
                self.emit(wm, conn)
            return
        if state != "pending":
            return
        self.waiting[key].append(wm)
        name = wm.message.name
        if name == "MalformedMessage":
            self.state[key] = "ignored"
            self.waiting.pop(key, None)
        elif (name in _STARTUP_NAMES and wm.direction == "F") or (
                self.good.get(key, 0) + 1 >= _MIDSTREAM_PROOF):
            self._show(key, conn)
        else:
            self.good[key] = self.good.get(key, 0) + 1

    def ended(self, key: int, conn: Connection) -> None:
        if self.state.get(key) == "pending" and self.good.get(key, 0) > 0 and all(
                d in conn.ended for d in "FB"):
            self._show(key, conn)

    def shown(self, key: int) -> bool:
        return self.state.get(key) == "shown"

    def ignored(self, key: int) -> bool:
        return self.state.get(key) == "ignored"


def decode_frames(
    frames: Iterable[Frame],
    *,
    ports: Collection[int] | None = DEFAULT_PORTS,
    client_ports: Collection[int] | None = None,
    keep_messages: bool = True,
    keep_frames: bool = False,
    emit: Callable[[WireMessage, Connection], None] | None = None,
    keep_rows: bool = True,
    keep_queries: bool = True,
    on_row: Callable[[Connection, ResultSet, WireMessage], None] | None = None,
    on_query: Callable[[Connection, QueryExchange], None] | None = None,
    row_limit: int | None = None,
    query_limit: int | None = None,
    on_rows: Callable[[Connection, ResultSet, list[WireMessage]], None] | None = None,
    emit_rows: Callable[[Connection, ResultSet, list[WireMessage]], None] | None = None,
) -> Decoded:
    """Decode frames into connections and queries.

    Args:
        frames: the frames, in capture order.
        ports: TCP ports of PostgreSQL servers to decode. None finds PostgreSQL
            on any port: connections on port 5432, and connections whose
            frontend starts with a startup packet (StartupMessage, SSLRequest,
            GSSENCRequest, CancelRequest) or, caught mid-stream, whose first
            messages decode cleanly; other TCP connections are counted in
            ``Decoded.ignored``.
        client_ports: if given, keep only connections from these client ports.
        keep_messages: keep every message on its connection (the table views need it).
        keep_frames: keep the frames themselves in `Decoded.kept_frames`.
        emit: called with each message and its connection as it is decoded, in order.
        emit_rows: with ``emit``, called instead of it for each run of DataRows of
            one result (with the connection, the result and the rows), once the
            connection is known to be PostgreSQL; messages stay in order.
        keep_rows, keep_queries, on_row, on_rows, on_query: for consumers of huge
            captures that keep nothing and count in callbacks (see `Connection`).
        row_limit: keep only this many rows of each result (and the last one).
        query_limit: keep only this many queries of each connection (all are counted
            in `Connection.query_count`).

    Returns:
        The `Decoded` result. Frames that cannot be decoded are counted in
        ``skipped``, never fatal; messages decoded before any problem are kept.
        Connections are numbered 0.. in the order they were first seen.
    """
    out = Decoded()
    builder = ConversationBuilder(keep_messages=keep_messages, keep_rows=keep_rows,
                                  keep_queries=keep_queries, on_row=on_row, on_query=on_query,
                                  row_limit=row_limit, query_limit=query_limit,
                                  on_rows=on_rows)
    router = _Router(ports is None, emit, emit_rows)
    reasm = Reassembler(server_ports=ports, hint_ports=DEFAULT_PORTS)
    tracked: set[int] = set()

    def route(wm: WireMessage, conn: Connection) -> None:
        router.message(conn.key, wm, conn)

    builder.emit = route

    def handle(events: list[object]) -> None:
        for ev in events:
            if isinstance(ev, StreamData):
                if ev.conn in tracked and not router.ignored(ev.conn):
                    builder.data(ev.conn, ev.direction, ev.offset, ev.data, ev.frame, ev.ts)
            elif isinstance(ev, ConnectionStarted):
                if client_ports is None or ev.client[1] in client_ports:
                    tracked.add(ev.conn)
                    conn = builder.open(ev.conn, ev.client, ev.server, ev.frame, ev.ts,
                                        ev.handshake)
                    router.opened(ev.conn, conn)
            elif isinstance(ev, StreamGap):
                if ev.conn in tracked and not router.ignored(ev.conn):
                    builder.gap(ev.conn, ev.direction, ev.offset, ev.length,
                                ev.frame_before, ev.frame_after)
            elif (isinstance(ev, StreamEnd) and ev.conn in tracked
                  and not router.ignored(ev.conn)):
                builder.end(ev.conn, ev.direction, ev.reason, ev.frame, ev.ts)
                router.ended(ev.conn, builder.get(ev.conn))

    frags = FragmentReassembler()
    for captured in frames:
        out.frames += 1
        if keep_frames:
            out.kept_frames.append(captured)
        frame = frags.feed(captured)
        if frame is None:
            continue  # a fragment, held until its datagram is whole
        try:
            seg = decode_frame(frame)
        except CaptureError as exc:
            key = str(exc)
            out.skipped[key] = out.skipped.get(key, 0) + 1
            continue
        if seg is None:
            continue
        if ports is not None and seg.sport not in ports and seg.dport not in ports:
            continue
        out.tcp_frames += 1
        if seg.missing:
            out.truncated += 1
        events = reasm.feed(seg)
        if keep_frames and reasm.last_location is not None:
            conn_key, direction, offset = reasm.last_location
            out.locations[frame.no] = FrameLocation(conn_key, direction, offset,
                                                    seg.payload_offset, len(seg.payload))
        handle(list(events))
    handle(list(reasm.finish()))
    frags.finish()
    out.problems.extend(frags.problems)
    out.connections = sorted((c for c in builder.connections if router.shown(c.key)),
                             key=lambda c: c.id)
    out.ignored = sum(1 for c in builder.connections if not router.shown(c.key))
    out._all = builder.connections
    return out
