"""Record the big benchmark capture from a real server, check it, and replicate it.

Usage (as root, for the live capture; the server must accept trust auth):

    .venv/bin/python benchmarks/record_big.py record [--out PATH] [--rows N] [--queries N]
    .venv/bin/python benchmarks/record_big.py check PATH
    .venv/bin/python benchmarks/record_big.py replicate SRC DST COPIES

``record`` captures, with `LiveCapture`, the connections of a client that
runs in a child process (so the capture thread never waits for the
client's Python code to release the GIL):

- one big SELECT (``BIG_SQL``: 1,000,000 rows of int, text, numeric and
  timestamptz by default, about 100 MB on the wire), streamed by psycopg 3;
- ``--queries`` small parameterized queries spread over three connections:
  half through psycopg 3 without prepared statements (Parse, Bind,
  Describe, Execute, Sync each time), a quarter through psycopg 3 with its
  default prepare threshold (named prepared statements after five runs:
  Bind, Execute, Sync), and a quarter through psycopg2 (simple Query
  messages with the parameters inlined).

Only the client's connections are kept (other clients of the same server
are left out). Linux loopback shows every packet twice (going out and
coming in); the second copy is dropped, so the file holds what ``tcpdump -i
lo`` would write and tshark sees no false retransmissions. The capture is
then decoded and must have no stream gap and no malformed message, else it
is recorded again.

``replicate`` writes COPIES copies of a capture one after the other, each
with its client ports and timestamps shifted, so every copy's connections
are distinct connections: a capture N times as big with the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pgwire_inspect.capture import Frame, LiveCapture, decode_frame, open_capture  # noqa: E402
from pgwire_inspect.capture import write_pcap as save_pcap  # noqa: E402
from pgwire_inspect.conversation import (  # noqa: E402
    Connection,
    QueryExchange,
    ResultSet,
    WireMessage,
)
from pgwire_inspect.decode import decode_frames  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATA = HERE / "data"
BIG_PCAP = DATA / "big.pcap"
#: The big result: one row per number, four columns of different types (text format).
BIG_SQL = "select g, md5(g::text), g * 1.5, now() from generate_series(1, {rows}) g"
DEFAULT_ROWS = 1_000_000
DEFAULT_QUERIES = 20_000
#: The small queries, taken in turn: (SQL with psycopg placeholders, parameters of query i).
SMALL_QUERIES: tuple[tuple[str, Callable[[int], tuple[Any, ...]]], ...] = (
    ("select %s::int4 + 1 as n", lambda i: (i,)),
    ("select %s::text || 'x' as s, now() as t", lambda i: (str(i),)),
    ("select %s::int8 * 2 as n, md5(%s::text) as h", lambda i: (i, str(i))),
    ("select g, g::text from generate_series(1, %s::int4) g", lambda i: (1 + i % 5,)),
)


# --------------------------------------------------------------- the client


def _conninfo(dsn: str) -> str:
    """The DSN as a libpq conninfo string with TLS and GSSAPI encryption off."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, sslmode="disable", gssencmode="disable",
                         application_name="pgwire-inspect-benchmark")


def run_client(dsn: str, rows: int, queries: int) -> dict[str, Any]:
    """Run the benchmark's workload; returns what the client saw.

    Args:
        dsn: libpq URL or conninfo of the server.
        rows: rows of the big SELECT.
        queries: small parameterized queries, over three connections.

    Returns:
        ``{"ports": [client TCP ports], "rows": big rows fetched,
        "small_queries": small queries run, "small_rows": their rows}``.
    """
    import psycopg
    import psycopg2

    info = _conninfo(dsn)
    ports: list[int] = []
    out: dict[str, Any] = {"ports": ports, "rows": 0, "small_queries": 0, "small_rows": 0}

    with psycopg.connect(info, autocommit=True) as conn:
        ports.append(_port_of(conn.fileno()))
        with conn.cursor() as cur:
            for _row in cur.stream(BIG_SQL.format(rows=int(rows))):
                out["rows"] += 1

    n_unprepared = queries // 2
    n_prepared = queries // 4
    n_simple = queries - n_unprepared - n_prepared
    for count, threshold in ((n_unprepared, None), (n_prepared, 5)):
        with psycopg.connect(info, autocommit=True, prepare_threshold=threshold) as conn:
            ports.append(_port_of(conn.fileno()))
            with conn.cursor() as cur:
                for i in range(count):
                    sql, params = SMALL_QUERIES[i % len(SMALL_QUERIES)]
                    cur.execute(sql, params(i))
                    out["small_rows"] += len(cur.fetchall())
                    out["small_queries"] += 1
    pg2 = psycopg2.connect(info)
    try:
        pg2.autocommit = True
        ports.append(_port_of(pg2.fileno()))
        with pg2.cursor() as cur2:
            for i in range(n_simple):
                sql, params = SMALL_QUERIES[i % len(SMALL_QUERIES)]
                cur2.execute(sql, params(i))
                out["small_rows"] += len(cur2.fetchall())
                out["small_queries"] += 1
    finally:
        pg2.close()
    return out


def _port_of(fd: int) -> int:
    import socket

    s = socket.socket(fileno=os.dup(fd))
    try:
        return int(s.getsockname()[1])
    finally:
        s.close()


# -------------------------------------------------------------- recording


def dedupe_loopback(frames: Iterable[Frame], window: int = 64) -> Iterator[Frame]:
    """Drop the second copy of each packet that Linux loopback shows twice.

    A frame identical to one of the last ``window`` frames that has not
    been matched yet is the incoming copy of an outgoing packet and is
    dropped; a third identical frame (a real retransmission) is kept.

    Args:
        frames: frames in capture order.
        window: how many recent unmatched frames to compare against.

    Yields:
        The frames kept, renumbered 1.. in order.
    """
    recent: deque[bytes] = deque()
    unmatched: Counter[bytes] = Counter()
    no = 0
    for frame in frames:
        if unmatched[frame.data] > 0:
            unmatched[frame.data] -= 1
            continue
        unmatched[frame.data] += 1
        recent.append(frame.data)
        if len(recent) > window:
            old = recent.popleft()
            if unmatched[old] > 0:
                unmatched[old] -= 1
            if unmatched[old] == 0:
                del unmatched[old]
        no += 1
        yield Frame(no, frame.ts, frame.linktype, frame.data, frame.wirelen)


def _server_of(dsn: str) -> tuple[str, int]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)


def capture_once(dsn: str, rows: int, queries: int) -> tuple[list[Frame], dict[str, Any]]:
    """Capture the workload once; returns the deduplicated frames and the client's view.

    Raises:
        RuntimeError: the client failed, or a connection was not seen closing.
    """
    host, port = _server_of(dsn)
    cap = LiveCapture(host, port)
    with cap:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "client", "--dsn", dsn,
             "--rows", str(rows), "--queries", str(queries)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark client failed: {proc.stderr.strip()[-2000:]}")
        seen = json.loads(proc.stdout)
        for client_port in seen["ports"]:
            if not cap.wait_for_close(client_port, timeout=60.0):
                raise RuntimeError(f"connection from port {client_port} not seen closing "
                                   f"(capture error: {cap.error})")
    ours = set(seen["ports"])

    def between(frame: Frame) -> bool:
        seg = decode_frame(frame)
        return seg is not None and (
            (seg.sport == port and seg.dport in ours) or (seg.dport == port and seg.sport in ours))

    frames = list(dedupe_loopback(f for f in cap.frames() if between(f)))
    return frames, seen


@dataclass
class CaptureCheck:
    """What decoding a capture found (`check_capture`).

    Attributes:
        frames: frames read; connections: PostgreSQL connections decoded.
        messages: messages per direction; rows: DataRows; queries: by kind.
        bytes: stream bytes per direction.
        gaps: holes in the streams; malformed: malformed stretches.
        problems: one line per thing that is wrong (empty when the capture is good).
    """

    frames: int = 0
    connections: int = 0
    messages: dict[str, int] = field(default_factory=lambda: {"F": 0, "B": 0})
    rows: int = 0
    queries: Counter[str] = field(default_factory=Counter)
    bytes: dict[str, int] = field(default_factory=lambda: {"F": 0, "B": 0})
    gaps: int = 0
    malformed: int = 0
    problems: list[str] = field(default_factory=list)


def check_capture(path: str | os.PathLike[str]) -> CaptureCheck:
    """Decode a capture and check that every connection is whole.

    Returns:
        A `CaptureCheck`; ``problems`` lists stream gaps, malformed
        messages, connections that are not PostgreSQL or did not end with a
        FIN in both directions.
    """
    check = CaptureCheck()

    def on_row(conn: Connection, result: ResultSet, row: WireMessage) -> None:
        check.rows += 1

    def on_query(conn: Connection, q: QueryExchange) -> None:
        check.queries[q.kind] += 1

    decoded = decode_frames(open_capture(path), keep_messages=False, keep_rows=False,
                            keep_queries=False, on_row=on_row, on_query=on_query)
    check.frames = decoded.frames
    check.connections = len(decoded.connections)
    for conn in decoded.connections:
        for d in "FB":
            check.messages[d] += conn.counts[d]
            check.bytes[d] += conn.bytes[d]
        check.gaps += len(conn.gaps)
        check.malformed += len(conn.malformed)
        for g in conn.gaps:
            check.problems.append(f"conn {conn.id}: {g[2]} bytes missing in {g[0]} at {g[1]}")
        for wm in conn.malformed[:3]:
            check.problems.append(f"conn {conn.id}: malformed: {wm.message.reason}")  # type: ignore[attr-defined]
        if conn.verdict != "PostgreSQL":
            check.problems.append(f"conn {conn.id}: {conn.verdict}")
        if conn.ended != {"F": "FIN", "B": "FIN"}:
            check.problems.append(f"conn {conn.id}: ended {conn.ended}")
    check.problems += [f"{n} frame(s) skipped: {why}" for why, n in decoded.skipped.items()]
    check.problems += decoded.problems
    if not decoded.connections:
        check.problems.append("no PostgreSQL connection")
    return check


def record(out: Path, dsn: str = DEFAULT_DSN, rows: int = DEFAULT_ROWS,
           queries: int = DEFAULT_QUERIES, attempts: int = 3, log: Any = print) -> CaptureCheck:
    """Record the benchmark capture to ``out``, retrying when it has gaps.

    Returns:
        The check of the capture written.

    Raises:
        RuntimeError: every attempt had gaps or malformed messages.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    last: CaptureCheck | None = None
    for attempt in range(1, attempts + 1):
        t0 = time.perf_counter()
        frames, seen = capture_once(dsn, rows, queries)
        n = save_pcap(tmp, frames)
        del frames
        check = check_capture(tmp)
        log(f"record attempt {attempt}: {n} frames, {tmp.stat().st_size / 1e6:.1f} MB, "
            f"{check.connections} connections, {check.rows} DataRows, "
            f"queries {dict(check.queries)}, {time.perf_counter() - t0:.1f} s")
        expected_rows = seen["rows"] + seen["small_rows"]
        if check.rows != expected_rows:
            check.problems.append(f"{check.rows} DataRows decoded, client fetched {expected_rows}")
        if not check.problems:
            os.replace(tmp, out)
            return check
        log("  problems: " + "; ".join(check.problems[:5]))
        last = check
    tmp.unlink(missing_ok=True)
    assert last is not None
    raise RuntimeError(f"the capture had problems in {attempts} attempts: "
                       + "; ".join(last.problems[:5]))


# ------------------------------------------------------------ replication


_ETH_LEN = 14


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _tcp_offset(data: bytes | bytearray) -> int:
    """Byte offset of the TCP header in an Ethernet frame (IPv4 or IPv6, no extensions)."""
    ethertype = int.from_bytes(data[12:14], "big")
    if ethertype == 0x0800 and data[_ETH_LEN + 9] == 6:
        return _ETH_LEN + (data[_ETH_LEN] & 0x0F) * 4
    if ethertype == 0x86DD and data[_ETH_LEN + 6] == 6:
        return _ETH_LEN + 40
    raise ValueError("not an Ethernet frame of a TCP segment")


def shift_ports(frame: Frame, server_port: int, mapping: dict[int, int], ts_shift: float,
                no: int) -> Frame:
    """The frame with its client port replaced by ``mapping[port]`` and its time shifted.

    The TCP checksum is updated for the new port (RFC 1624), so a checksum
    that was right stays right (and one the capture holds unfinished, as
    loopback's offloaded checksums are, stays as it was).
    """
    if frame.linktype != 1:
        raise ValueError(f"frame {frame.no}: link type {frame.linktype}, only Ethernet (1)")
    data = bytearray(frame.data)
    tcp = _tcp_offset(data)
    sport = int.from_bytes(data[tcp : tcp + 2], "big")
    dport = int.from_bytes(data[tcp + 2 : tcp + 4], "big")
    at = tcp if dport == server_port else tcp + 2
    old = sport if dport == server_port else dport
    new = mapping[old]
    data[at : at + 2] = new.to_bytes(2, "big")
    csum = int.from_bytes(data[tcp + 16 : tcp + 18], "big")
    csum = 0xFFFF & ~_fold((~csum & 0xFFFF) + (~old & 0xFFFF) + new)
    data[tcp + 16 : tcp + 18] = csum.to_bytes(2, "big")
    return Frame(no, frame.ts + ts_shift, frame.linktype, bytes(data), frame.wirelen)


def replicate(src: Path, dst: Path, copies: int, server_port: int = 5432) -> int:
    """Write ``copies`` copies of capture ``src`` to ``dst``, one after the other.

    Copy k (0-based) has every client port moved to a port no other copy
    uses and its timestamps moved by k times (the capture's duration plus
    one second), so its connections are new connections.

    Returns:
        Frames written.

    Raises:
        ValueError: fewer than one copy, or not enough free ports.
    """
    if copies < 1:
        raise ValueError("copies must be at least 1")
    client_ports: list[int] = []
    first = last = None
    for frame in open_capture(src):
        seg = decode_frame(frame)
        first = frame.ts if first is None else first
        last = frame.ts
        if seg is None:
            continue
        cport = seg.sport if seg.dport == server_port else seg.dport
        if cport not in client_ports:
            client_ports.append(cport)
    span = (last or 0.0) - (first or 0.0) + 1.0
    used = {server_port, *client_ports}
    mappings = [{p: p for p in client_ports}]
    candidate = 1024
    for _ in range(1, copies):
        mapping = {}
        for p in client_ports:
            while candidate in used:
                candidate += 1
            if candidate > 65535:
                raise ValueError(f"not enough TCP ports for {copies} copies")
            mapping[p] = candidate
            used.add(candidate)
        mappings.append(mapping)

    def frames() -> Iterator[Frame]:
        no = 0
        for k, mapping in enumerate(mappings):
            for frame in open_capture(src):
                no += 1
                yield shift_ports(frame, server_port, mapping, k * span, no)

    dst.parent.mkdir(parents=True, exist_ok=True)
    return save_pcap(dst, frames())


# -------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="capture the workload from a live server")
    rec.add_argument("--out", type=Path, default=BIG_PCAP)
    rec.add_argument("--dsn", default=DEFAULT_DSN)
    rec.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    rec.add_argument("--queries", type=int, default=DEFAULT_QUERIES)
    chk = sub.add_parser("check", help="decode a capture and report gaps")
    chk.add_argument("path", type=Path)
    rep = sub.add_parser("replicate", help="write N shifted copies of a capture")
    rep.add_argument("src", type=Path)
    rep.add_argument("dst", type=Path)
    rep.add_argument("copies", type=int)
    cli = sub.add_parser("client", help="(internal) run the workload and print its ports")
    cli.add_argument("--dsn", default=DEFAULT_DSN)
    cli.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    cli.add_argument("--queries", type=int, default=DEFAULT_QUERIES)
    args = ap.parse_args(argv)
    if args.cmd == "client":
        print(json.dumps(run_client(args.dsn, args.rows, args.queries)))
    elif args.cmd == "record":
        check = record(args.out, args.dsn, args.rows, args.queries)
        print(f"wrote {args.out}: {check.frames} frames, no gaps")
    elif args.cmd == "check":
        check = check_capture(args.path)
        print(json.dumps({k: v for k, v in check.__dict__.items()}, default=dict, indent=1))
        raise SystemExit(1 if check.problems else 0)
    else:
        n = replicate(args.src, args.dst, args.copies)
        print(f"wrote {args.dst}: {n} frames")


if __name__ == "__main__":
    main()
