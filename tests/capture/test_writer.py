"""write_pcap: what it writes reads back identically with open_capture."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from capture_builders import ZEEK, read_pcap_records

from pgwire_inspect.capture import Frame, open_capture, write_pcap
from pgwire_inspect.errors import CaptureError


def zeek_frames(name: str = "psql-select-now.pcap") -> list[Frame]:
    path = ZEEK / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return list(open_capture(path))


def test_roundtrip_pcap_nanoseconds(tmp_path: Path) -> None:
    frames = zeek_frames()
    # Sub-microsecond parts survive: pcap is written with nanosecond timestamps.
    frames = [Frame(f.no, f.ts + (f.no * 37) * 1e-9, f.linktype, f.data, f.wirelen) for f in frames]
    out = tmp_path / "out.pcap"
    assert write_pcap(out, iter(frames)) == 27
    raw = out.read_bytes()
    magic = struct.unpack_from("=I", raw)[0]
    assert magic == 0xA1B23C4D  # nanosecond pcap, native byte order
    cap = open_capture(out)
    back = list(cap)
    assert cap.format == "pcap" and cap.problems == []
    assert back == frames  # numbers, timestamps, link type, bytes, wire lengths
    linktype, records = read_pcap_records(raw)
    assert linktype == 1
    assert records[0][1] == round((frames[0].ts % 1) * 1e9)  # nanoseconds on disk


def test_cut_frames_keep_their_wire_length(tmp_path: Path) -> None:
    frames = [Frame(1, 1.5, 1, b"\x01" * 60, 1514), Frame(2, 2.25, 1, b"\x02" * 54, 54)]
    out = tmp_path / "cut.pcap"
    write_pcap(out, frames)
    assert [(f.data, f.wirelen, f.ts) for f in open_capture(out)] == [
        (b"\x01" * 60, 1514, 1.5),
        (b"\x02" * 54, 54, 2.25),
    ]


@pytest.mark.parametrize("switch_at", [0, 3])
def test_several_link_types_become_pcapng(tmp_path: Path, switch_at: int) -> None:
    eth = zeek_frames()[:8]
    frames = []
    for i, f in enumerate(eth):
        if i >= switch_at and i % 2:
            frames.append(Frame(f.no, f.ts, 101, f.data[14:], f.wirelen - 14))  # raw IP
        else:
            frames.append(f)
    out = tmp_path / "mixed.pcapng"
    assert write_pcap(out, (f for f in frames)) == 8
    assert not (tmp_path / "mixed.pcapng.tmp").exists()
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    cap = open_capture(out)
    back = list(cap)
    assert cap.format == "pcapng" and cap.problems == []
    assert [(f.linktype, f.data, f.wirelen) for f in back] == [
        (f.linktype, f.data, f.wirelen) for f in frames
    ]
    # The recorded timestamps have whole microseconds: exact after the round trip.
    assert [f.ts for f in back] == [f.ts for f in frames]


def test_no_frames(tmp_path: Path) -> None:
    out = tmp_path / "empty.pcap"
    assert write_pcap(out, []) == 0
    cap = open_capture(out)
    assert list(cap) == [] and cap.problems == []
    assert len(out.read_bytes()) == 24


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"^cannot write .*: No such file or directory$"):
        write_pcap(tmp_path / "missing-dir" / "x.pcap", [Frame(1, 0.0, 1, b"x" * 60, 60)])
    with pytest.raises(CaptureError, match=r"frame 2 has 300000 bytes"):
        write_pcap(
            tmp_path / "big.pcap",
            [Frame(1, 0.0, 1, b"x" * 60, 60), Frame(2, 0.0, 1, b"y" * 300000, 300000)],
        )
