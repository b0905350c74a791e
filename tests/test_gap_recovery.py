"""Decoding recovers from lost segments: the check of benchmarks/gap_recovery.py, smaller.

The benchmark records 20,000 rows from the server; here a capture of the
same shape is made from a real one in ``captures/``, without the server:
one DataRow of a real result is repeated a few thousand times in the
server's stream, and the server's bytes are cut again into 512-byte TCP
segments, each present twice as on loopback. Then 1% of the server's
data segments (both copies) are deleted for a few seeds, and at least
95% of the DataRows that lay outside them must still be decoded at their
stream offset, byte for byte, to the values the client fetched.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pgwire_inspect.capture import TCP_SYN, Frame, decode_frame, open_capture
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.protocol import DataRow

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
MSS = 512
COPIES = 2000


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gap_recovery",
                                                  ROOT / "benchmarks" / "gap_recovery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gap_recovery", module)
    spec.loader.exec_module(module)
    return module


GR = load_benchmark()


def _tcp_offset(frame: Frame) -> int:
    """Where the TCP header starts in an Ethernet + IPv4 frame."""
    assert frame.linktype == 1 and frame.data[14] >> 4 == 4
    return 14 + (frame.data[14] & 0x0F) * 4


def _with(frame: Frame, no: int, *, seq: int | None = None, ack: int | None = None,
          payload: bytes | None = None) -> Frame:
    """A copy of an Ethernet/IPv4/TCP frame with another seq, ack or payload."""
    t = _tcp_offset(frame)
    seg = decode_frame(frame)
    assert seg is not None
    head = bytearray(frame.data[: seg.payload_offset])
    if seq is not None:
        head[t + 4 : t + 8] = struct.pack("!I", seq & 0xFFFFFFFF)
    if ack is not None:
        head[t + 8 : t + 12] = struct.pack("!I", ack & 0xFFFFFFFF)
    body = seg.payload if payload is None else payload
    head[16:18] = struct.pack("!H", len(head) - 14 + len(body))  # IPv4 total length
    data = bytes(head) + body
    return Frame(no, frame.ts, frame.linktype, data, len(data))


@functools.lru_cache(maxsize=4)
def repeated_rows(name: str, query: int) -> tuple[list[Frame], bytes, int]:
    """The capture ``name`` with the first DataRow of query ``query`` repeated COPIES times.

    Returns:
        (frames, the repeated DataRow's bytes, the stream offset of its first copy).
    """
    frames = list(open_capture(CAPTURES / f"{name}.pcap"))
    conn = decode_frames(frames).connections[0]
    row = next(r for r in conn.queries[query].results if r.rows).rows[0].message
    assert isinstance(row, DataRow)
    at, extra = row.end, row.raw * COPIES
    segs = [decode_frame(f) for f in frames]
    syn_ack = next(s for s in segs if s is not None and s.flags & TCP_SYN and s.sport == 5432)
    base = syn_ack.seq + 1

    def moved(off: int) -> int:
        return off + len(extra) if off >= at else off

    out: list[Frame] = []
    seen: set[tuple[int, int, int, int]] = set()
    for f, s in zip(frames, segs, strict=True):
        assert s is not None
        key = (s.sport, s.seq, len(s.payload), s.flags)
        if key in seen:
            continue  # the loopback copy: made again below for every new segment
        seen.add(key)
        if s.sport != 5432:  # client to server: acknowledge the longer stream
            new = [_with(f, 0, ack=base + moved((s.ack - base) & 0xFFFFFFFF))]
        elif not s.payload or s.flags & TCP_SYN:
            off = (s.seq - base) & 0xFFFFFFFF
            new = [f if s.flags & TCP_SYN else _with(f, 0, seq=base + moved(off))]
        else:
            off = (s.seq - base) & 0xFFFFFFFF
            data = s.payload
            if off < at <= off + len(data):  # the segment that holds the row's end
                data = data[: at - off] + extra + data[at - off :]
            start = moved(off)
            new = [_with(f, 0, seq=base + start + i, payload=data[i : i + MSS])
                   for i in range(0, len(data), MSS)]
        for g in new:
            out += [Frame(len(out) + 1, g.ts, g.linktype, g.data, g.wirelen),
                    Frame(len(out) + 2, g.ts, g.linktype, g.data, g.wirelen)]
    return out, row.raw, at


CASES = [
    # (capture, query whose first DataRow is repeated, index of its rows in NAME.json)
    pytest.param("psycopg2-simple", 0, 0, id="psycopg2-text-7-types"),
    pytest.param("psycopg-extended", 2, 1, id="psycopg-binary"),
]


def client_row(name: str, rows_index: int) -> list[str | None]:
    """The repeated row as the client fetched it (NAME.json, written by captures/record.py)."""
    result = json.loads((CAPTURES / f"{name}.json").read_text())["rows"][rows_index]
    row: list[str | None] = result[0]
    return row


@pytest.mark.parametrize(("name", "query", "rows_index"), CASES)
def test_the_synthetic_capture_is_intact(name: str, query: int, rows_index: int) -> None:
    frames, raw, at = repeated_rows(name, query)
    assert GR.check_intact(frames, None) is None
    conn = decode_frames(frames).connections[0]
    rows = [r for r in GR.expected_rows(conn) if r.raw == raw]
    assert len(rows) == COPIES + 1
    assert [r.offset for r in rows] == [at - len(raw) + i * len(raw) for i in range(COPIES + 1)]
    assert all(r.values == client_row(name, rows_index) for r in rows)
    segments = GR.server_segments(frames, 5432)
    assert len(segments) > 100
    assert all(len(nos) == 2 for nos in segments.values())  # two copies of each


@pytest.mark.parametrize(("name", "query", "rows_index"), CASES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_outside_lost_segments_are_decoded(name: str, query: int, rows_index: int,
                                                seed: int) -> None:
    frames, _, _ = repeated_rows(name, query)
    kept, gone, segments = GR.delete_segments(frames, 0.01, seed)
    deleted = max(1, round(0.01 * segments))
    assert len(gone) == 2 * deleted
    rec = GR.measure(frames, kept, gone, None, seed=seed, loss=0.01, segments=segments,
                     deleted_segments=deleted)
    assert len(rec.deleted_ranges) >= 1
    assert sum(b - a for a, b in rec.deleted_ranges) >= MSS * (deleted - 1)
    assert COPIES * 0.9 < rec.must_survive < rec.expected
    assert rec.rate >= 0.95, GR.report(rec, 0.95)
    assert rec.spurious == 0 and rec.wrong_values == 0


def test_the_same_seed_deletes_the_same_segments() -> None:
    frames, _, _ = repeated_rows("psycopg2-simple", 0)
    a = GR.delete_segments(frames, 0.01, 7)[1]
    assert a == GR.delete_segments(frames, 0.01, 7)[1]
    assert a != GR.delete_segments(frames, 0.01, 8)[1]


def test_a_lost_segment_costs_only_the_rows_it_touched() -> None:
    """With one segment in the middle of the rows deleted, every other row is decoded."""
    frames, raw, _ = repeated_rows("psycopg2-simple", 0)
    segments = GR.server_segments(frames, 5432)
    seqs = sorted(segments, key=lambda s: segments[s][0])
    middle = seqs[len(seqs) // 2]
    gone = set(segments[middle])
    kept = [f for f in frames if f.no not in gone]
    rec = GR.measure(frames, kept, gone, None, seed=0, loss=0.0, segments=len(seqs),
                     deleted_segments=1)
    ((a, b),) = rec.deleted_ranges
    assert b - a == MSS
    # A 512-byte hole touches at most 512 // len(row) + 2 rows.
    assert rec.expected - rec.must_survive <= MSS // len(raw) + 2
    assert rec.recovered == rec.must_survive
