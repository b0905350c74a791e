"""Link layer, IPv4/IPv6 and TCP headers: from a :class:`Frame` to a :class:`TcpSegment`.

:func:`decode_frame` is the hot path every captured frame goes through; it
parses fixed header formats with precompiled :class:`struct.Struct`
objects and never builds scapy packets. :func:`dissect_headers` is the
slow, explicit path behind the annotated hex dump: it names every header
field and its byte span.

Specs: tcpdump.org "Link-layer header types" (LINKTYPE_* values and the
NULL/LOOP, Linux cooked SLL and SLL2 headers), IEEE 802.3 and 802.1Q
(Ethernet, VLAN tags), RFC 791 (IPv4), RFC 8200 (IPv6 and its extension
headers), RFC 9293 (TCP).
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pgwire_inspect.capture._model import Frame, TcpSegment
from pgwire_inspect.errors import CaptureError

__all__ = [
    "LINKTYPE_NAMES",
    "HeaderField",
    "decode_frame",
    "dissect_headers",
]

#: LINKTYPE_* values this module decodes, with their tcpdump.org names.
LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL (BSD loopback, host byte order)",
    1: "ETHERNET",
    12: "RAW (raw IP, OpenBSD value)",
    14: "RAW (raw IP, BSD/OS value)",
    101: "RAW (raw IP)",
    108: "LOOP (OpenBSD loopback, network byte order)",
    113: "LINUX_SLL (Linux cooked capture v1)",
    228: "IPV4 (raw IPv4)",
    229: "IPV6 (raw IPv6)",
    276: "LINUX_SLL2 (Linux cooked capture v2)",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
_IP_VERSIONS = {ETHERTYPE_IPV4: 4, ETHERTYPE_IPV6: 6}
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad, old QinQ
_AF_INET_NULL = 2
_AF_INET6_NULL = frozenset((24, 28, 30))  # NetBSD/OpenBSD, FreeBSD, macOS

_IPPROTO_TCP = 6
_IPV6_SKIPPABLE = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_IPV6_AH = 51

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")
# version/IHL, total length, flags/fragment offset, protocol, source, destination
_IPV4 = struct.Struct("!B1xH2xH1xB2x4s4s")
# payload length, next header, source, destination (after the 4-byte version word)
_IPV6 = struct.Struct("!4xHB1x16s16s")
# ports, seq, ack, data offset byte, flags byte
_TCP = struct.Struct("!HHIIBB")

# Ethernet + IPv4 without options + TCP, the common case, in one unpack:
# EtherType, version/IHL, total length, flags/fragment offset, protocol,
# source, destination, ports, seq, ack, data offset byte, flags byte.
_ETH_IPV4_TCP = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIBB")

_ADDR_CACHE_MAX = 4096
_addr4: dict[bytes, str] = {}
_addr6: dict[bytes, str] = {}


def _ntoa(raw: bytes) -> str:
    """IPv4 address bytes as text, cached (a capture has few distinct addresses)."""
    text = _addr4.get(raw)
    if text is None:
        if len(_addr4) >= _ADDR_CACHE_MAX:
            _addr4.clear()
        text = _addr4[raw] = socket.inet_ntoa(raw)
    return text


def _ntop6(raw: bytes) -> str:
    """IPv6 address bytes as text (RFC 5952 form), cached."""
    text = _addr6.get(raw)
    if text is None:
        if len(_addr6) >= _ADDR_CACHE_MAX:
            _addr6.clear()
        text = _addr6[raw] = socket.inet_ntop(socket.AF_INET6, raw)
    return text


# TcpSegment is a frozen slotted dataclass: its generated __init__ calls
# object.__setattr__ once per field, which costs more than the whole header
# parse. On this hot path the slots are filled through their member
# descriptors instead, which stores the same values in the same slots.
_obj_new = object.__new__
# fmt: off
(_set_frame, _set_ts, _set_src, _set_sport, _set_dst, _set_dport, _set_seq, _set_ack,
 _set_flags, _set_payload, _set_payload_offset, _set_missing) = (
    getattr(TcpSegment, field.name).__set__ for field in dataclasses.fields(TcpSegment)
)


def _segment(
    frame: int, ts: float, src: str, sport: int, dst: str, dport: int, seq: int, ack: int,
    flags: int, payload: bytes, payload_offset: int, missing: int,
) -> TcpSegment:
    """Build a TcpSegment equal to ``TcpSegment(...)`` with the same arguments, faster."""
    seg: TcpSegment = _obj_new(TcpSegment)
    _set_frame(seg, frame)
    _set_ts(seg, ts)
    _set_src(seg, src)
    _set_sport(seg, sport)
    _set_dst(seg, dst)
    _set_dport(seg, dport)
    _set_seq(seg, seq)
    _set_ack(seg, ack)
    _set_flags(seg, flags)
    _set_payload(seg, payload)
    _set_payload_offset(seg, payload_offset)
    _set_missing(seg, missing)
    return seg
# fmt: on


# --- link layers: each returns (offset of the IP header, IP version) or None ---


def _link_ethernet(data: bytes) -> tuple[int, int] | None:
    if len(data) < 14:
        return None
    etype = (data[12] << 8) | data[13]
    off = 14
    while etype in _VLAN_TPIDS:
        if len(data) < off + 4:
            return None
        etype = (data[off + 2] << 8) | data[off + 3]
        off += 4
    version = _IP_VERSIONS.get(etype)
    return (off, version) if version else None


def _link_null(data: bytes) -> tuple[int, int] | None:
    if len(data) < 4:
        return None
    # The family is a 32-bit word in either byte order; its value is small,
    # so one of the end bytes is zero and the other holds it.
    fam = data[0] | data[3] if not (data[1] or data[2]) else -1
    if fam == _AF_INET_NULL:
        return 4, 4
    if fam in _AF_INET6_NULL:
        return 4, 6
    return None


def _link_raw(data: bytes) -> tuple[int, int] | None:
    if not data:
        return None
    version = data[0] >> 4
    if version in (4, 6):
        return 0, version
    return None


def _link_ipv4(data: bytes) -> tuple[int, int] | None:
    return (0, 4) if data else None


def _link_ipv6(data: bytes) -> tuple[int, int] | None:
    return (0, 6) if data else None


def _link_sll(data: bytes) -> tuple[int, int] | None:
    if len(data) < 16:
        return None
    version = _IP_VERSIONS.get((data[14] << 8) | data[15])
    return (16, version) if version else None


def _link_sll2(data: bytes) -> tuple[int, int] | None:
    if len(data) < 20:
        return None
    version = _IP_VERSIONS.get((data[0] << 8) | data[1])
    return (20, version) if version else None


_LINKS: dict[int, Callable[[bytes], tuple[int, int] | None]] = {
    0: _link_null,
    1: _link_ethernet,
    12: _link_raw,
    14: _link_raw,
    101: _link_raw,
    108: _link_null,
    113: _link_sll,
    228: _link_ipv4,
    229: _link_ipv6,
    276: _link_sll2,
}


def _tcp(frame: Frame, data: bytes, off: int, end: int, src: str, dst: str) -> TcpSegment | None:
    """Parse the TCP header at ``off``; the IP packet ends at ``end`` (may exceed len(data))."""
    if len(data) < off + 20 or end < off + 20:
        return None
    sport, dport, seq, ack, doff, flags = _TCP.unpack_from(data, off)
    hlen = (doff >> 4) << 2
    if hlen < 20:
        return None
    poff = off + hlen
    if poff > end:
        return None
    n = len(data)
    if end <= n:
        payload = data[poff:end]
        missing = 0
    elif poff <= n:
        payload = data[poff:]
        missing = end - n
    else:  # the snapshot length cut into the TCP options
        payload = b""
        missing = end - poff
    return _segment(
        frame.no, frame.ts, src, sport, dst, dport, seq, ack, flags, payload, poff, missing
    )


def decode_frame(frame: Frame) -> TcpSegment | None:
    """Decode one frame down to its TCP segment.

    Parses the link layer named by ``frame.linktype``, then IPv4 (with
    options) or IPv6 (with hop-by-hop, routing, destination options,
    fragment and authentication extension headers), then the TCP header.
    The IP length fields decide where the payload ends, so Ethernet padding
    is never taken for TCP payload. An IP length of 0 (TCP segmentation
    offload on the capturing host) is read as "up to the end of the frame".

    Args:
        frame: a captured frame.

    Returns:
        The :class:`TcpSegment`, or None when the frame is not a decodable
        TCP segment: another protocol (ARP, UDP, ICMP, ...), a non-first IP
        fragment, IPsec ESP, or headers too short or inconsistent to parse.
        When the capture's snapshot length cut the frame, ``payload`` holds
        the captured payload bytes and ``missing`` the number that the IP
        length says exist beyond them.

    Raises:
        CaptureError: "unknown link type N" for a link type not in
            :data:`LINKTYPE_NAMES`.
    """
    data = frame.data
    linktype = frame.linktype
    n = len(data)
    if linktype == 1 and n >= 54 and data[14] == 0x45:
        # Fast path: Ethernet, IPv4 without options, TCP.
        etype, _vihl, total, frag, proto, src, dst, sport, dport, seq, ack, doff, flags = (
            _ETH_IPV4_TCP.unpack_from(data)
        )
        if etype == ETHERTYPE_IPV4 and proto == _IPPROTO_TCP and not frag & 0x3FFF:
            poff = 34 + ((doff >> 4) << 2)
            end = 14 + total if total else n
            if doff >= 0x50 and poff <= end <= n:
                return _segment(
                    frame.no, frame.ts, _ntoa(src), sport, _ntoa(dst), dport,
                    seq, ack, flags, data[poff:end], poff, 0,
                )  # fmt: skip
    if linktype == 1 and n >= 34 and data[12] == 8 and data[13] == 0:
        off, version = 14, 4
    else:
        link = _LINKS.get(linktype)
        if link is None:
            raise CaptureError(f"unknown link type {linktype}")
        where = link(data)
        if where is None:
            return None
        off, version = where
    if version == 4:
        if len(data) < off + 20:
            return None
        vihl, total, frag, proto, src, dst = _IPV4.unpack_from(data, off)
        if vihl >> 4 != 4 or proto != _IPPROTO_TCP or frag & 0x3FFF:
            return None
        ihl = (vihl & 0x0F) << 2
        if ihl < 20:
            return None
        end = off + total if total else len(data)
        if end < off + ihl:
            return None
        return _tcp(frame, data, off + ihl, end, _ntoa(src), _ntoa(dst))
    if len(data) < off + 40 or data[off] >> 4 != 6:
        return None
    plen, nxt, src6, dst6 = _IPV6.unpack_from(data, off)
    end = off + 40 + plen if plen else len(data)
    pos = off + 40
    while nxt != _IPPROTO_TCP:
        if len(data) < pos + 8:
            return None
        if nxt in _IPV6_SKIPPABLE:
            hlen = (data[pos + 1] + 1) << 3
        elif nxt == _IPV6_FRAGMENT:
            if _U16.unpack_from(data, pos + 2)[0] & 0xFFF9:
                return None  # a fragment: only whole datagrams decode (see fragments.py)
            hlen = 8
        elif nxt == _IPV6_AH:
            hlen = (data[pos + 1] + 2) << 2
        else:
            return None
        nxt = data[pos]
        pos += hlen
    return _tcp(frame, data, pos, end, _ntop6(src6), _ntop6(dst6))


# --------------------------------------------------------------------------
# Annotated header dissection (slow path)
# --------------------------------------------------------------------------

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
