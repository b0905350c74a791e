"""Check that a live capture keeps up with a big result: no lost segment.

Usage (as root for ``--capture sniff``; see benchmarks/README.md):

    .venv/bin/python benchmarks/live.py [--runs 5] [--rows 100000] [--capture sniff|relay]

The target: ``pgwire-inspect query`` capturing a 100,000-row result loses no
segment (the reassembly reports no gap) in 5 runs out of 5.

Each run:

1. ``pgwire-inspect query pgwire_live_bench:load --capture sniff --write-pcap
   FILE`` runs as a subprocess, in a temporary folder holding the ORM module
   ``pgwire_live_bench.py``: a mapped class ``Item`` loaded with
   ``select(Item).from_statement(...)`` over ``generate_series(1, rows)``, so
   SQLAlchemy builds one instance per row (nothing is created in the
   server). Its table view (stdout) and notes (stderr) are kept; the
   connection header of the view says ``N gap(s)`` when the tool saw any.
2. Once the capture is saved, the command gets ``--grace`` seconds to finish
   its view; after that it is stopped and the run says so (the capture is
   judged all the same).
3. The saved capture is decoded with the tool's own pipeline
   (`pgwire_inspect.decode.decode_frames`, every port): the ORM's
   connection is the one whose query holds the module's marker comment. The
   run meets the target when that connection has no gap, its query returned
   exactly ``rows`` DataRows and the CommandComplete ``SELECT rows``, and the
   tool's own view (when it finished) reported no gap either.

``--write-pcap`` keeps the ORM's connection only; were other connections
in the capture, only the ORM's would be judged, the others' gaps counted
apart.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import code_version  # noqa: E402

from pgwire_inspect.capture import open_capture  # noqa: E402
from pgwire_inspect.conversation import Connection, QueryExchange, ResultSet, WireMessage  # noqa: E402
from pgwire_inspect.decode import decode_frames  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_ROWS = 100_000
DEFAULT_RUNS = 5
MB = 1_000_000
#: Marks the benchmark's query in the capture (psycopg2 sends the text as is).
MARKER = "pgwire-live-bench"
MODULE = "pgwire_live_bench"

_MODULE_TEXT = '''\
"""{rows} ORM instances from generate_series (written by benchmarks/live.py)."""

import datetime
import decimal

from sqlalchemy import select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "pgwire_live_item"  # never created: rows come from generate_series

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str]
    amount: Mapped[decimal.Decimal]
    created: Mapped[datetime.datetime]


SQL = ("/* {marker} */ select g as id, md5(g::text) as label, g * 1.5 as amount, "
       "now() as created from generate_series(1, {rows}) g")


def load(session: Session) -> list[Item]:
    return list(session.scalars(select(Item).from_statement(text(SQL))).all())
'''

_SAVED = re.compile(r"wrote (\d+) frames to ")
_HEADER = re.compile(r"^Connection \d+ .*$", re.MULTILINE)
_GAPS = re.compile(r"(\d+) gap\(s\), (\d+) bytes missing")


@dataclass
class RunResult:
    """One live run and what its capture holds.

    Attributes:
        index: 1-based run number.
        saved_s: seconds from the start to the saved capture (None: never saved).
        total_s: seconds from the start to the command's exit or stop.
        returncode: the command's exit status (None when it was stopped).
        stopped: the command was stopped ``grace`` seconds after saving the capture.
        tool_gaps: the gaps the command's own view reported (None: no view).
        frames: frames in the saved capture; conn_bytes: stream bytes of the
            ORM's connection (both directions).
        rows: DataRows of the benchmark query; tag: its CommandComplete tag.
        gaps: the ORM connection's gaps, as (direction, offset, length, frame
            before, frame after); other_gaps: gaps of other connections.
        found: the benchmark query was found in the capture.
        error: why the run could not be judged (stderr tail), or "".
    """

    index: int
    saved_s: float | None = None
    total_s: float = 0.0
    returncode: int | None = None
    stopped: bool = False
    tool_gaps: int | None = None
    frames: int = 0
    conn_bytes: int = 0
    rows: int = 0
    tag: str = ""
    gaps: list[tuple[Any, ...]] = field(default_factory=list)
    other_gaps: int = 0
    found: bool = False
    error: str = ""

    def ok(self, rows: int) -> bool:
        """Whether the run meets the target: complete result, no gap anywhere it was looked at."""
        return (self.found and not self.gaps and not self.tool_gaps and self.rows == rows
                and self.tag == f"SELECT {rows}" and not self.error)


def pgwire_inspect() -> list[str]:
    """The command that runs pgwire-inspect with this interpreter."""
    script = Path(sys.executable).parent / "pgwire-inspect"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgwire_inspect"]


def write_module(folder: Path, rows: int) -> str:
    """Write the ORM module into ``folder``; returns the ``module:function`` spec."""
    (folder / f"{MODULE}.py").write_text(_MODULE_TEXT.format(rows=rows, marker=MARKER))
    return f"{MODULE}:load"


def run_query(argv: list[str], cwd: Path, pcap: Path, grace: float, timeout: float,
              result: RunResult) -> tuple[str, str]:
    """Run the live command until it exits, or stop it ``grace`` s after it saved the capture.

    Args:
        argv: the command; cwd: its folder (holds the ORM module).
        pcap: the ``--write-pcap`` file; grace: seconds allowed after it is saved;
        timeout: seconds allowed in all.
        result: filled with the times, exit status and whether it was stopped.

    Returns:
        The command's stdout and stderr text.
    """
    env = {**os.environ, "COLUMNS": "1000", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    out_path, err_path = cwd / "stdout.txt", cwd / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while proc.poll() is None:
                now = time.perf_counter() - t0
                if result.saved_s is None and pcap.exists() and _SAVED.search(
                        err_path.read_text("utf-8", "replace")):
                    result.saved_s = now
                if now > timeout or (result.saved_s is not None
                                     and now > result.saved_s + grace):
                    result.stopped = True
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the command only
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        result.total_s = time.perf_counter() - t0
    result.returncode = None if result.stopped else proc.returncode
    stderr = err_path.read_text("utf-8", "replace")
    if result.saved_s is None and pcap.exists() and _SAVED.search(stderr):
        result.saved_s = result.total_s
    return out_path.read_text("utf-8", "replace"), stderr


def tool_gaps(stdout: str) -> int | None:
    """The gaps the command's table view reported for its connection (None: no header)."""
    headers = _HEADER.findall(stdout)
    if not headers:
        return None
    return sum(int(m.group(1)) for h in headers for m in _GAPS.finditer(h))


def check_capture(pcap: Path, result: RunResult) -> None:
    """Decode the saved capture and fill in the ORM connection's frames, rows and gaps."""
    rows_of: dict[int, int] = {}
    found: dict[str, Any] = {}

    def on_row(conn: Connection, res: ResultSet, wm: WireMessage) -> None:
        rows_of[id(res)] = rows_of.get(id(res), 0) + 1

    def on_query(conn: Connection, q: QueryExchange) -> None:
        if q.sql and MARKER in q.sql and "key" not in found:
            found["key"] = conn.key
            found["rows"] = sum(rows_of.get(id(r), 0) for r in q.results)
            found["tag"] = " / ".join(str(getattr(r.complete.message, "tag", r.complete.name))
                                      for r in q.results if r.complete is not None)

    decoded = decode_frames(open_capture(pcap), ports=None, keep_messages=False,
                            keep_rows=False, keep_queries=False, on_row=on_row,
                            on_query=on_query)
    result.frames = decoded.frames
    for conn in decoded.connections:
        if conn.key == found.get("key"):
            result.found = True
            result.gaps = list(conn.gaps)
            result.conn_bytes = conn.bytes["F"] + conn.bytes["B"]
            result.rows = found["rows"]
            result.tag = found["tag"]
        else:
            result.other_gaps += len(conn.gaps)


def live_run(index: int, args: argparse.Namespace, work: Path) -> RunResult:
    """One run of ``pgwire-inspect query`` and the check of its capture."""
    result = RunResult(index)
    folder = work / f"run{index}"
    folder.mkdir()
    spec = write_module(folder, args.rows)
    pcap = folder / "live.pcap"
    argv = [*pgwire_inspect(), "query", spec, "--dsn", args.dsn, "--capture", args.capture,
            "--write-pcap", str(pcap), "--rows", "3"]
    stdout, stderr = run_query(argv, folder, pcap, args.grace, args.timeout, result)
    result.tool_gaps = tool_gaps(stdout)
    if result.saved_s is None:
        result.error = "no capture saved: " + " ".join(stderr.split())[-500:]
        return result
    check_capture(pcap, result)
    if not result.found:
        result.error = "the benchmark query is not in the capture"
    elif result.returncode not in (0, None):
        result.error = f"exited with {result.returncode}: " + " ".join(stderr.split())[-500:]
    return result


def describe(r: RunResult, rows: int) -> str:
    """One line about a run."""
    if r.saved_s is None:
        return f"  run {r.index}: {r.total_s:.1f} s, {r.error}  -> MISSED"
    end = (f"stopped {r.total_s - r.saved_s:.0f} s later (view not finished)" if r.stopped
           else f"exited {r.returncode} at {r.total_s:.1f} s")
    said = "-" if r.tool_gaps is None else str(r.tool_gaps)
    lost = sum(g[2] for g in r.gaps)
    text = (f"  run {r.index}: capture saved at {r.saved_s:.1f} s, {end}; "
            f"{r.frames:,} frames, {r.conn_bytes / MB:.1f} MB on the ORM's connection, "
            f"{r.rows:,} DataRows, {r.tag or 'no CommandComplete'}, "
            f"{len(r.gaps)} gaps ({lost} B lost; view said {said})")
    if r.other_gaps:
        text += f", {r.other_gaps} gaps on other connections"
    if r.error:
        text += f"; {r.error}"
    return f"{text}  -> {'ok' if r.ok(rows) else 'MISSED'}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 with --strict and the target missed)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="live runs (default 5)")
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                    help="rows the ORM loads (default 100,000)")
    ap.add_argument("--dsn", default=DEFAULT_DSN, help="the server")
    ap.add_argument("--capture", choices=["sniff", "relay"], default="sniff",
                    help="how the command captures (default sniff: it can drop packets)")
    ap.add_argument("--grace", type=float, default=30.0,
                    help="seconds the command may run after saving its capture (default 30)")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds a run may take in all (default 1800)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the runs' folders (capture, module, output) in DIR")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = ap.parse_args(argv)
    log = print

    log(f"live capture: {args.runs} run(s) of pgwire-inspect query --capture {args.capture}, "
        f"{args.rows:,} rows, {args.dsn}")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="pgwire-live-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for i in range(1, args.runs + 1):
            version = code_version()
            r = live_run(i, args, work)
            results.append(r)
            log(describe(r, args.rows) + f"  [code: {version}]")
    good = sum(r.ok(args.rows) for r in results)
    met = good == args.runs
    log(f"live: {good}/{args.runs} runs with no gap ({args.rows:,} rows each), "
        f"target {args.runs}/{args.runs}: {'met' if met else 'MISSED'}")
    stopped = sum(r.stopped for r in results)
    if stopped:
        log(f"note: in {stopped} run(s) the command was still building its view "
            f"{args.grace:g} s after saving the capture and was stopped")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
