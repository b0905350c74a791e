"""open_capture: pcap and pcapng files, real and built byte by byte from the specs."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import pytest
from capture_builders import (
    block_ends,
    epb,
    idb,
    isb,
    pcap,
    pcap_record_ends,
    read_pcap_records,
    shb,
    spb,
    zeek,
)

from pgwire_inspect.capture import Frame, open_capture
from pgwire_inspect.errors import CaptureError

SELECT_NOW = zeek("psql-select-now.pcap")


@pytest.fixture(scope="module")
def select_now() -> bytes:
    if not SELECT_NOW.exists():
        pytest.skip(f"{SELECT_NOW} is not present")
    return SELECT_NOW.read_bytes()


def test_reads_real_pcap_like_an_independent_walker(select_now: bytes) -> None:
    linktype, records = read_pcap_records(select_now)
    cap = open_capture(SELECT_NOW)
    frames = list(cap)
    assert cap.format == "pcap"
    assert cap.problems == []
    assert len(frames) == len(records) == 27
    for no, (frame, (sec, usec, data, wirelen)) in enumerate(zip(frames, records, strict=True), 1):
        assert frame.no == no
        assert frame.linktype == linktype == 1
        assert frame.data == data
        assert frame.wirelen == wirelen
        assert frame.ts == sec + usec / 1e6
    assert frames[0].ts == pytest.approx(1670086966.13, abs=0.01)


def test_every_zeek_capture_reads_without_problems() -> None:
    files = sorted(zeek("").glob("*.pcap"))
    if not files:
        pytest.skip("the Zeek captures are not present")
    for path in files:
        cap = open_capture(path)
        frames = list(cap)
        _, records = read_pcap_records(path.read_bytes())
        assert [f.data for f in frames] == [r[2] for r in records], path.name
        assert cap.problems == [], path.name


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(select_now: bytes, endian: str, nano: bool) -> None:
    _, records = read_pcap_records(select_now)
    # Give each record a distinct sub-second part at full resolution.
    scale = 10**9 if nano else 10**6
    recs = [
        (sec, (frac * 1000 + i) if nano else frac, d, w)
        for i, (sec, frac, d, w) in enumerate(records)
    ]
    raw = pcap(recs, linktype=1, nano=nano, endian=endian)
    frames = list(open_capture(io.BytesIO(raw)))
    assert [f.data for f in frames] == [r[2] for r in recs]
    assert [f.ts for f in frames] == [sec + frac / scale for sec, frac, _, _ in recs]
    if nano:
        assert frames[1].ts - frames[0].ts == pytest.approx(
            (recs[1][1] - recs[0][1]) / 1e9 + recs[1][0] - recs[0][0], abs=1e-6
        )


def test_linktype_upper_bits_are_ignored(select_now: bytes) -> None:
    # The pcap LinkType field keeps FCS information in its top bits.
    _, records = read_pcap_records(select_now)
    raw = pcap(records[:2], linktype=(1 << 28) | (4 << 26) | 113)
    assert {f.linktype for f in open_capture(io.BytesIO(raw))} == {113}


def test_file_object_is_read_lazily_and_left_open(select_now: bytes) -> None:
    f = io.BytesIO(select_now)
    cap = open_capture(f)
    it = iter(cap)
    first = next(it)
    ends = pcap_record_ends(select_now)
    assert f.tell() == ends[0]  # nothing beyond the first record has been read
    assert first.data == read_pcap_records(select_now)[1][0][2]
    rest = list(it)
    assert len(rest) == 26
    assert not f.closed
    assert [fr.no for fr in cap] == list(range(1, 28))  # seekable: a second pass works


class _OneWayStream(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        # Hand out at most 7 bytes at a time, like a pipe under load.
        chunk = self._buf.read(min(len(b), 7))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_unseekable_short_reading_stream(select_now: bytes) -> None:
    cap = open_capture(_OneWayStream(select_now))  # type: ignore[arg-type]
    assert len(list(cap)) == 27
    assert cap.problems == []
    with pytest.raises(CaptureError, match="can be read only once"):
        list(cap)


def test_gzip_compressed(select_now: bytes, tmp_path: Path) -> None:
    path = tmp_path / "c.pcap.gz"
    path.write_bytes(gzip.compress(select_now))
    cap = open_capture(path)
    assert cap.compressed
    assert [f.data for f in cap] == [f.data for f in open_capture(SELECT_NOW)]
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(path.read_bytes()[:-40])
    cap = open_capture(cut)
    frames = list(cap)
    assert len(frames) < 27
    assert len(cap.problems) == 1
    assert "stopped reading" in cap.problems[0]


@pytest.mark.parametrize("stream", [io.BytesIO, _OneWayStream], ids=["seekable", "pipe-like"])
def test_truncated_at_every_byte_of_the_last_records(
    select_now: bytes, capfd: pytest.CaptureFixture[str], stream: type
) -> None:
    ends = pcap_record_ends(select_now)
    for cut in range(ends[-4], len(select_now) + 1):
        cap = open_capture(stream(select_now[:cut]))
        frames = list(cap)
        complete = sum(1 for e in ends if e <= cut)
        assert len(frames) == complete, cut
        if cut in ends:
            assert cap.problems == [], cut
        else:
            assert len(cap.problems) == 1, cut
            assert cap.problems[0].startswith(
                f"frame {complete + 1} is truncated"
                if cut - ends[complete - 1] >= 16
                else f"the record header after frame {complete} is truncated"
            ), (cut, cap.problems)
    # scapy's "packet has been truncated" warnings are not printed.
    out, err = capfd.readouterr()
    assert out == err == ""


def test_corrupt_record_length_is_a_problem_not_an_exception(select_now: bytes) -> None:
    ends = pcap_record_ends(select_now)
    raw = bytearray(select_now)
    struct.pack_into("<I", raw, ends[4] + 8, 10_000_000)  # caplen of record 6
    cap = open_capture(io.BytesIO(bytes(raw)))
    assert len(list(cap)) == 5
    assert cap.problems == [
        "record 6 claims 10000000 captured bytes (more than 262140): the file is corrupt; "
        "stopped reading there"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"Hello world\n", "is not a pcap or pcapng file (starts with 48 65 6c 6c)"),
        (b"", "is empty"),
        (b"\xd4\xc3", "is not a pcap or pcapng file (starts with d4 c3)"),
        (
            b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00",
            "is truncated: its pcap file header needs 24 bytes, the file has 10",
        ),
        (
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00",
            "is truncated: its pcapng section header block needs 28",
        ),
        (
            b"\x0a\x0d\x0d\x0a" + b"\x1c\x00\x00\x00" + b"XXXX" + bytes(16),
            "malformed pcapng section header block",
        ),
        (gzip.compress(b"not a capture"), "is not a pcap or pcapng file (starts with 6e 6f 74 20)"),
        (b"\x1f\x8b\x08\x00garbage", "is not a valid gzip file"),
    ],
)
def test_not_a_capture(
    tmp_path: Path, content: bytes, message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert message in text
    assert "\n" not in text
    assert capfd.readouterr().err == ""


def test_exact_message_for_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("Hello world\n")
    with pytest.raises(
        CaptureError, match=r"^.*x\.txt is not a pcap or pcapng file \(starts with 48 65 6c 6c\)$"
    ):
        open_capture(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"cannot open .*nope\.pcap: No such file"):
        open_capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match=r"cannot open .*: Is a directory"):
        open_capture(tmp_path)


# -- pcapng -------------------------------------------------------------------


def _two_interface_pcapng(
    endian: str, frames: list[Frame]
) -> tuple[bytes, list[tuple[int, float, bytes, int]]]:
    """Ethernet frames on interface 0 (µs), the same as Linux cooked on interface 1 (ns),
    raw IP on interface 2 (2^-20 s units), then an SPB and a trailing statistics block."""
    parts = [
        shb(endian),
        idb(endian, 1),
        idb(endian, 113, tsresol=9),
        idb(endian, 101, tsresol=0x80 | 20),
    ]
    expected = []
    for i, fr in enumerate(frames):
        base = 1_700_000_000 + i
        if i % 3 == 0:
            parts.append(epb(endian, 0, base * 10**6 + 123_456, fr.data, comment=b"hello"))
            expected.append((1, base + 0.123456, fr.data, len(fr.data)))
        elif i % 3 == 1:
            sll = struct.pack("!HHH8sH", 0, 1, 6, fr.data[6:12] + b"\0\0", 0x0800) + fr.data[14:]
            parts.append(epb(endian, 1, base * 10**9 + 987_654_321, sll, wirelen=len(sll) + 5))
            expected.append((113, base + 0.987654321, sll, len(sll) + 5))
        else:
            ip = fr.data[14:]
            parts.append(epb(endian, 2, (base << 20) + (1 << 19), ip))
            expected.append((101, base + 0.5, ip, len(ip)))
    parts.append(spb(endian, frames[0].data))
    expected.append((1, 0.0, frames[0].data, len(frames[0].data)))
    parts.append(isb(endian, 0, 0))
    return b"".join(parts), expected


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_several_interfaces_and_resolutions(endian: str) -> None:
    src = list(open_capture(SELECT_NOW))[:9] if SELECT_NOW.exists() else pytest.skip("no capture")
    raw, expected = _two_interface_pcapng(endian, src)
    cap = open_capture(io.BytesIO(raw))
    frames = list(cap)
    assert cap.format == "pcapng"
    assert cap.problems == []
    assert [(f.linktype, f.data, f.wirelen) for f in frames] == [
        (e[0], e[2], e[3]) for e in expected
    ]
    for f, e in zip(frames, expected, strict=True):
        assert f.ts == pytest.approx(e[1], abs=1e-9)
    assert [f.no for f in frames] == list(range(1, len(expected) + 1))


def test_pcapng_truncated_at_every_byte() -> None:
    src = list(open_capture(SELECT_NOW))[:4] if SELECT_NOW.exists() else pytest.skip("no capture")
    raw, _ = _two_interface_pcapng("<", src)
    ends = block_ends(raw, "<")
    packet_ends = ends[4:-1]  # SHB, 3 IDBs, packets..., ISB
    shb_len = ends[0]
    for cut in range(0, len(raw) + 1):
        data = raw[:cut]
        if cut < shb_len:
            with pytest.raises(CaptureError):
                open_capture(io.BytesIO(data))
            continue
        cap = open_capture(io.BytesIO(data))
        frames = list(cap)
        assert len(frames) == sum(1 for e in packet_ends if e <= cut), cut
        if cut in ends:
            assert cap.problems == [], (cut, cap.problems)
        else:
            assert len(cap.problems) == 1, cut
            assert "truncated" in cap.problems[0], (cut, cap.problems)


def test_pcapng_corrupt_block_length() -> None:
    src = list(open_capture(SELECT_NOW))[:6] if SELECT_NOW.exists() else pytest.skip("no capture")
    raw, _ = _two_interface_pcapng("<", src)
    ends = block_ends(raw, "<")
    bad = bytearray(raw)
    struct.pack_into("<I", bad, ends[5] + 4, 13)  # the third packet block's length
    cap = open_capture(io.BytesIO(bytes(bad)))
    assert len(list(cap)) == 2
    assert len(cap.problems) == 1
    assert cap.problems[0].startswith(f"corrupt pcapng block after frame 2 (byte offset {ends[5]})")
