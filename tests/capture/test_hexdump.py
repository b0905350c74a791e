"""read_hexdump on real dumps of real frames, in every format it reads.

The frames come from the Zeek captures. The files in data/ are real tool
output (tcpdump 4.99, GNU od, hexdump, xxd; see data/README.md); the
formatters below follow each tool's documented format and are checked
against those files byte for byte before they are trusted for more frames
(Wireshark's two formats follow its source: epan/print.c
print_hex_data_buffer and ui/qt/utils/data_printer.cpp hexTextDump).
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from capture_builders import ZEEK, pcap
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6

from pgwire_inspect.capture import Frame, TcpSegment, decode_frame, open_capture
from pgwire_inspect.capture.hexdump import guess_linktype, looks_like_hexdump, read_hexdump
from pgwire_inspect.errors import CaptureError

DATA = Path(__file__).parent / "data"


def zeek(name: str) -> list[Frame]:
    path = ZEEK / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the shared captures must sit beside the project")
    return list(open_capture(path))


@pytest.fixture(scope="module")
def chosen() -> list[Frame]:
    """The frames of the fixture files, in their order."""
    return [zeek("psql-select-now.pcap")[0], *(zeek("greenhouse-app.pcap")[i] for i in (9, 122))]


@pytest.fixture(scope="module")
def many() -> list[Frame]:
    """Frames with every kind of content: handshakes, text, hex-looking ASCII, 1514 bytes."""
    g = zeek("greenhouse-app.pcap")
    picked = zeek("psql-select-now.pcap") + [g[i] for i in (9, 10, 31, 75, 84, 122, 127)]
    return picked + zeek("http-on-port-5432.pcap")[5:7]


def _ascii(chunk: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)


def _lines(data: bytes, width: int = 16) -> list[tuple[int, bytes]]:
    return [(off, data[off : off + width]) for off in range(0, len(data), width)]


# -- formatters ---------------------------------------------------------------


def tcpdump_hex(data: bytes, ascii: bool) -> str:
    """tcpdump -x/-xx (ascii False) and -X/-XX (ascii True): print-ascii.c."""
    out = []
    for off, chunk in _lines(data):
        groups = "".join(f" {chunk[i : i + 2].hex()}" for i in range(0, len(chunk), 2))
        line = f"\t0x{off:04x}:  {groups[1:]}"
        if ascii:
            line = f"\t0x{off:04x}:  {groups[1:]:<39}  {_ascii(chunk)}"
        out.append(line)
    return "\n".join(out) + "\n"


def od_x1(data: bytes) -> str:
    """od -Ax -tx1: 6-digit offsets, repeated lines as '*', the length last."""
    out = []
    prev = None
    starred = False
    for off, chunk in _lines(data):
        if chunk == prev and len(chunk) == 16:
            if not starred:
                out.append("*")
                starred = True
            continue
        starred = False
        prev = chunk
        out.append(f"{off:06x}" + "".join(f" {b:02x}" for b in chunk))
    out.append(f"{len(data):06x}")
    return "\n".join(out) + "\n"


def hexdump_c(data: bytes) -> str:
    """hexdump -C: two groups of 8 bytes, ASCII between bars, the length last."""
    out = []
    for off, chunk in _lines(data):
        left = "".join(f"{b:02x} " for b in chunk[:8])
        right = "".join(f"{b:02x} " for b in chunk[8:])
        out.append(f"{off:08x}  {left:<24} {right:<24} |{_ascii(chunk)}|")
    out.append(f"{len(data):08x}")
    return "\n".join(out) + "\n"


def xxd(data: bytes) -> str:
    """xxd: groups of 2 bytes, ASCII after two spaces."""
    out = []
    for off, chunk in _lines(data):
        groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        out.append(f"{off:08x}: {groups:<39}  {_ascii(chunk)}")
    return "\n".join(out) + "\n"


def tshark_x(data: bytes, delimit: bool = False) -> str:
    """tshark -x / Export Packet Dissections (epan/print.c print_hex_data_buffer)."""
    digits = 4 if len(data) <= 0x10000 else 8
    out = []
    for off, chunk in _lines(data):
        text = f"|{_ascii(chunk)}|" if delimit else _ascii(chunk)
        hexpart = "".join(f"{b:02x} " for b in chunk)
        out.append(f"{off:0{digits}x}  {hexpart:<48}  {text}")
    return "\n".join(out) + "\n"


def wireshark_copy(data: bytes, ascii: bool = True, colon: bool = False) -> str:
    """Wireshark "Copy as Hex Dump" (data_printer.cpp hexTextDump): 3 spaces each side."""
    out = []
    lines = _lines(data)
    for n, (off, chunk) in enumerate(lines):
        line = f"{off:04x}{':' if colon else ''}  " + "".join(f" {b:02x}" for b in chunk)
        if ascii:
            pad = "   " * (16 - len(chunk)) if n == len(lines) - 1 else ""
            line += "   " + pad + _ascii(chunk)
        out.append(line)
    return "\n".join(out) + "\n"


def single_space(data: bytes) -> str:
    """Offset, bytes and ASCII separated by one space, the last line not padded."""
    return "\n".join(
        f"{off:04x} " + " ".join(f"{b:02x}" for b in chunk) + " " + _ascii(chunk)
        for off, chunk in _lines(data)
    )


FORMATS: dict[str, Callable[[bytes], str]] = {
    "wireshark copy": wireshark_copy,
    "wireshark copy, hex only": lambda d: wireshark_copy(d, ascii=False),
    "wireshark copy, 0000:": lambda d: wireshark_copy(d, colon=True),
    "tshark -x": tshark_x,
    "tshark --hexdump delimit": lambda d: tshark_x(d, delimit=True),
    "single space": single_space,
    "tcpdump -xx": lambda d: tcpdump_hex(d, ascii=False),
    "tcpdump -XX": lambda d: tcpdump_hex(d, ascii=True),
    "od -Ax -tx1": od_x1,
    "hexdump -C": hexdump_c,
    "xxd": xxd,
}


def dump_lines(text: str) -> list[str]:
    """The dump lines of real tool output (no tcpdump packet lines or file notices)."""
    return [ln for ln in text.splitlines() if ln.startswith(("\t0x", "0"))]


# -- the formatters against the real tools --------------------------------------


@pytest.mark.parametrize(
    ("fixture", "fmt", "ip_only"),
    [
        ("tcpdump-xx.txt", "tcpdump -xx", False),
        ("tcpdump-XX.txt", "tcpdump -XX", False),
        ("tcpdump-X.txt", "tcpdump -XX", True),
        ("od.txt", "od -Ax -tx1", False),
    ],
)
def test_formatters_match_the_real_tools(
    chosen: list[Frame], fixture: str, fmt: str, ip_only: bool
) -> None:
    text = (DATA / fixture).read_text()
    made = "".join(FORMATS[fmt](f.data[14:] if ip_only else f.data) for f in chosen)
    assert dump_lines(made) == dump_lines(text)


def test_formatters_match_hexdump_and_xxd(chosen: list[Frame]) -> None:
    two = chosen[1:]
    assert "".join(hexdump_c(f.data) for f in two) == (DATA / "hexdump-C.txt").read_text()
    assert "".join(xxd(f.data) for f in two) == (DATA / "xxd.txt").read_text()
    padded = chosen[0].data + bytes(54)
    assert od_x1(padded) == (DATA / "od-repeat.txt").read_text()


# -- reading the real tool output -----------------------------------------------


def same_segment(a: TcpSegment | None, b: TcpSegment | None) -> bool:
    """Equal but for where they came from (frame number, time, payload offset)."""
    assert a is not None and b is not None
    strip = {"frame": 0, "ts": 0.0, "payload_offset": 0}
    return dataclasses.replace(a, **strip) == dataclasses.replace(b, **strip)


@pytest.mark.parametrize(
    "fixture", ["tcpdump-xx.txt", "tcpdump-XX.txt", "od.txt", "hexdump-C.txt", "xxd.txt"]
)
def test_real_ethernet_dumps(chosen: list[Frame], fixture: str) -> None:
    frames = read_hexdump((DATA / fixture).read_text())
    want = chosen if fixture.startswith(("tcpdump", "od")) else chosen[1:]
    assert [f.data for f in frames] == [f.data for f in want]
    assert [f.no for f in frames] == list(range(1, len(want) + 1))
    assert all(f.linktype == 1 and f.wirelen == len(f.data) for f in frames)
    for got, orig in zip(frames, want, strict=True):
        seg = decode_frame(got)
        assert seg == dataclasses.replace(decode_frame(orig), frame=got.no, ts=got.ts)


def test_tcpdump_timestamps(chosen: list[Frame]) -> None:
    epoch = read_hexdump((DATA / "tcpdump-XX.txt").read_text())  # tcpdump -tt
    assert [f.ts for f in epoch] == pytest.approx([f.ts for f in chosen], abs=1e-6)
    dated = read_hexdump((DATA / "tcpdump-X.txt").read_text())  # tcpdump -tttt, TZ=UTC
    assert [f.ts for f in dated] == pytest.approx([f.ts for f in chosen], abs=1e-6)
    # The default time of day: seconds since midnight.
    tod = read_hexdump((DATA / "tcpdump-xx.txt").read_text())
    assert [f.ts for f in tod] == pytest.approx([f.ts % 86400 for f in chosen], abs=1e-6)
    # No packet lines: the block index.
    assert [f.ts for f in read_hexdump((DATA / "od.txt").read_text())] == [0.0, 1.0, 2.0]


def test_tcpdump_x_is_raw_ip(chosen: list[Frame]) -> None:
    frames = read_hexdump((DATA / "tcpdump-X.txt").read_text())
    assert [f.data for f in frames] == [f.data[14:] for f in chosen]
    assert {f.linktype for f in frames} == {101}
    for got, orig in zip(frames, chosen, strict=True):
        seg, want = decode_frame(got), decode_frame(orig)
        assert same_segment(seg, want)
        assert seg is not None and want is not None
        assert seg.payload_offset == want.payload_offset - 14


def test_od_repeated_lines(chosen: list[Frame]) -> None:
    (frame,) = read_hexdump((DATA / "od-repeat.txt").read_text())
    assert frame.data == chosen[0].data + bytes(54)
    assert same_segment(decode_frame(frame), decode_frame(chosen[0]))  # padding is no payload


# -- every format, many frames ------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_gives_the_same_frames(many: list[Frame], fmt: str) -> None:
    text = "\n".join(FORMATS[fmt](f.data) for f in many)
    frames = read_hexdump(text)
    assert [f.data for f in frames] == [f.data for f in many]
    assert all(f.linktype == 1 for f in frames)
    for got, orig in zip(frames, many, strict=True):
        assert same_segment(decode_frame(got), decode_frame(orig))


@pytest.mark.parametrize("fmt", ["wireshark copy", "tshark -x", "single space", "tcpdump -XX"])
def test_blocks_without_blank_lines(many: list[Frame], fmt: str) -> None:
    # The offset starting again at 0 separates the frames.
    text = "".join(FORMATS[fmt](f.data).rstrip("\n") + "\n" for f in many)
    assert [f.data for f in read_hexdump(text)] == [f.data for f in many]


def test_a_single_frame_handout() -> None:
    query = zeek("psql-select-now.pcap")[19]  # Query "select now()"
    text = wireshark_copy(query.data)
    assert text.splitlines()[-1].endswith("   w().")
    (frame,) = read_hexdump(text)
    assert frame == Frame(1, 0.0, 1, query.data, len(query.data))
    seg = decode_frame(frame)
    assert seg is not None and seg.payload == b"Q\x00\x00\x00\x11select now()\x00"


def test_hex_looking_ascii_on_the_last_line() -> None:
    frame = zeek("greenhouse-app.pcap")[122]  # 66 bytes: the last line holds 38 45, "8E"
    for fmt in FORMATS.values():
        text = fmt(frame.data)
        assert read_hexdump(text)[0].data == frame.data, text


def test_one_line_blocks() -> None:
    # Too short for a frame, but the line logic must still hold: "cafe" and
    # "00" in the ASCII column are not hex bytes.
    for data in (b"cafe", b"00", b"\x00\x01", b"ab 00"):
        for name, fmt in FORMATS.items():
            got = read_hexdump(fmt(data), linktype=1)[0].data
            assert got == data, (name, fmt(data))


def test_wireshark_data_source_labels() -> None:
    frame = zeek("psql-select-now.pcap")[21]
    seg = decode_frame(frame)
    assert seg is not None
    text = (
        f"Frame ({len(frame.data)} bytes):\n{tshark_x(frame.data)}\n"
        f"Reassembled TCP ({len(seg.payload)} bytes):\n{tshark_x(seg.payload)}"
    )
    (got,) = read_hexdump(text)
    assert got.data == frame.data


def test_comments_and_windows_line_ends(many: list[Frame]) -> None:
    body = "\n\n# next frame\n".join(wireshark_copy(f.data) for f in many[:3])
    text = "Captured on the training network\n" + body.replace("\n", "\r\n")
    assert [f.data for f in read_hexdump(text)] == [f.data for f in many[:3]]


# -- link types ----------------------------------------------------------------------


def test_link_types_are_guessed(chosen: list[Frame]) -> None:
    eth = chosen[1].data
    ip = eth[14:]
    null_le = struct.pack("<I", 2) + ip
    null_be = struct.pack("!I", 2) + ip
    sll = struct.pack("!HHH8sH", 0, 1, 6, eth[6:12] + b"\0\0", 0x0800) + ip
    vlan = eth[:12] + struct.pack("!HH", 0x8100, 5) + eth[12:]
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000, dport=5432))
    cases = {eth: 1, vlan: 1, ip: 101, null_le: 0, null_be: 0, sll: 113, v6: 101}
    for data, linktype in cases.items():
        assert guess_linktype(data) == linktype
        (frame,) = read_hexdump(wireshark_copy(data))
        assert frame.linktype == linktype
        seg = decode_frame(frame)
        assert seg is not None and seg.dport == 5432
    assert guess_linktype(b"hello, world, this is no packet") is None


def test_given_link_type_wins(chosen: list[Frame]) -> None:
    (frame,) = read_hexdump(wireshark_copy(chosen[1].data), linktype=113)
    assert frame.linktype == 113


def test_unguessable_frames_take_the_common_link_type(many: list[Frame]) -> None:
    arp_like = bytes(12) + b"\x08\x06" + bytes(28)
    text = "\n".join(wireshark_copy(d) for d in (many[0].data, arp_like, many[1].data))
    assert [f.linktype for f in read_hexdump(text)] == [1, 1, 1]
    with pytest.raises(CaptureError, match=r"^cannot tell the link type of the hex dump"):
        read_hexdump(wireshark_copy(arp_like))


# -- errors --------------------------------------------------------------------------


def test_a_missing_line_is_an_error(chosen: list[Frame]) -> None:
    lines = wireshark_copy(chosen[1].data).splitlines()
    del lines[2]  # offset 0x0020
    text = "Frame 2\n" + "\n".join(lines)
    with pytest.raises(CaptureError, match=r"^line 4: offset 0x0030 does not follow 0x0010$"):
        read_hexdump(text)
    od_lines = od_x1(chosen[1].data).splitlines()
    del od_lines[0]
    with pytest.raises(CaptureError, match=r"^line 1: hex dump starts at offset 0x0010, not 0$"):
        read_hexdump("\n".join(od_lines))


def test_no_dump() -> None:
    for text in ("", "hello\n\nworld\n", (DATA / "tcpdump-X.txt").read_text().splitlines()[1]):
        with pytest.raises(CaptureError, match=r"^no hex dump found$"):
            read_hexdump(text)


def test_looks_like_hexdump(chosen: list[Frame], tmp_path: Path) -> None:
    for fixture in DATA.glob("*.txt"):
        assert looks_like_hexdump(fixture.read_bytes()), fixture
    # A long dump: only its first bytes are looked at.
    long = "".join(wireshark_copy(f.data) for f in chosen * 30).encode()
    assert len(long) > 8192 and looks_like_hexdump(long)
    raw = (ZEEK / "psql-select-now.pcap").read_bytes()
    made = pcap([(1, 0, chosen[0].data, len(chosen[0].data))])
    for data in (raw, made, gzip.compress(raw), b"", b"hello world\n", "é 0000".encode()):
        assert not looks_like_hexdump(data)
