"""How well decoding recovers from lost segments: delete some, count the DataRows that survive.

Usage (as root the first time: it records the capture with a live sniffer)::

    .venv/bin/python benchmarks/gap_recovery.py [--seed S ...] [--loss 0.01] [--rows 20000]

The first run records a capture of one ``SELECT`` of ``--rows`` varied
rows (integer, md5 text, text of varying width, numeric, timestamptz) from
the real server through psycopg2, with `LiveCapture`, and saves it with
`write_pcap` as ``benchmarks/data/gap-recovery-ROWS.pcap``, beside the
rows the client fetched (``.json``); later runs reuse both. The capture
must decode without a gap or a malformed message, and to exactly the
client's rows, else it is recorded again.

Then, for each seed, it deletes that fraction (at least one) of the
server-to-client TCP segments that carry data, chosen reproducibly with
``random.Random(seed)``; a live loopback capture holds every packet twice
(going out and coming in), and both copies go, by TCP sequence number. It
decodes what is left with `decode_frames` and counts:

- the DataRows of the intact capture, and those whose bytes lay entirely
  outside the deleted segments: the ones that must survive;
- how many of those were decoded at their stream offset with exactly the
  right bytes and the client's values: the recovery rate;
- per connection: bytes lost, malformed stretches and the bytes they
  skipped, and where decoding resumed after each gap.

It prints a short report per seed and exits with status 1 if a rate is
below ``--min-rate`` (95%).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from captures.scenarios import show  # noqa: E402
from pgwire_inspect.capture import (  # noqa: E402
    Frame,
    LiveCapture,
    decode_frame,
    open_capture,
    write_pcap,
)
from pgwire_inspect.conversation import Connection  # noqa: E402
from pgwire_inspect.decode import decode_frames  # noqa: E402
from pgwire_inspect.protocol import DataRow, MalformedMessage  # noqa: E402

DATA = HERE / "data"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The query recorded: every row differs, and the rows vary in width.
SQL = ("select g, md5(g::text) as h, repeat(chr(97 + g % 26), g % 40) as pad, "
       "(g::numeric / 7)::numeric(12, 4) as q, now() as t "
       "from generate_series(1, {rows}) as g")


# -- recording ---------------------------------------------------------------------------


def record(path: Path, rows: int, dsn: str, attempts: int = 3) -> None:
    """Capture the SELECT from the server and save the pcap and the client's rows.

    Raises:
        SystemExit: no clean capture after ``attempts`` tries.
    """
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(dsn)
    host, port = url.host or "127.0.0.1", url.port or 5432
    for attempt in range(1, attempts + 1):
        with LiveCapture(host, port) as cap:
            time.sleep(0.2)
            conn = psycopg2.connect(host=host, port=port, user=url.username or "postgres",
                                    dbname=url.database or "postgres", sslmode="disable")
            sock = socket.socket(fileno=conn.fileno())
            client_port = int(sock.getsockname()[1])
            sock.detach()
            with conn.cursor() as cur:
                cur.execute(SQL.format(rows=int(rows)))
                fetched = [[show(v) for v in row] for row in cur.fetchall()]
            conn.close()
            closed = cap.wait_for_close(client_port, timeout=30.0)
        frames = [f for f in cap.frames()
                  if (s := decode_frame(f)) is not None and client_port in (s.sport, s.dport)]
        frames = [Frame(i, f.ts, f.linktype, f.data, f.wirelen) for i, f in enumerate(frames, 1)]
        problem = None if closed else "the connection's end was not captured"
        problem = problem or check_intact(frames, fetched)
        if problem is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_pcap(path, frames)
            ref = {"sql": SQL.format(rows=rows), "port": port, "rows": fetched}
            path.with_suffix(".json").write_text(json.dumps(ref))
            return
        print(f"recording attempt {attempt}: {problem}; recording again", file=sys.stderr)
    raise SystemExit(f"no clean capture of {rows} rows after {attempts} attempts")


def check_intact(frames: Sequence[Frame], fetched: list[list[str | None]] | None
                 ) -> str | None:
    """Why the capture is not a clean record of the client's rows, or None.

    One connection, no gap, no malformed message, and (unless ``fetched``
    is None) DataRows that decode to exactly the rows the client fetched.
    """
    dec = decode_frames(frames)
    if len(dec.connections) != 1:
        return f"{len(dec.connections)} connections"
    conn = dec.connections[0]
    if conn.gaps:
        return f"{len(conn.gaps)} gaps (the sniffer missed packets)"
    if conn.malformed:
        return f"{len(conn.malformed)} malformed messages"
    rows = expected_rows(conn)
    if fetched is not None and [r.values for r in rows] != fetched:
        return f"{len(rows)} DataRows decoded, not the {len(fetched)} rows the client fetched"
    return None


# -- the experiment ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One DataRow of the intact capture: its stream span, bytes and values (as text)."""

    offset: int
    end: int
    raw: bytes
    values: list[str | None]


def expected_rows(conn: Connection) -> list[Row]:
    """Every DataRow of a connection, with its values decoded by the connection's types."""
    out = []
    for wm in conn.messages:
        m = wm.message
        if isinstance(m, DataRow):
            result = conn.result_of(wm)
            values = conn.decode_row(result, wm) if result is not None else list(m.values)
            out.append(Row(m.offset, m.end, m.raw, [show(v) for v in values]))
    return out


def server_segments(frames: Sequence[Frame], port: int) -> dict[int, list[int]]:
    """TCP sequence number -> frame numbers, for server-to-client segments that carry data.

    A live loopback capture holds each segment twice; both copies share
    the sequence number, so they land in the same list.
    """
    out: dict[int, list[int]] = {}
    for f in frames:
        s = decode_frame(f)
        if s is not None and s.sport == port and s.payload:
            out.setdefault(s.seq, []).append(f.no)
    return out


def delete_segments(frames: Sequence[Frame], loss: float, seed: int, port: int = 5432
                    ) -> tuple[list[Frame], set[int], int]:
    """Delete a fraction of the server's data segments (every copy of each).

    Args:
        frames: the intact capture.
        loss: fraction of the distinct server data segments to delete (at least one).
        seed: seeds `random.Random`, so the same seed deletes the same segments.
        port: the server's TCP port.

    Returns:
        (the frames kept, in order and numbered as before; the numbers of
        the frames deleted; how many distinct segments there were).
    """
    segments = server_segments(frames, port)
    seqs = sorted(segments, key=lambda seq: segments[seq][0])
    k = max(1, round(loss * len(seqs)))
    chosen = random.Random(seed).sample(seqs, k)
    gone = {no for seq in chosen for no in segments[seq]}
    return [f for f in frames if f.no not in gone], gone, len(seqs)


@dataclass
class Recovery:
    """What decoding made of a capture with deleted segments.

    Attributes:
        seed, loss: as given.
        segments: distinct server data segments in the capture.
        deleted_segments, deleted_frames: what was deleted.
        deleted_ranges: (start, end) stream offsets of the server bytes deleted.
        expected: DataRows in the intact capture.
        must_survive: those whose bytes lay entirely outside the deleted ranges.
        recovered: of those, decoded at the same offset with the same bytes and values.
        wrong_offset: of those, decoded with the right bytes at another offset.
        wrong_values: of those, decoded with the right bytes but other values.
        spurious: DataRows decoded that are no DataRow of the intact capture.
        connections: one line per connection: bytes lost, stretches skipped, resumption.
    """

    seed: int
    loss: float
    segments: int
    deleted_segments: int
    deleted_frames: int
    deleted_ranges: list[tuple[int, int]]
    expected: int
    must_survive: int
    recovered: int
    wrong_offset: int
    wrong_values: int
    spurious: int
    connections: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """recovered / must_survive (1.0 when nothing had to survive)."""
        return self.recovered / self.must_survive if self.must_survive else 1.0


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def describe(conn: Connection) -> str:
    """Bytes lost, malformed stretches and where decoding resumed, for one connection."""
    parts = [f"connection {conn.id} {conn.client_text} -> {conn.server_text}:"]
    for d in "FB":
        gaps = [(off, n) for dd, off, n, _, _ in conn.gaps if dd == d]
        msgs = [w.message for w in conn.messages if w.direction == d]
        bad = [m for m in msgs if isinstance(m, MalformedMessage)]
        if not gaps and not bad:
            parts.append(f"{d}: no bytes lost, {len(msgs)} messages;")
            continue
        resumed = []
        for m in bad:
            after = next((x for x in msgs if x.offset >= m.end), None)
            where = f"byte {after.offset} ({after.name})" if after is not None else "never"
            resumed.append(f"[{m.offset}, {m.end}) skipped, resumed at {where}")
        parts.append(f"{d}: {sum(n for _, n in gaps)} bytes lost in {len(gaps)} gap(s) "
                     f"at {', '.join(str(off) for off, _ in gaps) or '-'}; {len(bad)} "
                     f"malformed stretch(es), {sum(m.length for m in bad)} bytes: "
                     + "; ".join(resumed))
    return " ".join(parts)


def measure(intact: Sequence[Frame], kept: Sequence[Frame], gone: set[int],
            fetched: list[list[str | None]] | None, *, seed: int = 0, loss: float = 0.0,
            segments: int = 0, deleted_segments: int = 0, port: int = 5432) -> Recovery:
    """Compare the decoding of the damaged capture with the intact one.

    Args:
        intact: the whole capture (one connection).
        kept: the capture with segments deleted.
        gone: numbers of the deleted frames.
        fetched: the rows the client fetched, values as text (`show`): the
            reference the intact capture must decode to (None: not checked).
        seed, loss, segments, deleted_segments: recorded in the result.
        port: the server's TCP port.

    Returns:
        The `Recovery` counts.

    Raises:
        AssertionError: the intact capture does not decode to ``fetched``.
    """
    whole = decode_frames(intact, ports=(port,), keep_frames=True)
    (conn,) = whole.connections
    rows = expected_rows(conn)
    if fetched is not None:
        assert [r.values for r in rows] == fetched, "the intact capture is not the client's rows"
    ranges = []
    for no in gone:
        loc = whole.location(no)
        if loc is not None and loc[1].direction == "B":
            ranges.append((loc[1].stream_offset, loc[1].stream_offset + loc[1].length))
    ranges = _merge(ranges)
    survive = [r for r in rows if all(r.end <= a or r.offset >= b for a, b in ranges)]
    damaged = decode_frames(kept, ports=(port,))
    by_raw: dict[bytes, list[Row]] = {}
    for dconn in damaged.connections:
        for r in expected_rows(dconn):
            by_raw.setdefault(r.raw, []).append(r)
    recovered = wrong_offset = wrong_values = 0
    for r in survive:
        got = by_raw.get(r.raw, [])
        if any(g.offset == r.offset and g.values == r.values for g in got):
            recovered += 1
        elif any(g.offset != r.offset for g in got):
            wrong_offset += 1
        elif got:
            wrong_values += 1
    known = {r.raw for r in rows}
    spurious = sum(len(v) for raw, v in by_raw.items() if raw not in known)
    return Recovery(seed, loss, segments, deleted_segments, len(gone), ranges, len(rows),
                    len(survive), recovered, wrong_offset, wrong_values, spurious,
                    [describe(c) for c in damaged.connections])


def report(rec: Recovery, min_rate: float) -> str:
    """The short text report of one seed."""
    lost = ", ".join(f"[{a}, {b})" for a, b in rec.deleted_ranges)
    verdict = "ok" if rec.rate >= min_rate else f"BELOW {min_rate:.0%}"
    lines = [
        f"seed {rec.seed}, loss {rec.loss:.2%}: deleted {rec.deleted_segments} of "
        f"{rec.segments} server data segments ({rec.deleted_frames} frames): B bytes {lost}",
        f"  DataRows expected                 {rec.expected}",
        f"  outside the deleted segments      {rec.must_survive}",
        f"  decoded with right bytes, values  {rec.recovered}  "
        f"({rec.rate:.2%}, {verdict})",
        f"  right bytes at a wrong offset     {rec.wrong_offset}",
        f"  right bytes, wrong values         {rec.wrong_values}",
        f"  DataRows decoded that are not in the result  {rec.spurious}",
    ]
    lines += [f"  {line}" for line in rec.connections]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Record (once) and run the experiment for each seed; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, action="append", help="repeat for several (default 1)")
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--min-rate", type=float, default=0.95)
    ap.add_argument("--dsn", default=DEFAULT_DSN)
    ap.add_argument("--capture", type=Path, help="default: benchmarks/data/gap-recovery-ROWS.pcap")
    ap.add_argument("--record", action="store_true", help="record again even if saved")
    args = ap.parse_args(argv)
    path = args.capture or DATA / f"gap-recovery-{args.rows}.pcap"
    if args.record or not path.exists() or not path.with_suffix(".json").exists():
        record(path, args.rows, args.dsn)
    ref = json.loads(path.with_suffix(".json").read_text())
    frames = list(open_capture(path))
    problem = check_intact(frames, ref["rows"])
    if problem is not None:
        raise SystemExit(f"{path}: {problem}; record it again with --record")
    print(f"{path}: {len(frames)} frames, {len(ref['rows'])} rows; {ref['sql']}")
    worst = 1.0
    for seed in args.seed or [1]:
        kept, gone, segments = delete_segments(frames, args.loss, seed, ref["port"])
        rec = measure(frames, kept, gone, ref["rows"], seed=seed, loss=args.loss,
                      segments=segments, deleted_segments=max(1, round(args.loss * segments)),
                      port=ref["port"])
        print(report(rec, args.min_rate))
        worst = min(worst, rec.rate)
    return 0 if worst >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
