"""The ``watch`` command: every query on a live PostgreSQL port, printed as it completes.

Registered on the main group with ``register(cli)``; the work is done by
`pgwire_inspect.watch` (`PortSniffer`, `Watcher`); this module only renders.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import IO, Any, cast

import click
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .cli_common import Ctx, apply_redaction, guarded, redaction_options

__all__ = ["register", "watch"]

_MAX_VALUE = 40
_MAX_SQL_LINES = 12


def register(group: click.Group) -> None:
    """Add the ``watch`` command to ``group`` (the pgwire-inspect CLI group)."""
    group.add_command(watch)


def _clock(ts: float) -> str:
    """Local time of day with milliseconds, e.g. ``14:03:07.215``."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _value(value: Any) -> str:
    """A decoded value as table text (long values cut)."""
    from .types import value_to_text

    if isinstance(value, Exception):
        text = f"<cannot decode: {value}>"
    else:
        try:
            text = value_to_text(value)
        except Exception:
            text = repr(value)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


class QueryPrinter:
    """Prints `Watcher` callbacks as text (the table format).

    Args:
        out: the console for queries and connections.
        err: the console for notices.
        rows: DataRows shown per query.
        show_all: print transaction control and set-up queries in full
            instead of one dim line each.
    """

    def __init__(self, out: Console, err: Console, *, rows: int, show_all: bool) -> None:
        self.out = out
        self.err = err
        self.rows = rows
        self.show_all = show_all

    def connection(self, conn: Any, startup: dict[str, str] | None) -> None:
        """One dim line for a new connection (or one already open when watching began)."""
        where = f"{conn.client_text} → {conn.server_text}"
        if startup is None:
            text = (f"conn {conn.id}: {where} was already open when watching began; decoding "
                    "from its next message (statements prepared earlier show without SQL)")
        else:
            keys = ("user", "database", "application_name")
            text = f"conn {conn.id} opened: {where} " + " ".join(
                f"{k}={startup[k]}" for k in keys if startup.get(k))
        self.out.print(Text(text, style="dim"))

    def notice(self, text: str) -> None:
        """A notice (a connection turned to TLS) on the error console."""
        self.err.print("[yellow]note:[/] ", end="")
        self.err.print(text, markup=False, highlight=False)

    def query(self, q: Any) -> None:
        """One finished query: header, SQL, parameters, a few rows, error."""
        from .render._policy import current

        head = Text()
        head.append(f"{_clock(q.started)} conn {q.conn} ", style="dim")
        sql = q.sql
        if q.kind in ("transaction", "setup") and not self.show_all:
            flat = " ".join((sql or "").split())
            head.append(flat if len(flat) <= 100 else flat[:99] + "…", style="dim")
            head.append(f"  {_ms(q.duration)}", style="dim")
            self.out.print(head)
            return
        head.append(q.command_tag or ("ERROR" if q.error else q.kind), style="bold")
        head.append(f"  {q.row_count} row{'' if q.row_count == 1 else 's'}  {_ms(q.duration)}")
        if q.protocol != "simple":
            head.append(f"  ({q.protocol})", style="dim")
        self.out.print(head)
        if sql is None:
            name = f" {q.statement!r}" if q.statement else ""
            self.out.print(Text(f"  (executes prepared statement{name}, prepared before "
                                "watching began: SQL unknown)", style="yellow"))
        else:
            lines = [ln.rstrip() for ln in sql.strip().splitlines() if ln.strip()] or [""]
            if len(lines) > _MAX_SQL_LINES:
                lines = [*lines[:_MAX_SQL_LINES], f"… ({len(lines) - _MAX_SQL_LINES} more lines)"]
            self.out.print(Text("\n".join("  " + ln for ln in lines), style="yellow"))
        for i, value in enumerate(q.parameters, 1):
            shown = repr(value) if isinstance(value, str | bytes) else _value(value)
            self.out.print(Text(f"  ${i} = {shown}", style="cyan"))
        if q.columns and self.rows > 0:
            policy = current()
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0),
                          show_edge=False)
            for name in q.columns:
                table.add_column(name or "?column?", overflow="fold")
            hidden = [policy.hides_column(name) for name in q.columns]
            for row in q.rows[: self.rows]:
                table.add_row(*("***" if hide and v is not None else _value(v)
                                for v, hide in zip(row, hidden, strict=False)))
            self.out.print(Padding(table, (0, 0, 0, 2), expand=False))
            more = q.row_count - min(len(q.rows), self.rows)
            if more > 0:
                self.out.print(Text(f"    … {more} more row{'' if more == 1 else 's'}",
                                    style="dim"))
        err = q.error
        if err is not None:
            line = f"  {err.get('severity', 'ERROR')} {err.get('code', '')}: " \
                   f"{err.get('message', '')}"
            for key in ("detail", "hint"):
                if err.get(key):
                    line += f"\n  {key}: {err[key]}"
            self.out.print(Text(line, style="red"))
        self.out.print()


class _Flushing:
    """A text stream that flushes after each write (JSON lines reach a pipe at once)."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, text: str) -> int:
        n = int(self.out.write(text))
        self.out.flush()
        return n


@click.command()
@click.option("--port", type=int, default=5432, show_default=True,
              help="The PostgreSQL server port; every connection to it is decoded.")
@click.option("--iface", help="Interface to listen on (default: loopback, which carries every "
                              "connection between programs on this machine; e.g. eth0 for "
                              "clients on other machines).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              show_default=True, help="Text for people; JSON lines (one per protocol message, "
                                      "then the summary) for scripts.")
@click.option("--rows", type=int, default=3, show_default=True,
              help="DataRows shown per query.")
@click.option("--all", "show_all", is_flag=True,
              help="Show transaction control (BEGIN, COMMIT ...) and driver set-up queries in "
                   "full, not as one dim line each.")
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: at Ctrl-C).")
@redaction_options
@click.pass_obj
@guarded
def watch(ctx: Ctx, port: int, iface: str | None, fmt: str, rows: int, show_all: bool,
          duration: float | None, show_secrets: bool, redact_columns: tuple[str, ...]) -> None:
    """Watch every connection to a PostgreSQL port on this machine, live.

    Prints each query as it completes (connection, SQL, parameters, row
    count, a few rows, duration, errors) until Ctrl-C, then a summary as
    `read --stats` prints it. Needs root or CAP_NET_RAW. A connection that
    turns to TLS cannot be decoded: the app's DSN needs sslmode=disable
    (asyncpg: ssl=disable) for local debugging.

    \b
    Example (three terminals):
      uvicorn main:app                       # the app, DATABASE_URL=...?ssl=disable
      sudo pgwire-inspect watch --port 5432  # this
      curl localhost:8000/users/Demo         # a request
    """
    from .render.jsonl import JsonLinesWriter
    from .render.stats_view import render_stats
    from .stats import StatsCollector
    from .watch import PortSniffer, Watcher

    apply_redaction(show_secrets, redact_columns)
    printer = QueryPrinter(ctx.out, ctx.err, rows=rows, show_all=show_all)
    collector = StatsCollector()
    writer = JsonLinesWriter(cast(IO[str], _Flushing(sys.stdout))) if fmt == "jsonl" else None
    watcher = Watcher(port, stats=collector, sample_rows=max(rows, 0),
                      on_query=None if writer else printer.query,
                      on_connection=None if writer else printer.connection,
                      on_notice=printer.notice,
                      on_message=writer.message if writer else None)
    sniffer = PortSniffer(port, iface)
    interrupts = [0]

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupts[0] += 1
        if interrupts[0] > 1:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        sniffer.stop()

    main_thread = threading.current_thread() is threading.main_thread()
    previous: Any = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        sniffer.start()
        ctx.err.print(f"watching TCP port {port} on {sniffer.iface}: every connection to it, "
                      "decoded as it arrives; Ctrl-C stops and prints a summary",
                      style="dim", highlight=False)
        decoded = watcher.run(sniffer.frames(duration))
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGINT, previous)
        sniffer.close()
    collector.finish(decoded.connections)
    if writer is not None:
        writer.write(collector.as_json())
    else:
        render_stats(ctx.out, collector, frames=decoded.frames)
