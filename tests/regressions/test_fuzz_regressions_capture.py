"""Inputs the fuzzers found that break the capture readers or the pipeline, kept as tests.

Built from the real captures in ``captures/`` where possible. Tests marked
``xfail(strict=True)`` fail today; once the code is fixed they pass,
strict xfail turns that into a failure, and the marker must go.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import struct
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pgwire_inspect.capture import Frame, decode_frame, open_capture, read_hexdump, write_pcap
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.protocol import MalformedMessage

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
SIMPLE = CAPTURES / "psycopg2-simple.pcap"


def simple_frames() -> list[Frame]:
    return list(open_capture(SIMPLE))


def relay_stream(direction: str) -> bytes:
    ref = json.loads((CAPTURES / "psycopg2-simple.json").read_text())
    return bytes.fromhex(ref["streams"][0][direction])


# -- the pipeline ----------------------------------------------------------------------


def test_a_stream_that_starts_with_a_gap_keeps_its_offsets() -> None:
    """The client's first data segment (its StartupMessage, both loopback copies) is lost."""
    frames = simple_frames()
    first = next(f for f in frames if (s := decode_frame(f)) is not None and s.payload
                 and s.dport == 5432)
    seq = decode_frame(first).seq  # type: ignore[union-attr]
    kept = [f for f in frames
            if not ((s := decode_frame(f)) is not None and s.payload and s.dport == 5432
                    and s.seq == seq)]
    assert len(kept) == len(frames) - 2
    conn = decode_frames(kept).connections[0]
    wire = relay_stream("F")
    msgs = [w.message for w in conn.messages if w.direction == "F"]
    assert isinstance(msgs[0], MalformedMessage) and msgs[0].offset == 0
    for m in msgs[1:]:
        assert m.raw == wire[m.offset : m.end]
    assert msgs[-1].end == len(wire)


def test_a_gap_later_in_the_stream_keeps_the_offsets() -> None:
    """The client's second data segment is lost: later messages sit at their stream offsets."""
    frames = simple_frames()
    client_data = [f for f in frames if (s := decode_frame(f)) is not None and s.payload
                   and s.dport == 5432]
    seq = decode_frame(client_data[2]).seq  # type: ignore[union-attr]  # [0:2]: one segment
    kept = [f for f in frames
            if not ((s := decode_frame(f)) is not None and s.payload and s.dport == 5432
                    and s.seq == seq)]
    conn = decode_frames(kept).connections[0]
    wire = relay_stream("F")
    msgs = [w.message for w in conn.messages if w.direction == "F"]
    assert msgs[0].offset == 0 and any(isinstance(m, MalformedMessage) for m in msgs)
    for m in msgs:
        if not isinstance(m, MalformedMessage):
            assert m.raw == wire[m.offset : m.end]


def headers_only(frames: list[Frame], copies: int) -> list[Frame]:
    """The handshake, then ``copies`` server segments of which only the headers were kept."""
    segs = [(f, decode_frame(f)) for f in frames]
    data_frame, seg = next((f, s) for f, s in segs if s is not None and s.payload
                           and s.sport == 5432)
    start = [f for f, s in segs if s is not None and not s.payload][:6]
    out = list(start)
    assert data_frame.linktype == 1  # Ethernet, then IPv4: the TCP header follows the IP one
    tcp = 14 + (data_frame.data[14] & 0x0F) * 4
    assert data_frame.data[tcp : tcp + 2] == struct.pack("!H", 5432)
    for i in range(copies):
        head = bytearray(data_frame.data[: seg.payload_offset])
        head[tcp + 4 : tcp + 8] = struct.pack("!I", (seg.seq + i * len(seg.payload)) & 0xFFFFFFFF)
        out.append(Frame(len(out) + 1, data_frame.ts + i * 1e-6, data_frame.linktype,
                         bytes(head), data_frame.wirelen))
    return out


def test_a_capture_that_kept_only_headers() -> None:
    """3000 server segments cut to their headers (a small snapshot length)."""
    frames = headers_only(simple_frames(), 3000)
    assert decode_frame(frames[-1]).missing > 0  # type: ignore[union-attr]
    dec = decode_frames(frames)
    conn = dec.connections[0]
    assert dec.truncated == 3000
    assert sum(n for d, _, n, _, _ in conn.gaps if d == "B") == 3000 * 410


def test_a_short_capture_that_kept_only_headers() -> None:
    """The same with 30 segments decodes to gaps reported as malformed stretches."""
    frames = headers_only(simple_frames(), 30)
    dec = decode_frames(frames)
    conn = dec.connections[0]
    assert dec.truncated == 30
    b = [w.message for w in conn.messages if w.direction == "B"]
    assert sum(m.length for m in b) == 30 * 410
    assert all(isinstance(m, MalformedMessage) for m in b)


# -- capture files -------------------------------------------------------------------


def pcapng_with_huge_block(tmp_path: Path) -> bytes:
    """A real pcapng file whose first Enhanced Packet Block claims 0xfffffff0 bytes."""
    frames = simple_frames()[:6]
    f0 = frames[0]
    mixed = [replace(f0, linktype=101, data=f0.data[14:], wirelen=f0.wirelen - 14), *frames[1:]]
    path = tmp_path / "mixed.pcapng"
    write_pcap(path, mixed)
    raw = path.read_bytes()
    off = 0
    while struct.unpack_from("<I", raw, off)[0] != 6:  # walk to the first EPB
        off += struct.unpack_from("<I", raw, off + 4)[0]
    return raw[: off + 4] + struct.pack("<I", 0xFFFFFFF0) + raw[off + 8 :]


def peak_bytes(call: Callable[[], object]) -> int:
    """The most memory (bytes) Python held while ``call`` ran; CaptureError is fine."""
    tracemalloc.start()
    try:
        with contextlib.suppress(CaptureError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def peak_bytes_reading(source: object) -> tuple[int, list[str]]:
    tracemalloc.start()
    try:
        cap = open_capture(source)  # type: ignore[arg-type]
        list(cap)
        return tracemalloc.get_traced_memory()[1], cap.problems
    finally:
        tracemalloc.stop()


def test_a_huge_pcapng_block_length_from_a_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(pcapng_with_huge_block(tmp_path))
    peak, problems = peak_bytes_reading(bad)
    assert problems
    assert peak < 64 << 20


def test_a_huge_pcapng_block_length_gzipped(tmp_path: Path) -> None:
    peak, problems = peak_bytes_reading(io.BytesIO(gzip.compress(pcapng_with_huge_block(tmp_path))))
    assert problems
    assert peak < 64 << 20


def test_a_huge_section_header_block_length_from_a_path(tmp_path: Path) -> None:
    raw = bytearray(pcapng_with_huge_block(tmp_path))
    raw[4:8] = struct.pack("<I", 0xFFFFFFF0)  # the Section Header Block's own length
    bad = tmp_path / "bad-shb.pcapng"
    bad.write_bytes(bytes(raw))
    assert peak_bytes(lambda: list(open_capture(bad))) < 64 << 20


def test_a_huge_pcapng_block_length_in_memory(tmp_path: Path) -> None:
    """From an uncompressed file object the claimed length is not allocated."""
    peak, problems = peak_bytes_reading(io.BytesIO(pcapng_with_huge_block(tmp_path)))
    assert len(problems) == 1 and "truncated" in problems[0]
    assert peak < 64 << 20


# -- hex dumps -----------------------------------------------------------------------

TCPDUMP_TTTT = (
    "2022-12-03 17:02:46.133726 IP 127.0.0.1.35336 > 127.0.0.1.5432: Flags [S], length 0\n"
    "\t0x0000:  4500 003c ca14 4000 4006 72a5 7f00 0001  E..<..@.@.r.....\n"
    "\t0x0010:  7f00 0001 8a08 1538 3f42 b618 0000 0000  .......8?B......\n"
    "\t0x0020:  a002 ffd7 d6ba 0000 0204 ffd7 0402 080a  ................\n"
    "\t0x0030:  51ed 92be 0000 0000 0103 0307            Q...........\n"
)


def test_a_tcpdump_packet_line_gives_the_timestamp() -> None:
    (frame,) = read_hexdump(TCPDUMP_TTTT)
    assert frame.ts == pytest.approx(1670086966.133726)
    assert len(frame.data) == 60


OD_REPEAT = (
    "000000 45 00 00 3c ca 14 40 00 40 06 72 a5 7f 00 00 01\n"
    "000010 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "*\n"
)


def test_an_od_repeat_line_is_expanded() -> None:
    """od prints ``*`` for repeated lines; the final offset says how many."""
    (frame,) = read_hexdump(OD_REPEAT + "000040\n", linktype=101)
    assert len(frame.data) == 0x40 and frame.data[0x10:] == bytes(0x30)


def test_an_od_repeat_line_with_a_huge_final_offset() -> None:
    assert peak_bytes(lambda: read_hexdump(OD_REPEAT + "4000000\n", linktype=101)) < 16 << 20


@pytest.mark.parametrize("date", ["2022-13-03", "2022-00-03"])
def test_a_tcpdump_packet_line_with_an_impossible_date(date: str) -> None:
    try:
        frames = read_hexdump(TCPDUMP_TTTT.replace("2022-12-03", date))
    except CaptureError:
        return
    assert len(frames) == 1 and len(frames[0].data) == 60
