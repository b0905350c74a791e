"""What the link, IP and TCP header fields of a frame mean, in words (for --explain)."""

from __future__ import annotations

from .capture import HeaderField
from .conversation import Connection
from .decode import FrameLocation

__all__ = ["header_meaning"]

_FLAGS = dict(SYN="open the connection", ACK="the acknowledgment number is valid",
              PSH="hand the data to the application now", FIN="the sender has no more data",
              RST="abort the connection", URG="the urgent pointer is valid",
              ECE="congestion seen", CWR="congestion window reduced")
_TCP_OPTIONS = {1: "NOP", 2: "MSS", 3: "window scale", 4: "SACK permitted", 5: "SACK",
                8: "timestamps", 30: "MPTCP", 34: "fast open"}
_HEADER_TEXT = {
    "Version / IHL": "IPv4; IHL counts the header in 32-bit words",
    "Identification": "identifies the fragments of one IPv4 packet",
    "TTL": "how many routers may still forward the packet",
    "Hop limit": "how many routers may still forward the packet",
    "Header checksum": "checksum of the IPv4 header (not verified here)",
    "Acknowledgment number": "the next sequence number the sender expects from the other "
                             "side: every byte before it arrived",
    "Checksum": "TCP checksum (not verified: loopback and offloading often leave it unfinished)",
    "Urgent pointer": "unused unless URG is set",
}


def header_meaning(hf: HeaderField, data: bytes, conn: Connection | None,
                   loc: FrameLocation | None) -> str:
    """A sentence on what a link, IP or TCP header field means in this frame.

    Args:
        hf: the field (from `~pgwire_inspect.capture.dissect_headers`).
        data: the frame's bytes.
        conn: the frame's PostgreSQL connection, if it has one (to say which
            address and port is the server's).
        loc: where the frame's payload is in that connection's streams.

    Returns:
        The sentence, or "" when there is nothing to add to the field's value.
        Fields follow RFC 791 (IPv4), RFC 8200 (IPv6), RFC 9293 (TCP).
    """
    name, value = hf.name, hf.value
    if name.endswith("MAC") and not any(data[hf.start : hf.end]):
        return "all zeros: a Linux loopback capture gives frames an Ethernet header of zeros"
    if name in ("EtherType", "Protocol", "Next header") and "(" in value:
        return f"the next header is {value[value.index('(') + 1 : -1]}"
    if name in ("Total length", "Payload length"):
        return f"the IP {'packet' if name[0] == 'T' else 'payload'} is {value}"
    if name == "Flags / Fragment offset":
        return "DF: do not fragment" if value.startswith("DF") else "fragmentation flags"
    if conn is not None and loc is not None:
        if name in ("Source address", "Destination address"):
            server = (loc.direction == "B") == (name[0] == "S")
            return "the PostgreSQL server (backend)" if server else "the client (frontend)"
        if name in ("Source port", "Destination port"):
            return ("the PostgreSQL server's port" if value == str(conn.server[1])
                    else "the client's port (chosen by its operating system)")
        if name == "Sequence number":
            who = "frontend (client)" if loc.direction == "F" else "backend (server)"
            return (f"relative sequence number {loc.stream_offset + 1}: the first payload byte "
                    f"is byte {loc.stream_offset} of the {who}'s stream")
    if name == "Data offset / Flags":
        return "; ".join(f"{f}: {_FLAGS.get(f, '?')}" for f in value.split("; ")[-1].split(", "))
    if name == "Window":
        return f"the sender can take {value} more bytes (times 2^window scale)"
    if name == "Options" and hf.layer == "tcp":
        return "TCP options: " + _tcp_options(data[hf.start : hf.end])
    return _HEADER_TEXT.get(name, "")


def _tcp_options(raw: bytes) -> str:
    """Name each TCP option (RFC 9293 section 3.1), with the MSS and window scale values."""
    names, i = [], 0
    while i < len(raw) and raw[i] != 0:
        size = 1 if raw[i] == 1 else (raw[i + 1] if i + 1 < len(raw) else 0)
        label = _TCP_OPTIONS.get(raw[i], f"kind {raw[i]}")
        if raw[i] in (2, 3) and size == raw[i] + 2:
            label += f" {int.from_bytes(raw[i + 2 : i + size], 'big')}"
        names.append(label)
        i += max(size, len(raw) if size < 1 else 1)
    return ", ".join(names) or "none"
