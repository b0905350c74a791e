"""The decoding pipeline: frames → TCP segments → byte streams → messages → conversation.

This is the one place that wires the layers together (DESIGN.md, "The data
flow"); the CLI, the live ORM runner and the Python API all call it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from .capture import Frame, decode_frame
from .conversation import Connection, ConversationBuilder, QueryExchange, WireMessage
from .errors import CaptureError
from .reassembly import ConnectionStarted, Reassembler, StreamData, StreamEnd, StreamGap

__all__ = ["DEFAULT_PORTS", "Decoded", "decode_frames"]

#: The PostgreSQL port looked at when the caller names none.
DEFAULT_PORTS: tuple[int, ...] = (5432,)


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
    """

    connections: list[Connection] = field(default_factory=list)
    frames: int = 0
    tcp_frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    problems: list[str] = field(default_factory=list)
    kept_frames: list[Frame] = field(default_factory=list)

    @property
    def queries(self) -> list[QueryExchange]:
        """Every query of every connection, connection by connection."""
        return [q for c in self.connections for q in c.queries]

    @property
    def messages(self) -> list[WireMessage]:
        """Every kept message of every connection, connection by connection."""
        return [m for c in self.connections for m in c.messages]


def decode_frames(
    frames: Iterable[Frame],
    *,
    ports: Collection[int] | None = DEFAULT_PORTS,
    client_ports: Collection[int] | None = None,
    keep_messages: bool = True,
    keep_frames: bool = False,
    emit: Callable[[WireMessage, Connection], None] | None = None,
) -> Decoded:
    """Decode frames into connections and queries.

    Args:
        frames: the frames, in capture order.
        ports: TCP ports of PostgreSQL servers to look at; None: every TCP connection.
        client_ports: if given, keep only connections from these client ports.
        keep_messages: keep every message on its connection (the table views need it).
        keep_frames: keep the frames themselves in `Decoded.kept_frames`.
        emit: called with each message and its connection as it is decoded, in order.

    Returns:
        The `Decoded` result. Frames that cannot be decoded are counted in
        ``skipped``, never fatal; messages decoded before any problem are kept.
    """
    out = Decoded()
    builder = ConversationBuilder(keep_messages=keep_messages, emit=emit)
    reasm = Reassembler(server_ports=ports)
    wanted: dict[int, int] = {}  # the reassembler's connection number -> ours

    def handle(events: list[object]) -> None:
        for ev in events:
            if isinstance(ev, StreamData):
                if ev.conn in wanted:
                    builder.data(wanted[ev.conn], ev.direction, ev.offset, ev.data, ev.frame,
                                 ev.ts)
            elif isinstance(ev, ConnectionStarted):
                if client_ports is None or ev.client[1] in client_ports:
                    wanted[ev.conn] = n = len(builder.connections)
                    builder.open(n, ev.client, ev.server, ev.frame, ev.ts, ev.handshake)
            elif isinstance(ev, StreamGap):
                if ev.conn in wanted:
                    builder.gap(wanted[ev.conn], ev.direction, ev.offset, ev.length,
                                ev.frame_before, ev.frame_after)
            elif isinstance(ev, StreamEnd) and ev.conn in wanted:
                builder.end(wanted[ev.conn], ev.direction, ev.reason, ev.frame, ev.ts)

    for frame in frames:
        out.frames += 1
        if keep_frames:
            out.kept_frames.append(frame)
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
        handle(list(reasm.feed(seg)))
    handle(list(reasm.finish()))
    # Connections kept are numbered 0.. in order of their first packet.
    out.connections = builder.connections
    return out
