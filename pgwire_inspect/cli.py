"""The pgwire-inspect command line: parses options, calls the layers, reports errors.

Library code raises `PgWireError` subclasses; only this module prints them,
as one red line on stderr with a non-zero exit code (``--debug`` adds the
traceback).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from . import __version__
from .cli_more import register
from .errors import CaptureError, PgWireError

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes: 1 for a failure of the work asked for, 2 for bad input.
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_consoles(no_color: bool) -> tuple[Console, Console]:
    """One console for output, one for errors (rich-cli's habit)."""
    color = not no_color and "NO_COLOR" not in os.environ
    out = Console(no_color=not color, highlight=False, soft_wrap=False)
    err = Console(stderr=True, no_color=not color, highlight=False, soft_wrap=True)
    return out, err


class Ctx:
    """What every command shares: the consoles and the debug switch."""

    def __init__(self, debug: bool, no_color: bool) -> None:
        self.debug = debug
        self.out, self.err = make_consoles(no_color)

    def fail(self, exc: BaseException, code: int) -> None:
        """Print one line for ``exc`` (and the traceback with --debug), exit with ``code``."""
        if self.debug:
            self.err.print(traceback.format_exc(), markup=False, highlight=False)
        text = str(exc).strip().splitlines()
        line = text[0] if text else type(exc).__name__
        self.err.print("[bold red]error:[/] ", end="")
        self.err.print(line, markup=False, style="red")
        raise SystemExit(code)


def guarded(fn: F) -> F:
    """Turn library errors into one-line messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx: Ctx = click.get_current_context().find_object(Ctx)  # type: ignore[assignment]
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors: click prints them and exits with 2
        except CaptureError as exc:
            ctx.fail(exc, EXIT_BAD_INPUT)
        except PgWireError as exc:
            ctx.fail(exc, EXIT_FAILURE)
        except KeyboardInterrupt:
            ctx.err.print("[yellow]interrupted[/]")
            raise SystemExit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise SystemExit(EXIT_FAILURE) from None
        except OSError as exc:
            ctx.fail(exc, EXIT_FAILURE)
        except Exception as exc:
            ctx.fail(RuntimeError(f"internal error: {type(exc).__name__}: {exc} "
                                  "(--debug shows the traceback)"), EXIT_FAILURE)
        return None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgwire-inspect")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option("--no-color", is_flag=True, help="No colors (NO_COLOR in the environment too).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, no_color: bool) -> None:
    """See what an ORM and PostgreSQL say to each other on the wire.

    \b
    pgwire-inspect demo                     run the built-in ORM demo, captured live
    pgwire-inspect query app.queries:load   run your own ORM function, captured live
    pgwire-inspect read capture.pcap        decode a saved pcap/pcapng capture
    """
    ctx.obj = Ctx(debug, no_color)


# ------------------------------------------------------------------ shared


def redaction_options(fn: F) -> F:
    """--show-secrets and --redact-columns: what every view masks."""
    fn = click.option("--redact-columns", "redact_columns", multiple=True, metavar="PATTERN",
                      help="Mask the values of matching columns in every view: a glob such as "
                           "'*password*' or a regular expression 're:...' (repeatable).")(fn)
    fn = click.option("--show-secrets", is_flag=True,
                      help="Show passwords, md5 hashes and SASL messages (masked by default; "
                           "for teaching).")(fn)
    return fn


def frame_options(fn: F) -> F:
    """--hexdump, --explain, frame choice and export: the classroom views."""
    opts = [
        click.option("--hexdump", is_flag=True,
                     help="Show frames as a Wireshark-style hex dump with every byte colored "
                          "and named (link, IP and TCP headers, each message field), and a "
                          "legend. Without color, marker lines say which bytes are which."),
        click.option("--explain", "explain", is_flag=True,
                     help="Walk through each frame shown byte by byte in plain sentences "
                          "(demo/query: ending with a DataRow becoming an ORM instance)."),
        click.option("--frame", "frame_numbers", type=int, multiple=True, metavar="N",
                     help="Frames to show (repeatable)."),
        click.option("--conn", "conn_number", type=int, help="Only frames of this connection."),
        click.option("--query", "query_number", type=int, metavar="N",
                     help="Only frames of query N (as numbered in the read view)."),
        click.option("--type", "message_types", metavar="NAMES",
                     help="Only frames holding these messages, e.g. RowDescription,DataRow."),
        click.option("--max-frames", type=int, default=12, show_default=True,
                     help="Frames dumped at most when not chosen with --frame."),
        click.option("--export-svg", type=click.Path(dir_okay=False),
                     help="Also write what is shown, in color, as an SVG picture (for slides)."),
        click.option("--export-html", type=click.Path(dir_okay=False),
                     help="Also write what is shown, in color, as an HTML page."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _frame_choice(frame_numbers: tuple[int, ...], conn_number: int | None,
                  query_number: int | None, message_types: str | None,
                  max_frames: int) -> Any:
    from .cli_frames import FrameChoice

    types = tuple(t.strip() for t in (message_types or "").split(",") if t.strip())
    return FrameChoice(frame_numbers, conn_number, query_number, types, max_frames)


def apply_redaction(show_secrets: bool, redact_columns: tuple[str, ...]) -> None:
    """Set the masking policy of the views."""
    from .redact import Redaction
    from .render._policy import set_redaction

    try:
        set_redaction(Redaction(show_secrets=show_secrets, column_patterns=redact_columns))
    except re.error as exc:
        raise click.BadParameter(f"bad regular expression: {exc}",
                                 param_hint="--redact-columns") from None


# ------------------------------------------------------------------ read


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--port", "ports", type=int, multiple=True,
              help="Decode only this server port (repeat for several). Default: port 5432 and "
                   "PostgreSQL found on any other port by the shape of its first messages.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              show_default=True, help="Tables for people, JSON lines for scripts.")
@click.option("--rows", type=int, default=5, show_default=True,
              help="DataRows shown per result (the last one is shown too).")
@click.option("--dsn", help="Resolve table and type OIDs to names from this server's catalog.")
@click.option("--write-pcap", type=click.Path(dir_okay=False),
              help="Write the frames read to a pcap file (with --redact: secrets masked).")
@click.option("--redact", is_flag=True,
              help="With --write-pcap: overwrite passwords, SASL data and --redact-columns "
                   "values with 'x' so the file can be shared.")
@click.option("--linktype", type=int, default=None,
              help="Link type of a hex dump's frames (1 Ethernet, 0 BSD loopback, 101 raw IP, "
                   "113 Linux cooked); guessed from the bytes when not given.")
@click.option("--stats", is_flag=True,
              help="Decode everything (values included) and print a summary: queries by kind, "
                   "rows, bytes, errors, latency percentiles per query text. For big captures.")
@redaction_options
@click.pass_obj
@guarded
def read(ctx: Ctx, capture: str, ports: tuple[int, ...], fmt: str, rows: int,
         dsn: str | None, write_pcap: str | None, redact: bool, linktype: int | None,
         stats: bool, show_secrets: bool,
         redact_columns: tuple[str, ...]) -> None:
    """Decode a saved capture: pcap or pcapng (as tcpdump and Wireshark write them), or a
    hex dump (Wireshark "Copy as Hex Dump", tcpdump -xx/-X, od -Ax -tx1, hexdump -C, xxd).
    CAPTURE may be - for standard input.

    \b
    Example:
      pgwire-inspect read session.pcapng --port 5433
      pgwire-inspect read session.pcap --format jsonl | jq .type
      pgwire-inspect read big.pcap --stats
      pbpaste | pgwire-inspect read -
    """
    from .decode import decode_frames
    from .render.capture_view import render_capture

    apply_redaction(show_secrets, redact_columns)
    cap = _open_source(capture, linktype)
    port_set = ports or None
    if write_pcap:
        decoded = decode_frames(cap, ports=port_set, keep_frames=True)
        _save_pcap(ctx, write_pcap, decoded, decoded.kept_frames, redact)
        return
    if stats:
        from .render.stats_view import render_stats
        from .stats import StatsCollector

        collector = StatsCollector()
        decoded = decode_frames(cap, ports=port_set, keep_messages=False, keep_rows=False,
                                keep_queries=False, on_row=collector.on_row,
                                on_query=collector.on_query)
        collector.finish(decoded.connections)
        if fmt == "jsonl":
            import json

            sys.stdout.write(json.dumps(collector.as_json(), default=str) + "\n")
        else:
            render_stats(ctx.out, collector, frames=decoded.frames)
    elif fmt == "jsonl":
        from .render.jsonl import JsonLinesWriter

        writer = JsonLinesWriter(sys.stdout)
        decoded = decode_frames(cap, ports=port_set, keep_messages=False, emit=writer.message)
    else:
        decoded = decode_frames(cap, ports=port_set)
        catalog = _catalog_for(dsn, decoded) if dsn else None
        render_capture(ctx.out, decoded, rows=rows, catalog=catalog)
    for problem in list(getattr(cap, "problems", [])) + decoded.problems:
        ctx.err.print(f"[yellow]warning:[/] {problem}", highlight=False)
    for reason, count in decoded.skipped.items():
        ctx.err.print(f"[yellow]warning:[/] {count} frame(s) skipped: {reason}")
    if decoded.ignored:
        ctx.err.print(f"{decoded.ignored} other TCP connection(s) do not look like PostgreSQL "
                      "and are not shown (--port N decodes a port regardless)", style="dim")
    if not decoded.connections:
        where = f"on port {', '.join(map(str, ports))}" if ports else "that looks like PostgreSQL"
        ctx.err.print(f"[yellow]no TCP connection {where} in {decoded.frames} frames[/]")


def _open_source(path: str, linktype: int | None) -> Any:
    """A capture file, or the frames of a hex dump, from a path or "-" (stdin)."""
    import io

    from .capture import looks_like_hexdump, open_capture, read_hexdump

    if path == "-":
        data = sys.stdin.buffer.read()
        if looks_like_hexdump(data):
            return read_hexdump(data.decode("utf-8", "replace"), linktype=linktype)
        return open_capture(io.BytesIO(data))
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror or exc}") from None
    if looks_like_hexdump(head):
        with open(path, encoding="utf-8", errors="replace") as fh:
            return read_hexdump(fh.read(), linktype=linktype)
    return open_capture(path)


def _catalog_for(dsn: str, decoded: Any) -> Any:
    from .catalog import load_catalog

    tables: set[int] = set()
    types: set[int] = set()
    for conn in decoded.connections:
        for q in conn.queries:
            for r in q.results:
                for c in r.columns:
                    if c.table_oid:
                        tables.add(c.table_oid)
                    if c.type_oid >= 16384:
                        types.add(c.type_oid)
    return load_catalog(dsn, table_oids=tables, type_oids=types)


# ------------------------------------------------------------ demo, query


def live_options(fn: F) -> F:
    """The options shared by `demo` and `query`."""
    opts = [
        click.option("--dsn", envvar="DATABASE_URL", default=DEFAULT_DSN, show_default=True,
                     help="The PostgreSQL server (also DATABASE_URL). Connected to over TCP "
                          "with sslmode=disable, so the traffic can be decoded."),
        click.option("--driver", type=click.Choice(["psycopg2", "psycopg", "asyncpg"]),
                     default="psycopg2", show_default=True,
                     help="The driver SQLAlchemy uses: psycopg2 sends simple Query messages "
                          "with text results; asyncpg (AsyncSession) prepares every statement "
                          "(Parse/Bind/Execute) and asks for binary results."),
        click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
                     show_default=True, help="Tables for people, JSON lines for scripts."),
        click.option("--all", "show_all", is_flag=True,
                     help="Show the startup phase and SQLAlchemy's set-up queries in full."),
        click.option("--rows", type=int, default=10, show_default=True,
                     help="DataRows shown per result."),
        click.option("--write-pcap", type=click.Path(dir_okay=False),
                     help="Save the captured frames as a pcap file (Wireshark opens it)."),
        click.option("--redact", is_flag=True,
                     help="With --write-pcap: overwrite passwords, SASL data and --redact-columns "
                          "values with 'x' (lengths kept, TCP checksums fixed) so the file can "
                          "be shared."),
        click.option("--iface", help="Interface to capture on (default: the one that reaches "
                                     "the server; the loopback interface for 127.0.0.1)."),
        click.option("--capture", "capture_method", type=click.Choice(["auto", "sniff", "relay"]),
                     default="auto", show_default=True,
                     help="sniff: raw socket on the interface (root or CAP_NET_RAW); relay: a "
                          "TCP relay on a loopback port records both directions; auto: sniff "
                          "when permitted and the server is on this machine, else relay."),
        click.option("--connect-timeout", type=float, default=10, show_default=True,
                     help="Seconds to wait for the server."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return redaction_options(fn)


def _run_and_show(ctx: Ctx, program_of: Callable[[], Any], *, dsn: str, driver: str, fmt: str,
                  show_all: bool, rows: int, write_pcap: str | None, iface: str | None,
                  connect_timeout: float, seed_demo: bool, show_secrets: bool,
                  redact_columns: tuple[str, ...], capture_method: str = "auto",
                  redact: bool = False) -> None:
    from .linking import link_run
    from .live import run_live
    from .orm import ensure_demo_data, prepare_url
    from .render.jsonl import JsonLinesWriter
    from .render.orm_view import render_orm_run, write_instances

    apply_redaction(show_secrets, redact_columns)
    url = prepare_url(dsn, driver)
    program = program_of()
    for notice in url.notices:
        ctx.err.print(f"[yellow]note:[/] {notice}", highlight=False)
    if seed_demo:
        ensure_demo_data(url)
    result = run_live(url, program, iface=iface, connect_timeout=connect_timeout,
                      capture=capture_method)
    for notice in result.notices[len(url.notices):]:
        ctx.err.print(f"[yellow]note:[/] {notice}", highlight=False)
    if write_pcap:
        _save_pcap(ctx, write_pcap, result.decoded, result.frames, redact)
    if result.run is None:
        _show_interrupted(ctx, result.decoded, fmt, rows)
        raise SystemExit(EXIT_INTERRUPTED)
    linked = link_run(result.run, result.connection)
    if fmt == "jsonl":
        writer = JsonLinesWriter(sys.stdout)
        conn = result.connection
        if conn is not None:
            for wm in conn.messages:
                writer.message(wm, conn)
        write_instances(writer, linked)
    else:
        catalog = None
        if result.connection is not None:
            try:
                catalog = _catalog_for(str(url.url.set(drivername="postgresql")
                                           .render_as_string(hide_password=False)),
                                       result.decoded)
            except PgWireError as exc:
                ctx.err.print(f"[yellow]note:[/] no catalog names: {exc}", highlight=False)
        render_orm_run(ctx.out, linked, rows=rows, show_all=show_all, catalog=catalog)
    if result.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    failed = [s for s in result.run.steps if s.error]
    if failed:
        raise PgWireError(f"step {failed[0].index + 1} failed: {failed[0].error}")


def _save_pcap(ctx: Ctx, path: str, decoded: Any, frames: list[Any], redact: bool) -> None:
    """Write the frames (redacted on request) and say what the file holds."""
    from .capture import write_pcap
    from .render._policy import current

    if redact:
        from .redact_pcap import redact_frames

        policy = current()
        frames = redact_frames(decoded, frames, type(policy)(
            show_secrets=False, column_patterns=policy.column_patterns))
    n = write_pcap(path, frames)
    if redact:
        ctx.err.print(f"wrote {n} frames to {path}; passwords, SASL data and redacted columns "
                      "are overwritten with 'x'", highlight=False)
    else:
        ctx.err.print(f"wrote {n} frames to {path}: it holds whatever was on the wire, "
                      "passwords included (--redact masks them)", highlight=False)


def _show_interrupted(ctx: Ctx, decoded: Any, fmt: str, rows: int) -> None:
    """After Ctrl-C: the captured connection(s) as `read` shows them."""
    from .render.capture_view import render_capture
    from .render.jsonl import JsonLinesWriter

    if fmt == "jsonl":
        writer = JsonLinesWriter(sys.stdout)
        for conn in decoded.connections:
            for wm in conn.messages:
                writer.message(wm, conn)
    else:
        render_capture(ctx.out, decoded, rows=rows)
    ctx.err.print("[yellow]interrupted[/]: the ORM run did not finish; the view above shows "
                  "what was on the wire until then")


@cli.command()
@live_options
@click.pass_obj
@guarded
def demo(ctx: Ctx, dsn: str, driver: str, fmt: str, show_all: bool, rows: int,
         write_pcap: str | None, redact: bool, iface: str | None, capture_method: str,
         connect_timeout: float, show_secrets: bool, redact_columns: tuple[str, ...]) -> None:
    """Run the built-in ORM demo against a real server, captured live.

    Creates (if missing) a `users` table with two rows, then runs
    session.query(User).filter(...).first(), session.get(User, 1) and
    select(User) on a fresh connection, and shows each DataRow on the wire
    beside the ORM instance SQLAlchemy built from it.

    Without --dsn: DATABASE_URL or the libpq environment (PGHOST, PGPORT, ...),
    else a server at 127.0.0.1:5432, else a throwaway cluster started from
    the PostgreSQL binaries on this machine (removed afterwards), else a
    replay of a recorded session shipped with the tool (said plainly).

    \b
    Example:
      pgwire-inspect demo --dsn postgresql://postgres@127.0.0.1:5432/postgres
    """
    from .cli_more import dsn_given_by_user, run_demo

    run_demo(ctx, dsn_given_by_user("dsn", dsn), driver=driver, fmt=fmt, show_all=show_all,
             rows=rows, write_pcap=write_pcap, redact=redact, iface=iface,
             capture_method=capture_method, connect_timeout=connect_timeout,
             show_secrets=show_secrets, redact_columns=redact_columns)


@cli.command()
@click.argument("function")
@live_options
@click.pass_obj
@guarded
def query(ctx: Ctx, function: str, dsn: str, driver: str, fmt: str, show_all: bool, rows: int,
          write_pcap: str | None, redact: bool, iface: str | None, capture_method: str,
          connect_timeout: float, show_secrets: bool, redact_columns: tuple[str, ...]) -> None:
    """Run your own ORM function (module:function) captured live.

    FUNCTION takes a SQLAlchemy Session and returns ORM instances (one, a
    list, or a Result). The current directory is importable, as with
    uvicorn's module:app.

    \b
    Example:
      pgwire-inspect query --dsn postgresql://postgres@127.0.0.1/postgres myapp.queries:load_users
    """
    from .orm import callable_program, load_callable

    def program() -> Any:
        return callable_program(load_callable(function), function)

    _run_and_show(ctx, program, dsn=dsn, driver=driver, fmt=fmt, show_all=show_all, rows=rows,
                  write_pcap=write_pcap, iface=iface, connect_timeout=connect_timeout,
                  seed_demo=False, show_secrets=show_secrets, redact_columns=redact_columns,
                  capture_method=capture_method, redact=redact)


register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pgwire-inspect")
