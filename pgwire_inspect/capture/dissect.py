"""Every link, IP and TCP header field of a frame named, with its byte span.

The slow, explicit path behind the annotated hex dump (`decode_frame` in
`pgwire_inspect.capture.links` is the fast one). Same specs: tcpdump.org
"Link-layer header types", IEEE 802.3 and 802.1Q, RFC 791 (IPv4), RFC 8200
(IPv6 and its extension headers), RFC 9293 (TCP).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from pgwire_inspect.capture._model import Frame
from pgwire_inspect.capture.links import (
    _AF_INET6_NULL,
    _AF_INET_NULL,
    _IP_VERSIONS,
    _IPPROTO_TCP,
    _IPV6_AH,
    _IPV6_FRAGMENT,
    _LINKS,
    _U16,
    _U32_BE,
    _U32_LE,
    _VLAN_TPIDS,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    _link_sll,
    _link_sll2,
    _ntoa,
    _ntop6,
)
from pgwire_inspect.errors import CaptureError

__all__ = ["HeaderField", "dissect_headers", "tcp_flag_names"]

Layer = Literal["link", "ip", "tcp"]


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One field of a link, IP or TCP header, with its byte span.

    Attributes:
        layer: ``"link"``, ``"ip"`` or ``"tcp"``.
        name: the field's name, e.g. ``"Destination MAC"``, ``"Flags"``;
            bit fields that share bytes are one field (``"Version / IHL"``).
        start: byte offset of the field's first byte in ``frame.data``.
        end: byte offset just past its last byte (exclusive).
        value: the value as text, e.g. ``"5432"``, ``"SYN, ACK"``,
            ``"0x0800 (IPv4)"``.
    """

    layer: Layer
    name: str
    start: int
    end: int
    value: str

    def __repr__(self) -> str:
        return f"HeaderField({self.layer}, {self.name!r}, {self.start}:{self.end}, {self.value!r})"


# fmt: off
_ETHERTYPE_NAMES = {
    ETHERTYPE_IPV4: "IPv4", ETHERTYPE_IPV6: "IPv6", ETHERTYPE_ARP: "ARP",
    0x8100: "802.1Q VLAN", 0x88A8: "802.1ad VLAN", 0x9100: "QinQ VLAN",
}
_IP_PROTOCOLS = {  # IANA "Assigned Internet Protocol Numbers"
    0: "hop-by-hop options", 1: "ICMP", 6: "TCP", 17: "UDP", 41: "IPv6", 43: "routing",
    44: "fragment", 50: "ESP", 51: "AH", 58: "ICMPv6", 59: "no next header",
    60: "destination options",
}
_IPV6_EXT_NAMES = {
    0: "Hop-by-hop options header", 43: "Routing header", 44: "Fragment header",
    51: "Authentication header", 60: "Destination options header",
}
_SLL_PACKET_TYPES = {
    0: "to us", 1: "broadcast", 2: "multicast", 3: "to someone else", 4: "sent by us",
}
_NULL_FAMILIES = {
    2: "AF_INET, IPv4", 24: "AF_INET6, IPv6", 28: "AF_INET6, IPv6", 30: "AF_INET6, IPv6",
}
_TCP_FLAG_NAMES = (
    (0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
    (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"), (0x100, "AE"),
)
# fmt: on


def tcp_flag_names(flags: int) -> str:
    """Name the TCP flag bits set in ``flags``.

    Args:
        flags: the TCP flags (the 8 bits of header byte 13, optionally with
            the AE/NS bit as 0x100), as in :attr:`TcpSegment.flags`.

    Returns:
        Names joined by ", " in header bit order, e.g. ``"SYN, ACK"``;
        ``"none"`` when no flag is set (RFC 9293, section 3.1).
    """
    names = [name for bit, name in _TCP_FLAG_NAMES if flags & bit]
    return ", ".join(names) if names else "none"


def _ethertype_text(etype: int) -> str:
    name = _ETHERTYPE_NAMES.get(etype)
    return f"0x{etype:04x} ({name})" if name else f"0x{etype:04x}"


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class _Fields:
    """Collects fields and refuses those that would run past the captured bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.out: list[HeaderField] = []

    def fits(self, start: int, length: int) -> bool:
        return start + length <= len(self.data)

    def add(self, layer: Layer, name: str, start: int, length: int, value: str) -> bool:
        if not self.fits(start, length):
            return False
        self.out.append(HeaderField(layer, name, start, start + length, value))
        return True


def _dissect_link(f: _Fields, linktype: int) -> tuple[int, int] | None:
    """Add the link-layer fields; return (IP header offset, IP version) or None."""
    d = f.data
    if linktype == 1:
        if not (
            f.add("link", "Destination MAC", 0, 6, _mac(d[0:6]))
            and f.add("link", "Source MAC", 6, 6, _mac(d[6:12]))
            and f.fits(12, 2)
        ):
            return None
        off = 12
        etype = _U16.unpack_from(d, off)[0]
        f.add("link", "EtherType", off, 2, _ethertype_text(etype))
        off += 2
        while etype in _VLAN_TPIDS:
            if not f.fits(off, 4):
                return None
            tci = _U16.unpack_from(d, off)[0]
            f.add(
                "link",
                "VLAN tag (PCP / DEI / VID)",
                off,
                2,
                f"PCP {tci >> 13}, DEI {(tci >> 12) & 1}, VID {tci & 0x0FFF}",
            )
            etype = _U16.unpack_from(d, off + 2)[0]
            f.add("link", "EtherType", off + 2, 2, _ethertype_text(etype))
            off += 4
        version = _IP_VERSIONS.get(etype)
        return (off, version) if version else None
    if linktype in (0, 108):
        if not f.fits(0, 4):
            return None
        le, be = _U32_LE.unpack_from(d, 0)[0], _U32_BE.unpack_from(d, 0)[0]
        fam, order = (le, "little-endian") if le < 256 else (be, "big-endian")
        name = _NULL_FAMILIES.get(fam, "unknown")
        f.add("link", "Address family", 0, 4, f"{fam} ({name}), {order}")
        return (4, 4) if fam == _AF_INET_NULL else (4, 6) if fam in _AF_INET6_NULL else None
    if linktype in (12, 14, 101, 228, 229):
        return _LINKS[linktype](d)
    if linktype == 113:
        if not f.fits(0, 16):
            return None
        ptype, hatype, alen = struct.unpack_from("!HHH", d, 0)
        f.add("link", "Packet type", 0, 2, f"{ptype} ({_SLL_PACKET_TYPES.get(ptype, 'unknown')})")
        f.add("link", "ARPHRD type", 2, 2, str(hatype))
        f.add("link", "Address length", 4, 2, str(alen))
        f.add("link", "Source address", 6, 8, _mac(d[6 : 6 + min(alen, 8)]) or "(none)")
        etype = _U16.unpack_from(d, 14)[0]
        f.add("link", "Protocol", 14, 2, _ethertype_text(etype))
        return _link_sll(d)
    if linktype == 276:
        if not f.fits(0, 20):
            return None
        etype, _res, ifindex, hatype, ptype, alen = struct.unpack_from("!HHIHBB", d, 0)
        f.add("link", "Protocol", 0, 2, _ethertype_text(etype))
        f.add("link", "Reserved", 2, 2, f"0x{_res:04x}")
        f.add("link", "Interface index", 4, 4, str(ifindex))
        f.add("link", "ARPHRD type", 8, 2, str(hatype))
        f.add("link", "Packet type", 10, 1, f"{ptype} ({_SLL_PACKET_TYPES.get(ptype, 'unknown')})")
        f.add("link", "Address length", 11, 1, str(alen))
        f.add("link", "Source address", 12, 8, _mac(d[12 : 12 + min(alen, 8)]) or "(none)")
        return _link_sll2(d)
    raise CaptureError(f"unknown link type {linktype}")


def _dissect_ipv4(f: _Fields, off: int) -> int | None:
    """Add the IPv4 fields; return the TCP header offset or None."""
    d = f.data
    if not f.fits(off, 20):
        return None
    vihl, tos, total, ident, frag, ttl, proto, csum = struct.unpack_from("!BBHHHBBH", d, off)
    ihl = (vihl & 0x0F) * 4
    f.add("ip", "Version / IHL", off, 1, f"version {vihl >> 4}, header {ihl} bytes")
    f.add("ip", "DSCP / ECN", off + 1, 1, f"DSCP {tos >> 2}, ECN {tos & 3}")
    f.add("ip", "Total length", off + 2, 2, f"{total} bytes")
    f.add("ip", "Identification", off + 4, 2, f"0x{ident:04x}")
    flag_names = [n for bit, n in ((0x4000, "DF"), (0x2000, "MF")) if frag & bit]
    f.add(
        "ip",
        "Flags / Fragment offset",
        off + 6,
        2,
        f"{', '.join(flag_names) or 'none'}; offset {(frag & 0x1FFF) * 8}",
    )
    f.add("ip", "TTL", off + 8, 1, str(ttl))
    f.add("ip", "Protocol", off + 9, 1, f"{proto} ({_IP_PROTOCOLS.get(proto, 'other')})")
    f.add("ip", "Header checksum", off + 10, 2, f"0x{csum:04x}")
    f.add("ip", "Source address", off + 12, 4, _ntoa(d[off + 12 : off + 16]))
    f.add("ip", "Destination address", off + 16, 4, _ntoa(d[off + 16 : off + 20]))
    if vihl >> 4 != 4 or ihl < 20:
        return None
    if ihl > 20 and not f.add("ip", "Options", off + 20, ihl - 20, f"{ihl - 20} bytes"):
        return None
    if proto != _IPPROTO_TCP or frag & 0x1FFF:
        return None
    return off + ihl


def _dissect_ipv6(f: _Fields, off: int) -> int | None:
    """Add the IPv6 fields and extension headers; return the TCP header offset or None."""
    d = f.data
    if not f.fits(off, 40):
        return None
    word, plen, nxt, hops = struct.unpack_from("!IHBB", d, off)
    f.add(
        "ip",
        "Version / Traffic class / Flow label",
        off,
        4,
        f"version {word >> 28}, class 0x{(word >> 20) & 0xFF:02x}, flow 0x{word & 0xFFFFF:05x}",
    )
    f.add("ip", "Payload length", off + 4, 2, f"{plen} bytes")
    f.add("ip", "Next header", off + 6, 1, f"{nxt} ({_IP_PROTOCOLS.get(nxt, 'other')})")
    f.add("ip", "Hop limit", off + 7, 1, str(hops))
    f.add("ip", "Source address", off + 8, 16, _ntop6(d[off + 8 : off + 24]))
    f.add("ip", "Destination address", off + 24, 16, _ntop6(d[off + 24 : off + 40]))
    if word >> 28 != 6:
        return None
    pos = off + 40
    while nxt != _IPPROTO_TCP:
        name = _IPV6_EXT_NAMES.get(nxt)
        if name is None or not f.fits(pos, 8):
            return None
        if nxt == _IPV6_FRAGMENT:
            hlen = 8
            fo = _U16.unpack_from(d, pos + 2)[0]
            detail = f"offset {(fo >> 3) * 8}{', more fragments' if fo & 1 else ''}"
        elif nxt == _IPV6_AH:
            hlen = (d[pos + 1] + 2) * 4
            detail = f"{hlen} bytes"
        else:
            hlen = (d[pos + 1] + 1) * 8
            detail = f"{hlen} bytes"
        following = d[pos]
        value = f"next header {following} ({_IP_PROTOCOLS.get(following, 'other')}), {detail}"
        if not f.add("ip", name, pos, hlen, value):
            return None
        if nxt == _IPV6_FRAGMENT and fo >> 3:
            return None
        nxt = following
        pos += hlen
    return pos


def _dissect_tcp(f: _Fields, off: int) -> None:
    d = f.data
    if not f.fits(off, 20):
        return
    sport, dport, seq, ack, doff, flags, win, csum, urg = struct.unpack_from("!HHIIBBHHH", d, off)
    hlen = (doff >> 4) * 4
    f.add("tcp", "Source port", off, 2, str(sport))
    f.add("tcp", "Destination port", off + 2, 2, str(dport))
    f.add("tcp", "Sequence number", off + 4, 4, str(seq))
    f.add("tcp", "Acknowledgment number", off + 8, 4, str(ack))
    f.add(
        "tcp",
        "Data offset / Flags",
        off + 12,
        2,
        f"header {hlen} bytes; {tcp_flag_names(flags | (doff & 1) << 8)}",
    )
    f.add("tcp", "Window", off + 14, 2, str(win))
    f.add("tcp", "Checksum", off + 16, 2, f"0x{csum:04x}")
    f.add("tcp", "Urgent pointer", off + 18, 2, str(urg))
    if hlen > 20:
        f.add("tcp", "Options", off + 20, hlen - 20, f"{hlen - 20} bytes")


def dissect_headers(frame: Frame) -> list[HeaderField]:
    """Name every link-layer, IP and TCP header field of a frame with its byte span.

    The fields of each header cover its bytes exactly once, in order, with
    no gaps or overlaps; bit fields sharing bytes are grouped into one
    field, IP and TCP options are one ``"Options"`` field each, and every
    IPv6 extension header is one field. Dissection stops at the first
    field that is not complete in the captured bytes, and after the IP
    header when the packet is not TCP (or is a non-first fragment). The
    payload is not described.

    Args:
        frame: a captured frame.

    Returns:
        The fields in byte order; empty for a frame too short for its link
        header.

    Raises:
        CaptureError: "unknown link type N", as :func:`decode_frame`.

    Follows the same specs as :func:`decode_frame` (tcpdump.org link-layer
    header types, IEEE 802.1Q, RFC 791, RFC 8200, RFC 9293).
    """
    f = _Fields(frame.data)
    where = _dissect_link(f, frame.linktype)
    if where is None:
        return f.out
    off, version = where
    tcp_off = _dissect_ipv4(f, off) if version == 4 else _dissect_ipv6(f, off)
    if tcp_off is not None:
        _dissect_tcp(f, tcp_off)
    return f.out
