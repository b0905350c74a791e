"""Link layer, IPv4/IPv6 and TCP headers: from a :class:`Frame` to a :class:`TcpSegment`.

:func:`decode_frame` is the hot path every captured frame goes through; it
parses fixed header formats with precompiled :class:`struct.Struct`
objects and never builds scapy packets. (`pgwire_inspect.capture.dissect`
is the slow, explicit path behind the annotated hex dump.)

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

from pgwire_inspect.capture._model import Frame, TcpSegment
from pgwire_inspect.errors import CaptureError

__all__ = [
    "LINKTYPE_NAMES",
    "decode_frame",
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
