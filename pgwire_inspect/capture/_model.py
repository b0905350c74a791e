"""Frames and TCP segments: what every capture source produces.

A *frame* is one captured link-layer packet as a capture file or the
sniffer holds it; a *segment* is the TCP part of a frame, with the IP
addresses and ports it travelled between.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TCP_ACK", "TCP_FIN", "TCP_PSH", "TCP_RST", "TCP_SYN", "Frame", "TcpSegment"]

# TCP header flag bits (RFC 9293, section 3.1).
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured packet.

    Attributes:
        no: 1-based frame number in the capture, as Wireshark counts them.
        ts: capture timestamp, seconds since the epoch.
        linktype: the LINKTYPE_* value of the link layer (tcpdump.org
            link-layer header types), e.g. 1 Ethernet, 113 Linux cooked.
        data: the captured bytes (at most the snapshot length).
        wirelen: the packet's length on the wire in bytes; larger than
            ``len(data)`` when the capture cut the packet short.
    """

    no: int
    ts: float
    linktype: int
    data: bytes
    wirelen: int

    def __repr__(self) -> str:
        return (f"Frame(no={self.no}, ts={self.ts:.6f}, linktype={self.linktype}, "
                f"len={len(self.data)})")


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """The TCP part of one frame.

    Attributes:
        frame: 1-based number of the frame that carried it.
        ts: the frame's timestamp, seconds since the epoch.
        src, dst: source and destination IP addresses as text
            (``"127.0.0.1"``, ``"::1"``).
        sport, dport: source and destination TCP ports.
        seq, ack: sequence and acknowledgment numbers (RFC 9293), 32-bit unsigned.
        flags: the TCP flag bits (``TCP_SYN | TCP_ACK`` ...).
        payload: the TCP payload bytes that were captured.
        payload_offset: byte offset of the payload in the frame's data.
        missing: payload bytes the capture did not keep (snaplen cut), 0 normally.
    """

    frame: int
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    payload_offset: int
    missing: int = 0

    def __repr__(self) -> str:
        return (
            f"TcpSegment(frame={self.frame}, {self.src}:{self.sport}->{self.dst}:{self.dport}, "
            f"seq={self.seq}, flags={self.flags:#04x}, len={len(self.payload)})"
        )
