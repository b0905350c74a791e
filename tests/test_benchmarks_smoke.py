"""The benchmark scripts in benchmarks/ run end to end on small captures (no timing asserts)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pgwire_inspect.capture import Frame, decode_frame, open_capture
from pgwire_inspect.decode import decode_frames

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "captures" / "psycopg-extended.pcap"
PGBENCH = ROOT / "captures" / "pgbench-prepared.pcap"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pgwire_benchmarks_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("run")
record_big = bench.record_big


def _client_ports(path: Path) -> set[int]:
    ports = set()
    for frame in open_capture(path):
        seg = decode_frame(frame)
        if seg is not None:
            ports.add(seg.sport if seg.dport == 5432 else seg.dport)
    return ports


def test_run_main_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = bench.main(["--capture", str(CAPTURE), "--repeat", "1", "--big", "2",
                         "--data", str(tmp_path), "--no-profile"])
    out = capsys.readouterr().out
    assert status == 0
    decoded = decode_frames(open_capture(CAPTURE))
    messages = sum(c.counts["F"] + c.counts["B"] + len(c.malformed)
                   for c in decoded.connections)
    assert f"{decoded.frames} frames, 1 connections" in out
    assert f"{messages} messages" in out
    for name in ("read --format jsonl", "read --stats", "read --stats, x2",
                 "read --format jsonl, x2", "parser alone (in-process)"):
        assert f"\n  {name} " in out
    assert "read --stats peak RSS = " in out
    # The stats command really ran: its summary names the capture's queries.
    assert "7 queries" in out
    assert (tmp_path / "psycopg-extended-x2.pcap").exists()


def test_parser_alone_sees_what_the_decoder_sees() -> None:
    streams = bench.extract_streams(PGBENCH)
    assert not streams.gaps
    decoded = decode_frames(open_capture(PGBENCH), keep_messages=False)
    expected = sum(c.counts["F"] + c.counts["B"] + len(c.malformed)
                   for c in decoded.connections)
    assert len(streams.connections) == len(decoded.connections)
    assert streams.bytes == sum(c.bytes["F"] + c.bytes["B"] for c in decoded.connections)
    assert bench.parse_streams(streams) == expected
    result = bench.time_parser(streams, 2, log=lambda *_: None)
    assert result.messages == expected and len(result.seconds) == 2


def test_dedupe_loopback_drops_the_second_copy_only() -> None:
    frames = list(open_capture(CAPTURE))
    doubled = [g for f in frames for g in (f, f)]
    kept = list(record_big.dedupe_loopback(doubled))
    assert [f.data for f in kept] == [f.data for f in frames]
    assert [f.no for f in kept] == list(range(1, len(frames) + 1))
    # A third identical frame is a real retransmission and stays.
    tripled = [*doubled[:2], doubled[0], *doubled[2:]]
    assert len(list(record_big.dedupe_loopback(tripled))) == len(frames) + 1


def test_replicate_makes_distinct_connections(tmp_path: Path) -> None:
    dst = tmp_path / "x3.pcap"
    n = record_big.replicate(PGBENCH, dst, 3)
    frames = list(open_capture(PGBENCH))
    assert n == 3 * len(frames)
    base_ports = _client_ports(PGBENCH)
    ports = _client_ports(dst)
    assert len(ports) == 3 * len(base_ports) and 5432 not in ports
    base = record_big.check_capture(PGBENCH)
    big = record_big.check_capture(dst)
    assert big.problems == base.problems
    assert big.connections == 3 * base.connections
    assert big.rows == 3 * base.rows and big.messages == {d: 3 * v for d, v in
                                                          base.messages.items()}
    copied = list(open_capture(dst))
    assert copied[len(frames)].ts > frames[-1].ts  # copy 1 starts after copy 0 ends
    # The rewritten TCP checksums verify exactly when the originals did.
    for old, new in zip(frames, copied[len(frames):], strict=False):
        assert _tcp_checksum_ok(old) == _tcp_checksum_ok(new)


def _tcp_checksum_ok(frame: Frame) -> bool:
    data = frame.data
    ihl = (data[14] & 0x0F) * 4
    tcp = data[14 + ihl:14 + int.from_bytes(data[16:18], "big")]
    pseudo = data[26:34] + b"\x00\x06" + len(tcp).to_bytes(2, "big")
    blob = pseudo + tcp + (b"\x00" if len(tcp) % 2 else b"")
    total = sum(int.from_bytes(blob[i:i + 2], "big") for i in range(0, len(blob), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _work(n: int) -> int:
    return sum(i * i for i in range(20000)) if n == 0 else _work(n - 1) + 1


def test_pyinstrument_profile_counts_recursion_once() -> None:
    pyinstrument = pytest.importorskip("pyinstrument")
    profiler = pyinstrument.Profiler(interval=0.0005)
    with profiler:
        for _ in range(30):
            _work(3)
    prof = bench.profiling.aggregate_pyinstrument(profiler.last_session.root_frame())
    entry = next(f for k, f in prof.functions.items() if k.endswith(" _work"))
    assert 0 < entry.cumulative <= prof.total + 1e-9
    assert sum(f.own for f in prof.functions.values()) == pytest.approx(prof.total, rel=0.02)
    assert "   by cumulative time:" in prof.report(3)


def test_pyspy_raw_output_is_aggregated() -> None:
    raw = ("main (pgwire_inspect/cli.py:10);f (a.py:3);f (a.py:5);g (b.py:7) 30\n"
           "main (pgwire_inspect/cli.py:10);f (a.py:4) 20\n"
           "main (pgwire_inspect/cli.py:12) 50\n")
    prof = bench.profiling.parse_pyspy_raw(raw, rate=100)
    assert prof.total == 1.0
    f = prof.functions["a.py f"]
    assert (f.own, f.cumulative) == (0.2, 0.5)  # recursion counted once
    assert prof.functions["b.py g"].own == 0.3
    assert prof.lines == {"b.py:7 g": 0.3, "a.py:4 f": 0.2, "pgwire_inspect/cli.py:12 main": 0.5}
    assert [x.where for x in prof.top("cumulative", 5)] == ["a.py f", "b.py g"]


def test_profile_runs_a_real_command() -> None:
    if bench.profiling._pyspy() is None:
        pytest.importorskip("pyinstrument")
    prof = bench.profiling.profile("auto", ["read", str(PGBENCH), "--stats"])
    assert prof is not None and prof.total > 0
    assert any("pgwire_inspect/" in k for k in prof.functions)


@pytest.mark.skipif(os.geteuid() != 0, reason="a live capture needs root")
def test_record_a_small_capture(tmp_path: Path, pg_dsn: str) -> None:
    out = tmp_path / "small.pcap"
    check = record_big.record(out, pg_dsn, rows=500, queries=96, log=lambda *_: None)
    assert check.problems == []
    assert check.connections == 4
    # The big query; 48 unprepared; 24 on the preparing connection, where each of the
    # 4 statements runs 6 times and psycopg prepares it (Parse + Sync apart) once it
    # has run 5 times; 24 simple Query messages.
    assert check.queries == {"extended": 1 + 48 + 24 + 4, "simple": 24}

    def rows(n: int) -> int:  # every fourth query is generate_series(1, 1 + i % 5)
        return sum(1 + i % 5 if i % 4 == 3 else 1 for i in range(n))

    assert check.rows == 500 + rows(48) + rows(24) + rows(24)
    assert record_big.check_capture(out).rows == check.rows


def test_live_benchmark_one_small_run(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    live = _load("live")
    capture = "sniff" if os.geteuid() == 0 else "relay"
    status = live.main(["--runs", "1", "--rows", "2000", "--dsn", pg_dsn, "--capture", capture,
                        "--strict"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "2,000 DataRows, SELECT 2000, 0 gaps" in out
    assert "live: 1/1 runs with no gap (2,000 rows each), target 1/1: met" in out
