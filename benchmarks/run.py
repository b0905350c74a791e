"""Benchmark pgwire-inspect against tshark on a big capture, and profile it.

Usage (as root when the capture must be recorded; see benchmarks/README.md):

    .venv/bin/python benchmarks/run.py [--record] [--repeat 3] [--big N] [--no-profile]

Steps:

1. The capture: ``benchmarks/data/big.pcap`` is reused when present, else
   (or with ``--record``) recorded from the live server by
   ``record_big.py`` (one 1,000,000-row SELECT and 20,000 small
   parameterized queries, about 100 MB). Its TCP streams are extracted once
   and must have no gap.
2. Timings, each command a subprocess, wall-clock seconds (median of
   ``--repeat`` runs) and peak resident memory (``ru_maxrss`` of that child,
   from ``os.wait4``): ``pgwire-inspect read --format jsonl``,
   ``pgwire-inspect read --stats``, tshark with and without DataRow values
   (when tshark is installed); and, in this process, the protocol parser
   alone (`StreamParser`) on the extracted streams.
3. The targets: read --stats <= 0.2 x tshark (with values), read --format
   jsonl <= 0.33 x tshark (with values), parser >= 100 MB/s, read --stats
   peak memory <= 150 MB. With ``--big N``, N copies of the capture (about
   N x 100 MB, distinct connections) are read too, and peak memory must stay
   within 10% of the single capture's.
4. With py-spy or pyinstrument installed (and without ``--no-profile``):
   ``read --stats`` and ``read --format jsonl`` run once under the sampler,
   and the functions with the most own and cumulative time are listed
   (see ``profiling.py``).

Sizes are in MB of 10^6 bytes; memory too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import profiling  # noqa: E402
import record_big  # noqa: E402

from pgwire_inspect.capture import decode_frame, open_capture  # noqa: E402
from pgwire_inspect.errors import CaptureError, PgWireError  # noqa: E402
from pgwire_inspect.protocol import SPEEDUPS, ConnectionParser  # noqa: E402
from pgwire_inspect.reassembly import (  # noqa: E402
    ConnectionStarted,
    Reassembler,
    StreamData,
    StreamGap,
)
from pgwire_inspect.render import jsonl as jsonl_view  # noqa: E402

MB = 1_000_000
#: The targets (see the module docstring).
STATS_RATIO_MAX = 0.20
JSONL_RATIO_MAX = 0.33
PARSER_MBS_MIN = 100.0
STATS_RSS_MAX = 150 * MB
BIG_RSS_GROWTH_MAX = 0.10


# ------------------------------------------------------------------ timing


@dataclass
class Run:
    """One run of a command: wall-clock seconds, CPU seconds (user + system),
    peak RSS in bytes, exit status."""

    seconds: float
    cpu: float
    max_rss: int
    returncode: int


@dataclass
class Measured:
    """Runs of one command.

    Attributes:
        name: a short label; argv: the command.
        runs: each run; output: the standard output of the last run, when kept.
    """

    name: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    output: str = ""

    @property
    def median(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(r.seconds for r in self.runs)

    @property
    def median_cpu(self) -> float:
        """Median CPU seconds (user + system)."""
        return statistics.median(r.cpu for r in self.runs)

    @property
    def peak_rss(self) -> int:
        """The highest peak RSS of the runs, bytes."""
        return max(r.max_rss for r in self.runs)


#: Runs a command and writes its wall-clock time and resource usage as JSON to
#: argv[1]. Peak RSS must be read this way: a child forked from this (big)
#: process starts with this process's memory, and the kernel keeps that
#: high-water mark in the child's ``ru_maxrss`` across exec; the launcher is
#: small, so the command it starts is measured alone.
_LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, ru = os.wait4(p.pid, 0)
seconds = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": seconds, "cpu": ru.ru_utime + ru.ru_stime,
               "maxrss_kib": ru.ru_maxrss, "status": os.waitstatus_to_exitcode(status)}, f)
"""


def run_timed(argv: Sequence[str], stdout: Any = subprocess.DEVNULL) -> tuple[Run, str]:
    """Run a command to its end; time it and read its peak memory.

    The command is started by a small launcher process (see ``_LAUNCHER``),
    which times it from its start to its exit and reads its resource usage
    with ``os.wait4``.

    Args:
        argv: the command.
        stdout: where its standard output goes (a file object or DEVNULL).

    Returns:
        The `Run` (``max_rss`` converted from KiB to bytes) and the
        command's stderr text.

    Raises:
        RuntimeError: the launcher failed (the command could not be started).
    """
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "usage.json"
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(result),
                               *argv], stdout=stdout, stderr=err, stdin=subprocess.DEVNULL,
                              check=False)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(f"cannot run {argv[0]}: {text.strip()[-1000:]}")
        usage = json.loads(result.read_text())
    return Run(usage["seconds"], usage["cpu"], usage["maxrss_kib"] * 1024,
               usage["status"]), text


def measure(name: str, argv: Sequence[str], repeat: int, keep_output: bool = False,
            log: Any = print) -> Measured:
    """Run ``argv`` ``repeat`` times and collect the runs.

    Raises:
        RuntimeError: a run exited with a non-zero status.
    """
    m = Measured(name, list(argv))
    for _ in range(repeat):
        with tempfile.TemporaryFile("w+") if keep_output else open(os.devnull, "w") as out:
            run, err = run_timed(argv, stdout=out)
            if keep_output:
                out.seek(0)
                m.output = out.read()
        if run.returncode != 0:
            raise RuntimeError(f"{name} exited with {run.returncode}: {err.strip()[-1000:]}")
        m.runs.append(run)
        log(f"  {name}: {run.seconds:.2f} s ({run.cpu:.2f} s CPU), {run.max_rss / MB:.1f} MB")
    return m


def pgwire_inspect() -> list[str]:
    """The command that runs pgwire-inspect with this interpreter."""
    script = Path(sys.executable).parent / "pgwire-inspect"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgwire_inspect"]


# ------------------------------------------------------------------ parser


@dataclass
class Streams:
    """The reassembled TCP streams of a capture, per connection.

    Attributes:
        connections: per connection, its stream chunks in capture order as
            (direction "F" or "B", bytes).
        gaps: StreamGap events met (must be none for a benchmark capture).
        frames: frames read; bytes: stream bytes in all.
    """

    connections: list[list[tuple[str, bytes]]] = field(default_factory=list)
    gaps: list[StreamGap] = field(default_factory=list)
    frames: int = 0
    bytes: int = 0


def extract_streams(path: str | os.PathLike[str], ports: Sequence[int] = (5432,)) -> Streams:
    """Reassemble every connection on ``ports`` of a capture into its byte streams."""
    out = Streams()
    reasm = Reassembler(server_ports=ports)
    index: dict[int, list[tuple[str, bytes]]] = {}

    def take(events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, ConnectionStarted):
                index[ev.conn] = []
                out.connections.append(index[ev.conn])
            elif isinstance(ev, StreamData):
                index[ev.conn].append((ev.direction, ev.data))
                out.bytes += len(ev.data)
            elif isinstance(ev, StreamGap):
                out.gaps.append(ev)

    for frame in open_capture(path):
        out.frames += 1
        try:
            seg = decode_frame(frame)
        except CaptureError:
            continue
        if seg is None or (seg.sport not in ports and seg.dport not in ports):
            continue
        take(list(reasm.feed(seg)))
    take(list(reasm.finish()))
    return out


def parse_streams(streams: Streams) -> int:
    """Parse every stream with `ConnectionParser`, chunk by chunk in capture order.

    Returns:
        The number of messages returned (malformed stretches included).
    """
    count = 0
    for chunks in streams.connections:
        cp = ConnectionParser()
        for direction, data in chunks:
            p = cp.frontend if direction == "F" else cp.backend
            p.receive_data(data)
            count += len(p.next_messages())
        for p in (cp.frontend, cp.backend):
            p.finish()
            count += len(p.next_messages())
    return count


@dataclass
class ParserResult:
    """Throughput of the protocol parser alone.

    Attributes:
        bytes: stream bytes parsed; messages: messages returned;
        seconds: wall-clock seconds of each run; cpu: CPU seconds of each run.
    """

    bytes: int
    messages: int
    seconds: list[float]
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        """Median CPU seconds."""
        return statistics.median(self.cpu)

    @property
    def mb_per_s(self) -> float:
        """MB (10^6 bytes) parsed per second, at the median time."""
        return self.bytes / MB / self.median

    @property
    def messages_per_s(self) -> float:
        """Messages per second, at the median time."""
        return self.messages / self.median


def time_parser(streams: Streams, repeat: int, log: Any = print) -> ParserResult:
    """Time `parse_streams` ``repeat`` times."""
    result = ParserResult(streams.bytes, 0, [])
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result.messages = parse_streams(streams)
        result.seconds.append(time.perf_counter() - t0)
        result.cpu.append(time.process_time() - c0)
        log(f"  parser: {result.seconds[-1]:.2f} s ({result.cpu[-1]:.2f} s CPU)")
    return result


# -------------------------------------------------------------------- main


@dataclass
class Results:
    """Everything measured, for `report`."""

    capture: Path
    size: int
    streams: Streams
    jsonl: Measured
    stats: Measured
    parser: ParserResult
    ts_values: Measured | None
    ts_types: Measured | None
    big: list[Measured]
    repeat: int


def report(res: Results) -> tuple[list[str], bool]:
    """The results table and the targets, as lines; and whether every target was met."""
    st = res.streams
    lines = ["", f"=== results ({res.repeat} run(s) each: median wall-clock and CPU seconds, "
                 "highest peak RSS) ===",
             f"capture: {res.capture.name}, {res.size / MB:.1f} MB, {st.frames} frames, "
             f"{len(st.connections)} connections, {st.bytes / MB:.1f} MB of TCP stream data, "
             f"{res.parser.messages} messages", ""]
    table = [res.jsonl, res.stats, *(m for m in (res.ts_values, res.ts_types) if m), *res.big]
    lines.append(f"  {'command':34} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}   runs (wall s)")
    for m in table:
        runs = " ".join(f"{r.seconds:.2f}" for r in m.runs)
        lines.append(f"  {m.name:34} {m.median:8.2f} {m.median_cpu:8.2f} "
                     f"{m.peak_rss / MB:12.1f}   {runs}")
    p = res.parser
    lines.append(f"  {'parser alone (in-process)':34} {p.median:8.2f} {p.median_cpu:8.2f} "
                 f"{'':>12}   "
                 f"{' '.join(f'{s:.2f}' for s in p.seconds)}")
    lines.append(f"      = {p.mb_per_s:.1f} MB/s, {p.messages_per_s:,.0f} messages/s "
                 f"({p.bytes / MB:.1f} MB, {p.messages} messages; by CPU time "
                 f"{p.bytes / MB / p.median_cpu:.1f} MB/s)")
    lines += ["", "targets (ratios of wall-clock medians; CPU-time ratio in brackets):"]
    ok_all = True

    def target(text: str, ok: bool) -> None:
        nonlocal ok_all
        ok_all &= ok
        lines.append(f"  {text:74} {verdict(ok)}")

    tv = res.ts_values
    if tv is not None:
        for m, limit in ((res.stats, STATS_RATIO_MAX), (res.jsonl, JSONL_RATIO_MAX)):
            r = m.median / tv.median
            target(f"{m.name} / tshark (values) = {r:.2f} [{m.median_cpu / tv.median_cpu:.2f}] "
                   f"(<= {limit})", r <= limit)
    else:
        lines.append("  (no tshark: ratios not measured)")
    if res.ts_types is not None:
        lines.append(f"  (for reference: read --stats / tshark (types) = "
                     f"{res.stats.median / res.ts_types.median:.2f})")
    target(f"parser = {p.mb_per_s:.1f} MB/s [{p.bytes / MB / p.median_cpu:.1f} by CPU time] "
           f"(>= {PARSER_MBS_MIN:.0f})",
           p.mb_per_s >= PARSER_MBS_MIN)
    target(f"read --stats peak RSS = {res.stats.peak_rss / MB:.1f} MB "
           f"(<= {STATS_RSS_MAX / MB:.0f})", res.stats.peak_rss <= STATS_RSS_MAX)
    for m, base in zip(res.big, (res.stats, res.jsonl), strict=False):
        growth = m.peak_rss / base.peak_rss - 1
        target(f"{m.name} peak RSS = {m.peak_rss / MB:.1f} MB, {growth:+.1%} vs. x1 "
               f"(<= +{BIG_RSS_GROWTH_MAX:.0%})", growth <= BIG_RSS_GROWTH_MAX)
    lines += ["", "read --stats output (last run):",
              *("  " + x for x in res.stats.output.rstrip().splitlines())]
    return lines, ok_all


def verdict(ok: bool) -> str:
    """"met" or "MISSED"."""
    return "met" if ok else "MISSED"


def code_version() -> str:
    """The git commit of the checkout, and whether files differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no", "pgwire_inspect"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {head}" + (" with uncommitted changes in pgwire_inspect/" if dirty else "")


def ensure_capture(args: argparse.Namespace, log: Any) -> Path:
    """The capture to benchmark, recorded first when needed."""
    if args.capture is not None:
        return Path(args.capture)
    path = record_big.BIG_PCAP
    if args.record or not path.exists():
        log(f"recording {path} from {args.dsn} ...")
        try:
            record_big.record(path, args.dsn, args.rows, args.queries, log=log)
        except (PgWireError, RuntimeError) as exc:
            raise SystemExit(f"cannot record {path}: {exc}") from None
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 with --strict and a missed target)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", action="store_true", help="record the capture again")
    ap.add_argument("--capture", help="benchmark this capture instead of data/big.pcap")
    ap.add_argument("--dsn", default=record_big.DEFAULT_DSN, help="server to record from")
    ap.add_argument("--rows", type=int, default=record_big.DEFAULT_ROWS)
    ap.add_argument("--queries", type=int, default=record_big.DEFAULT_QUERIES)
    ap.add_argument("--data", default=str(record_big.DATA),
                    help="folder for generated captures (default: benchmarks/data)")
    ap.add_argument("--port", type=int, default=None,
                    help="the server port in the capture (passed to read as --port when "
                         "given; default: read's own choice, port 5432 for the streams)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per command (median)")
    ap.add_argument("--big", type=int, default=0, metavar="N",
                    help="also read N copies of the capture (memory must stay within 10%%)")
    ap.add_argument("--no-tshark", action="store_true", help="skip tshark")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile")
    ap.add_argument("--profiler", choices=["auto", "py-spy", "pyinstrument"], default="auto",
                    help="auto: py-spy when installed, else pyinstrument")
    ap.add_argument("--top", type=int, default=15, help="functions listed per profile")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    log = print

    capture = ensure_capture(args, log)
    json_c = jsonl_view._c_json_data_row is not None
    log(f"code: {code_version()}; C speed-ups: DataRow runs "
        f"{'in use' if SPEEDUPS else 'off (pure Python)'}, JSON lines of DataRows "
        f"{'in use' if json_c else 'off (pure Python)'}")
    size = capture.stat().st_size
    log(f"capture: {capture} ({size / MB:.1f} MB)")
    server_port = args.port or 5432
    streams = extract_streams(capture, (server_port,))
    log(f"  {streams.frames} frames, {len(streams.connections)} connections, "
        f"{streams.bytes / MB:.1f} MB of stream data, {len(streams.gaps)} gaps")
    if streams.gaps:
        raise SystemExit(f"the capture has stream gaps ({streams.gaps[0]!r} ...): "
                         "record it again (--record)")

    pi = pgwire_inspect()
    port = ["--port", str(args.port)] if args.port else []
    log("\ntimings:")
    jsonl = measure("read --format jsonl", [*pi, "read", str(capture), *port,
                                            "--format", "jsonl"], args.repeat, log=log)
    stats = measure("read --stats", [*pi, "read", str(capture), *port, "--stats"],
                    args.repeat, keep_output=True, log=log)
    parser = time_parser(streams, args.repeat, log=log)
    tshark = None if args.no_tshark else shutil.which("tshark")
    ts_values = ts_types = None
    if tshark:
        decode_as = ["-d", f"tcp.port=={server_port},pgsql"]
        ts_values = measure("tshark (types, values)",
                            [tshark, "-r", str(capture), *decode_as, "-T", "fields",
                             "-e", "pgsql.type", "-e", "pgsql.val.data"], args.repeat, log=log)
        ts_types = measure("tshark (types)",
                           [tshark, "-r", str(capture), *decode_as, "-T", "fields",
                            "-e", "pgsql.type"], args.repeat, log=log)

    big: list[Measured] = []
    if args.big > 1:
        big_path = Path(args.data) / f"{capture.stem}-x{args.big}.pcap"
        if not big_path.exists() or big_path.stat().st_mtime < capture.stat().st_mtime:
            log(f"\nwriting {big_path} ({args.big} copies) ...")
            record_big.replicate(capture, big_path, args.big, server_port)
        log(f"\n{big_path} ({big_path.stat().st_size / MB:.1f} MB):")
        big.append(measure(f"read --stats, x{args.big}",
                           [*pi, "read", str(big_path), *port, "--stats"], 1, log=log))
        big.append(measure(f"read --format jsonl, x{args.big}",
                           [*pi, "read", str(big_path), *port, "--format", "jsonl"], 1,
                           log=log))

    lines, ok_all = report(Results(capture, size, streams, jsonl, stats, parser, ts_values,
                                   ts_types, big, args.repeat))
    log("\n".join(lines))

    if not args.no_profile:
        with tempfile.TemporaryDirectory() as tmp:
            for tail in (["--stats"], ["--format", "jsonl"]):
                prof = profiling.profile(args.profiler, ["read", str(capture), *port, *tail],
                                         Path(tmp))
                if prof is None:
                    log("\n(no profiler: install py-spy or pyinstrument)")
                    break
                log(f"\nprofile of read {' '.join(tail)}:")
                log("\n".join(prof.report(args.top)))
    return 1 if args.strict and not ok_all else 0


if __name__ == "__main__":
    raise SystemExit(main())
