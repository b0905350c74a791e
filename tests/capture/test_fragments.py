"""FragmentReassembler on real frames fragmented by scapy, shuffled.

Real frames of the Zeek captures are cut into IPv4 fragments with scapy's
``fragment()`` (IPv6: ``fragment6()``); the reassembled frame must decode
to the same TCP segment as the frame before fragmentation, and for IPv4
be byte for byte that frame.
"""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest
from capture_builders import ZEEK
from scapy.layers.inet import IP, TCP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6
from scapy.utils import checksum

from pgwire_inspect.capture import Frame, TcpSegment, decode_frame, open_capture
from pgwire_inspect.capture.fragments import FragmentReassembler, internet_checksum

T0 = 1700000000.0


def zeek(name: str) -> list[Frame]:
    path = ZEEK / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the shared captures must sit beside the project")
    return list(open_capture(path))


@pytest.fixture(scope="module")
def big() -> list[Frame]:
    """Real frames with long TCP payloads: a SASL message, DataRows, HTTP bodies."""
    frames = [zeek("psql-select-now.pcap")[17], zeek("psql-select-now.pcap")[21]]
    frames += [f for f in zeek("http-on-port-5432.pcap") if len(f.data) == 1514][:2]
    return frames


def fragments_of(frame: Frame, size: int, first_no: int = 1) -> list[Frame]:
    """The frame's IPv4 datagram as fragments of ``size`` payload bytes, same link header."""
    ip = IP(frame.data[14:])
    pieces = [frame.data[:14] + bytes(p) for p in fragment(ip, fragsize=size)]
    return [Frame(first_no + i, T0 + i * 0.001, 1, d, len(d)) for i, d in enumerate(pieces)]


def same_segment(a: TcpSegment | None, b: TcpSegment | None) -> bool:
    assert a is not None and b is not None
    return dataclasses.replace(a, frame=0, ts=0.0) == dataclasses.replace(b, frame=0, ts=0.0)


def ip_end(frame: Frame) -> int:
    """Where the IPv4 datagram of an Ethernet frame ends (Ethernet padding cut off)."""
    return 14 + struct.unpack_from("!H", frame.data, 16)[0]


# -- IPv4 -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 64, 512, 1000])
def test_shuffled_fragments_give_back_the_frame(big: list[Frame], size: int) -> None:
    rng = random.Random(size)
    for orig in big:
        frags = fragments_of(orig, size)
        if len(frags) < 2:
            continue
        # decode_frame alone never misreads a fragment, not even the first one
        # (its payload would be only part of the segment): it says "not TCP".
        assert all(decode_frame(f) is None for f in frags)
        rng.shuffle(frags)
        r = FragmentReassembler()
        out = [r.feed(f) for f in frags]
        assert out[:-1] == [None] * (len(frags) - 1)
        whole = out[-1]
        assert whole is not None
        assert (whole.no, whole.ts, whole.linktype) == (frags[-1].no, frags[-1].ts, 1)
        assert whole.data == orig.data[: ip_end(orig)]
        assert whole.wirelen == len(whole.data)
        assert same_segment(decode_frame(whole), decode_frame(orig))
        assert internet_checksum(whole.data[14:34]) == 0
        r.finish()
        assert r.problems == [] and r.reassembled == 1 and r.pending == 0


def test_other_frames_pass_through_unchanged() -> None:
    frames = zeek("greenhouse-app.pcap")
    r = FragmentReassembler()
    out = list(r.reassemble(frames))
    assert len(out) == len(frames)
    assert all(a is b for a, b in zip(out, frames, strict=True))
    assert r.problems == []


def test_interleaved_datagrams_among_other_frames(big: list[Frame]) -> None:
    a = fragments_of(big[0], 64, first_no=100)
    b = fragments_of(big[2], 256, first_no=200)
    plain = zeek("psql-select-now.pcap")[:6]
    mixed = [x for trio in zip(a, b, plain, strict=False) for x in trio]
    mixed += a[len(plain) :] + b[len(plain) :]
    out = list(FragmentReassembler().reassemble(mixed))
    whole = [f for f in out if f.no >= 100]
    assert [f.no for f in out if f.no < 100] == [f.no for f in plain]
    assert sorted(f.data for f in whole) == sorted(
        [big[0].data[: ip_end(big[0])], big[2].data[: ip_end(big[2])]]
    )


def test_repeated_fragments_are_dropped(big: list[Frame]) -> None:
    # A capture on Linux loopback sees every packet twice.
    frags = fragments_of(big[2], 128)
    twice = [f for f in frags for _ in range(2)]
    r = FragmentReassembler()
    out = [f for f in r.reassemble(twice) if f is not None]
    assert len(out) == 1 and out[0].data == big[2].data[: ip_end(big[2])]
    assert r.problems == []
    assert r.duplicates == len(frags)


def test_incomplete_datagrams_are_reported_not_read(big: list[Frame]) -> None:
    frames = fragments_of(big[2], 480)  # payload 1480 bytes: 480, 480, 480, 40
    ip = IP(big[2].data[14:])
    ident = ip.id
    r = FragmentReassembler()
    assert [r.feed(f) for f in frames[:2] + frames[3:]] == [None] * 3
    r.finish()
    total = ip.len - 20
    assert total == 1480
    real = f"{ip.src} > {ip.dst}"
    name = f"IPv4 fragments of {real} id 0x{ident:04x}"
    assert r.problems == [f"{name} incomplete: 1000 of 1480 bytes"]

    # The last fragment missing: its length is not known.
    r = FragmentReassembler()
    for f in frames[:-1]:
        assert r.feed(f) is None
    r.finish()
    assert r.problems == [f"{name} incomplete: 1440 bytes, the last fragment is missing"]

    # The first fragment missing.
    r = FragmentReassembler()
    for f in frames[1:]:
        assert r.feed(f) is None
    r.finish()
    assert r.problems == [f"{name} incomplete: 1000 of 1480 bytes, the first fragment is missing"]


def test_timeout_in_capture_seconds(big: list[Frame]) -> None:
    frags = fragments_of(big[2], 480)
    late = [dataclasses.replace(f, ts=T0 + 31.0) for f in frags[2:]]
    r = FragmentReassembler(timeout=30.0)
    out = [r.feed(f) for f in frags[:2] + late]
    assert out == [None] * 4  # the first two were given up before the rest came
    assert len(r.problems) == 1
    assert r.problems[0].endswith("incomplete: 960 bytes, the last fragment is missing after 30 s")
    r.finish()
    assert len(r.problems) == 2
    assert "incomplete: 520 of 1480 bytes, the first fragment is missing" in r.problems[1]


def test_bounds(big: list[Frame]) -> None:
    firsts = []
    for i, orig in enumerate(big):
        ident = struct.pack("!H", 0x1000 + i)
        frame = dataclasses.replace(orig, data=orig.data[:18] + ident + orig.data[20:])
        firsts.append(fragments_of(frame, 64)[0])
    r = FragmentReassembler(max_datagrams=2)
    for f in firsts:
        assert r.feed(f) is None
    assert r.pending == 2
    assert len(r.problems) == len(big) - 2
    assert r.problems[0].endswith("(more than 2 datagrams waiting)")
    r = FragmentReassembler(max_bytes=100)
    for f in firsts:
        assert r.feed(f) is None
    assert r.pending == 1
    assert r.problems[-1].endswith("(more than 100 fragment bytes waiting)")


def test_overlaps_keep_the_first_bytes(big: list[Frame]) -> None:
    orig = big[0]
    ip = IP(orig.data[14:])
    payload = bytes(ip)[20:]
    header = bytes(ip)[:20]

    def frag(off: int, data: bytes, more: bool, no: int) -> Frame:
        h = bytearray(header)
        h[2:4] = struct.pack("!H", 20 + len(data))
        h[6:8] = struct.pack("!H", (0x2000 if more else 0) | off // 8)
        h[10:12] = b"\0\0"
        h[10:12] = struct.pack("!H", internet_checksum(bytes(h)))
        d = orig.data[:14] + bytes(h) + data
        return Frame(no, T0, 1, d, len(d))

    forged = bytes(b ^ 0xFF for b in payload[16:48])
    frames = [
        frag(0, payload[:32], True, 1),
        frag(16, forged, True, 2),  # overlaps bytes 16-32 and brings 32-48
        frag(48, payload[48:], False, 3),
    ]
    r = FragmentReassembler()
    out = [r.feed(f) for f in frames]
    whole = out[-1]
    assert whole is not None
    want = payload[:32] + forged[16:] + payload[48:]
    assert whole.data[34:] == want
    assert len(r.problems) == 1
    assert r.problems[0].startswith(f"IPv4 fragments of {ip.src} > {ip.dst} id 0x{ip.id:04x}:")
    assert "frame 2 overlaps bytes held already (bytes 16-48)" in r.problems[0]


def test_raw_ip_fragments(big: list[Frame]) -> None:
    orig = big[1]
    pieces = [bytes(p) for p in fragment(IP(orig.data[14:]), fragsize=32)]
    raw = [Frame(i + 1, T0, 101, p, len(p)) for i, p in enumerate(pieces)]
    random.Random(1).shuffle(raw)
    out = list(FragmentReassembler().reassemble(raw))
    assert len(out) == 1 and out[0].linktype == 101
    assert out[0].data == orig.data[14 : ip_end(orig)]
    seg, want = decode_frame(out[0]), decode_frame(orig)
    assert want is not None
    assert same_segment(seg, dataclasses.replace(want, payload_offset=want.payload_offset - 14))


# -- IPv6 -------------------------------------------------------------------------------


@pytest.mark.parametrize("dest_opts", [False, True])
def test_ipv6_fragments(big: list[Frame], dest_opts: bool) -> None:
    tcp = TCP(big[0].data[34:])  # a real TCP segment (SASL message)
    base = IPv6(src="2001:db8::1", dst="2001:db8::2")
    if dest_opts:
        base = base / IPv6ExtHdrDestOpt()
    whole_pkt = base / tcp
    fragmented = fragment6(base / IPv6ExtHdrFragment(id=0xABCDEF) / tcp, 200)
    assert len(fragmented) > 2
    eth = big[0].data[:12] + b"\x86\xdd"
    frames = [
        Frame(i + 1, T0, 1, eth + bytes(p), 14 + len(bytes(p))) for i, p in enumerate(fragmented)
    ]
    random.Random(2).shuffle(frames)
    r = FragmentReassembler()
    out = list(r.reassemble(frames))
    assert len(out) == 1 and r.problems == []
    want = eth + bytes(whole_pkt)
    assert out[0].data == want
    orig_seg = decode_frame(Frame(1, T0, 1, want, len(want)))
    assert orig_seg is not None and orig_seg.payload == bytes(tcp.payload)
    assert same_segment(decode_frame(out[0]), orig_seg)


def test_ipv6_incomplete(big: list[Frame]) -> None:
    tcp = TCP(big[0].data[34:])
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=7) / tcp
    pieces = [bytes(p) for p in fragment6(pkt, 200)]
    frames = [Frame(i + 1, T0, 101, p, len(p)) for i, p in enumerate(pieces)]
    r = FragmentReassembler()
    assert list(r.reassemble(frames[1:])) == []
    assert len(r.problems) == 1
    assert r.problems[0].startswith(
        "IPv6 fragments of 2001:db8::1 > 2001:db8::2 id 0x00000007 incomplete: "
    )
    assert r.problems[0].endswith("the first fragment is missing")


# -- the checksum -----------------------------------------------------------------------


def test_internet_checksum_agrees_with_scapy() -> None:
    rng = random.Random(3)
    for n in [0, 1, 2, 3, 20, 21, 1500, 65535]:
        for _ in range(5):
            data = rng.randbytes(n)
            assert internet_checksum(data) == checksum(data)
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    assert internet_checksum(b"\x00\x00") == 0xFFFF
    for frame in zeek("psql-select-now.pcap"):
        assert internet_checksum(frame.data[14:34]) == 0  # real headers check out
