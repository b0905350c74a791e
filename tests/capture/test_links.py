"""decode_frame and dissect_headers on recorded frames and on frames built with scapy.

scapy is the second opinion here: it builds the test frames and dissects
the recorded ones, and decode_frame (plain struct) must agree with it.
"""

from __future__ import annotations

import struct
from dataclasses import astuple

import pytest
from capture_builders import ZEEK
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from pgwire_inspect.capture import (
    LINKTYPE_NAMES,
    TCP_ACK,
    TCP_PSH,
    TCP_SYN,
    Frame,
    TcpSegment,
    decode_frame,
    dissect_headers,
    open_capture,
)
from pgwire_inspect.errors import CaptureError

# Explicit addresses: without them scapy would look the MAC address up with ARP.
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def frame(data: bytes, linktype: int = 1, no: int = 1) -> Frame:
    return Frame(no, 1700000000.5, linktype, data, len(data))


def zeek_frames() -> list[Frame]:
    files = sorted(ZEEK.glob("*.pcap"))
    if not files:
        pytest.skip("the Zeek captures are not present")
    return [f for path in files for f in open_capture(path)]


def v4_packet(payload: bytes = b"Q\x00\x00\x00\rselect 1\x00", **tcp: object) -> bytes:
    fields = {"sport": 40000, "dport": 5432, "seq": 1000, "ack": 2000, "flags": "PA"}
    fields.update(tcp)
    return bytes(IP(src="10.1.2.3", dst="10.9.8.7") / TCP(**fields) / payload)


def v6_packet(payload: bytes = b"Z\x00\x00\x00\x05I", *ext: object) -> bytes:
    pkt = IPv6(src="2001:db8::1", dst="::1")
    for header in ext:
        pkt = pkt / header
    return bytes(pkt / TCP(sport=5432, dport=40000, seq=7, ack=9, flags="A") / payload)


# -- recorded frames ----------------------------------------------------------


def test_agrees_with_scapy_on_every_recorded_frame() -> None:
    frames = zeek_frames()
    tcp_frames = 0
    for fr in frames:
        seg = decode_frame(fr)
        pkt = Ether(fr.data)
        if TCP not in pkt:
            assert seg is None, fr
            continue
        tcp_frames += 1
        ip, t = pkt[IP], pkt[TCP]
        end = 14 + ip.len
        poff = 14 + ip.ihl * 4 + t.dataofs * 4
        assert seg is not None, fr
        assert (seg.src, seg.sport, seg.dst, seg.dport) == (ip.src, t.sport, ip.dst, t.dport)
        assert (seg.seq, seg.ack, seg.flags) == (t.seq, t.ack, int(t.flags))
        assert seg.payload_offset == poff
        assert seg.payload == fr.data[poff:end]
        assert seg.missing == 0
        assert (seg.frame, seg.ts) == (fr.no, fr.ts)
    assert tcp_frames == len(frames) == 594  # all of them are TCP over Ethernet


def test_fast_path_builds_the_same_segment_as_the_constructor() -> None:
    fr = frame(bytes(Ether(**MACS) / IP(v4_packet())))
    seg = decode_frame(fr)
    assert seg is not None
    same = TcpSegment(*astuple(seg))
    assert seg == same
    assert hash(seg) == hash(same)
    assert repr(seg) == repr(same)
    with pytest.raises(AttributeError):
        seg.seq = 5  # type: ignore[misc]


# -- link layers --------------------------------------------------------------

IPV4 = v4_packet()
IPV6 = v6_packet()


def _sll(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHH8sH", 4, 1, 6, b"\x02\x00\x00\x00\x00\x01\0\0", proto) + payload


def _sll2(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, 4, 6, b"\x02\x00\x00\x00\x00\x01\0\0") + payload


LINK_CASES = [
    ("ethernet", 1, bytes(Ether(**MACS) / IP(IPV4)), 14),
    (
        "802.1Q",
        1,
        bytes(Ether(**MACS) / Dot1Q(vlan=100) / IP(IPV4)),
        18,
    ),
    (
        "802.1ad+802.1Q",
        1,
        bytes(Ether(**MACS) / Dot1AD(vlan=7) / Dot1Q(vlan=100) / IP(IPV4)),
        22,
    ),
    ("null LE", 0, struct.pack("<I", 2) + IPV4, 4),
    ("null BE", 0, struct.pack(">I", 2) + IPV4, 4),
    ("loop", 108, struct.pack(">I", 2) + IPV4, 4),
    ("raw 101", 101, IPV4, 0),
    ("raw 12", 12, IPV4, 0),
    ("raw 14", 14, IPV4, 0),
    ("ipv4 228", 228, IPV4, 0),
    ("sll", 113, _sll(0x0800, IPV4), 16),
    ("sll2", 276, _sll2(0x0800, IPV4), 20),
    ("ethernet v6", 1, bytes(Ether(**MACS) / IPv6(IPV6)), 14),
    (
        "802.1Q v6",
        1,
        bytes(Ether(**MACS) / Dot1Q(vlan=5) / IPv6(IPV6)),
        18,
    ),
    ("null v6 BSD", 0, struct.pack("<I", 24) + IPV6, 4),
    ("null v6 FreeBSD", 0, struct.pack("<I", 28) + IPV6, 4),
    ("null v6 macOS", 0, struct.pack("<I", 30) + IPV6, 4),
    ("loop v6 macOS", 108, struct.pack(">I", 30) + IPV6, 4),
    ("raw v6", 101, IPV6, 0),
    ("ipv6 229", 229, IPV6, 0),
    ("sll v6", 113, _sll(0x86DD, IPV6), 16),
    ("sll2 v6", 276, _sll2(0x86DD, IPV6), 20),
]


@pytest.mark.parametrize(
    ("name", "linktype", "data", "ip_off"), LINK_CASES, ids=[c[0] for c in LINK_CASES]
)
def test_every_link_type(name: str, linktype: int, data: bytes, ip_off: int) -> None:
    assert linktype in LINKTYPE_NAMES
    seg = decode_frame(frame(data, linktype))
    assert seg is not None
    if data[ip_off] >> 4 == 4:
        assert (seg.src, seg.sport, seg.dst, seg.dport) == ("10.1.2.3", 40000, "10.9.8.7", 5432)
        assert (seg.seq, seg.ack, seg.flags) == (1000, 2000, TCP_PSH | TCP_ACK)
        assert seg.payload == b"Q\x00\x00\x00\rselect 1\x00"
        assert seg.payload_offset == ip_off + 40
    else:
        assert (seg.src, seg.sport, seg.dst, seg.dport) == ("2001:db8::1", 5432, "::1", 40000)
        assert (seg.seq, seg.ack, seg.flags) == (7, 9, TCP_ACK)
        assert seg.payload == b"Z\x00\x00\x00\x05I"
        assert seg.payload_offset == ip_off + 60
    assert_headers_tile(frame(data, linktype), seg.payload_offset)


def test_unknown_link_type() -> None:
    with pytest.raises(CaptureError, match=r"^unknown link type 9999$"):
        decode_frame(frame(IPV4, 9999))
    with pytest.raises(CaptureError, match=r"^unknown link type 147$"):
        dissect_headers(frame(IPV4, 147))


# -- IP and TCP details -------------------------------------------------------


def test_ethernet_padding_is_not_payload() -> None:
    bare = bytes(Ether(**MACS) / IP(v4_packet(b"", flags="A")))
    assert len(bare) == 54
    seg = decode_frame(frame(bare + b"\0" * 6))  # padded to the 60-byte minimum
    assert seg is not None and seg.payload == b"" and seg.missing == 0
    one = bytes(Ether(**MACS) / IP(v4_packet(b"N")))  # SSLResponse 'N'
    seg = decode_frame(frame(one + b"\0" * 5))
    assert seg is not None and seg.payload == b"N"


def test_ipv4_options() -> None:
    pkt = bytes(
        Ether(**MACS)
        / IP(
            src="1.2.3.4", dst="5.6.7.8", options=[IPOption_NOP(), IPOption_RR(routers=["9.9.9.9"])]
        )
        / TCP(sport=1, dport=5432, flags="S", options=[("MSS", 1460), ("WScale", 7)])
        / b"xyz"
    )
    seg = decode_frame(frame(pkt))
    assert seg is not None
    ihl = (pkt[14] & 0x0F) * 4
    assert ihl > 20
    assert seg.payload == b"xyz"
    assert seg.flags == TCP_SYN
    assert seg.payload_offset == len(pkt) - 3
    assert_headers_tile(frame(pkt), seg.payload_offset)


def test_ipv6_extension_headers() -> None:
    chain = (
        IPv6ExtHdrHopByHop(),
        IPv6ExtHdrRouting(addresses=["2001:db8::9"]),
        IPv6ExtHdrDestOpt(),
        IPv6ExtHdrFragment(offset=0, m=0, id=77),  # an atomic fragment: decodable
    )
    data = bytes(Ether(**MACS) / IPv6(v6_packet(b"abc", *chain)))
    seg = decode_frame(frame(data))
    assert seg is not None
    assert seg.payload == b"abc"
    assert seg.payload_offset == len(data) - 3
    fields = assert_headers_tile(frame(data), seg.payload_offset)
    names = [f.name for f in fields if f.layer == "ip" and f.name.endswith(" header")]
    assert names == [
        "Next header",
        "Hop-by-hop options header",
        "Routing header",
        "Destination options header",
        "Fragment header",
    ]


def test_ipv6_authentication_header() -> None:
    tcp = bytes(TCP(sport=5432, dport=1, flags="A") / b"hi")
    ah = bytes([6, 4, 0, 0]) + struct.pack("!II", 0x100, 1) + bytes(12)  # 24 bytes
    ip6 = struct.pack(
        "!IHBB16s16s", 6 << 28, len(ah) + len(tcp), 51, 64, bytes(15) + b"\1", bytes(15) + b"\1"
    )
    seg = decode_frame(frame(ip6 + ah + tcp, 229))
    assert seg is not None and seg.payload == b"hi" and seg.payload_offset == 40 + 24 + 20


@pytest.mark.parametrize(
    "data",
    [
        bytes(Ether(**MACS) / ARP()),
        bytes(Ether(**MACS) / IP() / UDP(dport=5432) / b"x"),
        bytes(Ether(**MACS) / IP() / ICMP()),
        bytes(Ether(**MACS) / IP(frag=10, proto=6) / (b"\0" * 40)),  # non-first IPv4 fragment
        bytes(Ether(**MACS) / IPv6() / UDP()),
        bytes(Ether(**MACS) / IPv6() / IPv6ExtHdrFragment(offset=10, nh=6) / (b"\0" * 40)),
        bytes(Ether(**MACS) / IPv6(nh=50) / (b"\0" * 40)),  # ESP
        bytes(Ether(type=0x88CC, **MACS) / (b"\0" * 40)),  # LLDP
        bytes(Ether(**MACS) / IP(IPV4))[:40],  # cut in the TCP header's fixed part
    ],
    ids=["arp", "udp", "icmp", "v4-fragment", "udp6", "v6-fragment", "esp", "lldp", "short"],
)
def test_not_tcp(data: bytes) -> None:
    assert decode_frame(frame(data)) is None
    dissect_headers(frame(data))  # never raises


def test_snapshot_length_cut() -> None:
    full = bytes(Ether(**MACS) / IP(v4_packet(b"D" * 1000)))
    seg = decode_frame(Frame(1, 0.0, 1, full[:100], len(full)))
    assert seg is not None
    assert seg.payload == full[54:100]
    assert seg.missing == 1000 - 46
    # Cut inside the TCP options: no payload, all of it missing.
    opts = bytes(
        Ether(**MACS)
        / IP()
        / TCP(options=[("Timestamp", (1, 2)), ("NOP", None), ("NOP", None)])
        / (b"E" * 10)
    )
    seg = decode_frame(Frame(1, 0.0, 1, opts[:60], len(opts)))
    assert seg is not None
    assert (seg.payload, seg.missing, seg.payload_offset) == (b"", 10, 66)


def test_tso_zero_ip_length_means_rest_of_frame() -> None:
    data = bytearray(bytes(Ether(**MACS) / IP(v4_packet(b"P" * 3000))))
    data[16:18] = b"\0\0"  # total length 0, as captured before TCP segmentation offload
    seg = decode_frame(frame(bytes(data)))
    assert seg is not None and seg.payload == b"P" * 3000


# -- dissect_headers ----------------------------------------------------------


def assert_headers_tile(fr: Frame, payload_offset: int) -> list:
    """The fields cover [0, payload_offset) exactly once, layer by layer, in order."""
    fields = dissect_headers(fr)
    pos = 0
    layers = []
    for f in fields:
        assert f.start == pos, (f, pos)
        assert f.end > f.start
        pos = f.end
        if not layers or layers[-1] != f.layer:
            layers.append(f.layer)
    assert pos == payload_offset
    assert layers in (["link", "ip", "tcp"], ["ip", "tcp"])
    return fields


def test_dissect_values_of_a_recorded_syn() -> None:
    fr = zeek_frames()[0]  # bad-backend-message-1.pcap, frame 1
    seg = decode_frame(fr)
    assert seg is not None
    fields = {(f.layer, f.name): f for f in assert_headers_tile(fr, seg.payload_offset)}
    pkt = Ether(fr.data)
    assert fields["link", "Destination MAC"].value == pkt.dst
    assert fields["link", "Source MAC"].value == pkt.src
    assert fields["link", "EtherType"].value == "0x0800 (IPv4)"
    assert fields["ip", "Source address"].value == pkt[IP].src
    assert fields["ip", "Total length"].value == f"{pkt[IP].len} bytes"
    assert fields["ip", "Header checksum"].value == f"0x{pkt[IP].chksum:04x}"
    assert fields["tcp", "Source port"].value == str(pkt[TCP].sport)
    assert fields["tcp", "Destination port"].value == "5432"
    assert fields["tcp", "Sequence number"].value == str(pkt[TCP].seq)
    assert fields["tcp", "Data offset / Flags"].value.endswith("; SYN")
    assert (
        fields["tcp", "Data offset / Flags"].start,
        fields["tcp", "Data offset / Flags"].end,
    ) == (46, 48)
    assert fields["tcp", "Options"].value == f"{pkt[TCP].dataofs * 4 - 20} bytes"


def test_dissect_vlan_and_sll_values() -> None:
    data = bytes(Ether(**MACS) / Dot1AD(vlan=7, prio=3) / Dot1Q(vlan=100) / IP(IPV4))
    fields = dissect_headers(frame(data))
    link = [(f.name, f.value) for f in fields if f.layer == "link"]
    assert link[2:] == [
        ("EtherType", "0x88a8 (802.1ad VLAN)"),
        ("VLAN tag (PCP / DEI / VID)", "PCP 3, DEI 0, VID 7"),
        ("EtherType", "0x8100 (802.1Q VLAN)"),
        ("VLAN tag (PCP / DEI / VID)", "PCP 0, DEI 0, VID 100"),
        ("EtherType", "0x0800 (IPv4)"),
    ]
    sll = dissect_headers(frame(_sll(0x0800, IPV4), 113))
    assert [(f.name, f.value) for f in sll[:2]] == [
        ("Packet type", "4 (sent by us)"),
        ("ARPHRD type", "1"),
    ]
    null = dissect_headers(frame(struct.pack(">I", 30) + IPV6, 0))
    assert null[0].value == "30 (AF_INET6, IPv6), big-endian"


def test_dissect_stops_at_the_last_complete_field() -> None:
    data = bytes(Ether(**MACS) / IP(IPV4))
    for cut in range(len(data)):
        fields = dissect_headers(frame(data[:cut]))
        assert all(f.end <= cut for f in fields)
        if fields:
            assert fields[-1].end == max(f.end for f in fields)


# -- robustness ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(linktype=st.sampled_from(sorted(LINKTYPE_NAMES)), data=st.binary(max_size=120))
def test_random_bytes_never_raise(linktype: int, data: bytes) -> None:
    seg = decode_frame(frame(data, linktype))
    if seg is not None:
        assert seg.payload_offset <= len(data) or seg.payload == b""
        assert len(seg.payload) + seg.payload_offset <= max(len(data), seg.payload_offset)
    fields = dissect_headers(frame(data, linktype))
    assert all(0 <= f.start < f.end <= len(data) for f in fields)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 300), flip=st.integers(0, 299), bit=st.integers(0, 7))
def test_mutated_real_frames_never_raise(cut: int, flip: int, bit: int) -> None:
    data = bytearray(
        bytes(Ether(**MACS) / Dot1Q() / IPv6(v6_packet(b"x" * 100, IPv6ExtHdrHopByHop())))
    )
    if flip < len(data):
        data[flip] ^= 1 << bit
    fr = frame(bytes(data[:cut]))
    decode_frame(fr)
    dissect_headers(fr)
