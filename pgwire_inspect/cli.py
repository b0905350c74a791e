"""The pgwire-inspect command line: parses options, calls the layers, reports errors.

Shared pieces (consoles, error handling, option bundles) are in `cli_common`;
`replay` and the demo's server fallback in `cli_more`; frame views in
`cli_frames`.

Library code raises `PgWireError` subclasses; only this module prints them,
as one red line on stderr with a non-zero exit code (``--debug`` adds the
traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from . import __version__
from .cli_common import (
    DEFAULT_DSN,
    EXIT_INTERRUPTED,
    Ctx,
    F,
    apply_redaction,
    catalog_for,
    frame_choice,
    frame_options,
    guarded,
    open_source,
    redaction_options,
    save_pcap,
    wrote_exports,
)
from .cli_more import register
from .cli_watch import register as register_watch
from .errors import CaptureError, PgWireError

__all__ = ["cli", "main"]



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
    pgwire-inspect read capture.pcap        decode a saved capture (pcap, pcapng, hex dump)
    pgwire-inspect explain capture.pcap --frame 5   one frame, byte by byte
    pgwire-inspect replay capture.pcap --demo       ORM instances from a recording, no database
    pgwire-inspect watch                    every query to port 5432 on this machine, live
    """
    ctx.obj = Ctx(debug, no_color)


# ------------------------------------------------------------------ shared


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
@click.option("--queries", "max_queries", type=click.IntRange(min=0), default=20,
              show_default=True,
              help="Queries shown per connection in the table view (0: all); the others are "
                   "counted. --stats summarizes them all.")
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
@frame_options
@redaction_options
@click.pass_obj
@guarded
def read(ctx: Ctx, capture: str, ports: tuple[int, ...], fmt: str, rows: int,
         max_queries: int, dsn: str | None, write_pcap: str | None, redact: bool,
         linktype: int | None,
         stats: bool, show_secrets: bool, redact_columns: tuple[str, ...], hexdump: bool,
         explain: bool, frame_numbers: tuple[int, ...], conn_number: int | None,
         query_number: int | None, message_types: str | None, max_frames: int,
         export_svg: str | None, export_html: str | None) -> None:
    """Decode a saved capture: pcap or pcapng (as tcpdump and Wireshark write them), or a
    hex dump (Wireshark "Copy as Hex Dump", tcpdump -xx/-X, od -Ax -tx1, hexdump -C, xxd).
    CAPTURE may be - for standard input.

    \b
    Example:
      pgwire-inspect read session.pcapng --port 5433
      pgwire-inspect read session.pcap --format jsonl | jq .type
      pgwire-inspect read big.pcap --stats
      pbpaste | pgwire-inspect read -
      pgwire-inspect read demo.pcap --hexdump --type RowDescription,DataRow
      pgwire-inspect read demo.pcap --explain --frame 57 --export-svg frame57.svg
    """
    from .decode import decode_frames
    from .render.capture_view import render_capture
    from .render.progress import with_progress

    apply_redaction(show_secrets, redact_columns)
    cap = open_source(capture, linktype)
    frames = with_progress(cap, ctx.err, stdout_is_terminal=ctx.out.is_terminal, path=capture)
    port_set = ports or None
    framed = hexdump or explain or frame_numbers or export_svg or export_html
    if framed and not stats and fmt == "table":
        from .cli_frames import select_frames, show_frames
        from .render._policy import current

        decoded = decode_frames(frames, ports=port_set, keep_frames=True)
        catalog = catalog_for(dsn, decoded) if dsn else None
        choice = frame_choice(frame_numbers, conn_number, query_number, message_types,
                               max_frames)
        chosen, left_out = select_frames(decoded, choice)
        show_frames(ctx.out, decoded, chosen, left_out, redaction=current(), catalog=catalog,
                    explain=explain, export_svg=export_svg, export_html=export_html)
        wrote_exports(ctx, export_svg, export_html)
        return
    if write_pcap:
        decoded = decode_frames(frames, ports=port_set, keep_frames=True)
        save_pcap(ctx, write_pcap, decoded, decoded.kept_frames, redact)
        return
    if stats:
        from .render.stats_view import render_stats
        from .stats import StatsCollector

        collector = StatsCollector()
        decoded = decode_frames(frames, ports=port_set, keep_messages=False, keep_rows=False,
                                keep_queries=False, on_rows=collector.on_rows,
                                on_query=collector.on_query)
        collector.finish(decoded.connections)
        if fmt == "jsonl":
            import json

            sys.stdout.write(json.dumps(collector.as_json(), default=str) + "\n")
        else:
            render_stats(ctx.out, collector, frames=decoded.frames)
    elif fmt == "jsonl":
        from .render.jsonl import JsonLinesWriter

        writer = JsonLinesWriter(sys.stdout, batch=256)
        try:
            decoded = decode_frames(frames, ports=port_set, keep_messages=False,
                                    keep_rows=False, keep_queries=False, emit=writer.message,
                                    emit_rows=writer.rows)
        finally:
            writer.flush()
    else:
        decoded = decode_frames(frames, ports=port_set, keep_messages=False,
                                row_limit=max(rows, 1), query_limit=max_queries or None)
        catalog = catalog_for(dsn, decoded) if dsn else None
        render_capture(ctx.out, decoded, rows=rows, catalog=catalog)
    for problem in list(getattr(cap, "problems", [])) + decoded.problems:
        ctx.err.print(f"[yellow]warning:[/] {problem}", highlight=False)
    skipped = sum(decoded.skipped.values())
    if decoded.frames and skipped == decoded.frames:
        reasons = "; ".join(decoded.skipped)
        raise CaptureError(f"{capture}: none of its {decoded.frames} frames can be decoded "
                           f"({reasons})")
    for reason, count in decoded.skipped.items():
        ctx.err.print(f"[yellow]warning:[/] {count} frame(s) skipped: {reason}")
    if decoded.ignored:
        ctx.err.print(f"{decoded.ignored} other TCP connection(s) do not look like PostgreSQL "
                      "and are not shown (--port N decodes a port regardless)", style="dim")
    if not decoded.connections:
        where = f"on port {', '.join(map(str, ports))}" if ports else "that looks like PostgreSQL"
        ctx.err.print(f"[yellow]no TCP connection {where} in {decoded.frames} frames[/]")


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--frame", "frame_numbers", type=int, multiple=True, metavar="N",
              help="The frame to walk through (repeatable).")
@click.option("--type", "message_types", metavar="NAMES",
              help="Without --frame: the first frame holding one of these messages.")
@click.option("--conn", "conn_number", type=int, help="Only frames of this connection.")
@click.option("--query", "query_number", type=int, metavar="N",
              help="Only frames of query N (as numbered in the read view).")
@click.option("--port", "ports", type=int, multiple=True, help="Decode only this port.")
@click.option("--dsn", help="Name table and type OIDs from this server's catalog.")
@click.option("--linktype", type=int, default=None, help="Link type of a hex dump's frames.")
@click.option("--export-svg", type=click.Path(dir_okay=False), help="Also write an SVG.")
@click.option("--export-html", type=click.Path(dir_okay=False), help="Also write an HTML page.")
@redaction_options
@click.pass_obj
@guarded
def explain(ctx: Ctx, capture: str, frame_numbers: tuple[int, ...], message_types: str | None,
            conn_number: int | None, query_number: int | None, ports: tuple[int, ...],
            dsn: str | None, linktype: int | None, export_svg: str | None,
            export_html: str | None, show_secrets: bool, redact_columns: tuple[str, ...]) -> None:
    """Walk through one frame byte by byte: its colored hex dump, then plain sentences.

    From the first byte to the last: what each header says (addresses, ports,
    sequence numbers, flags), then each PostgreSQL message and each field with
    its value and meaning (type OID 1043 is varchar, typmod 44 means
    varchar(40), column length -1 means NULL ...).

    \b
    Example:
      pgwire-inspect explain captures/orm-demo-psycopg2.pcap --frame 57
      pgwire-inspect explain handout.txt --type DataRow --export-svg slide.svg
    """
    from .cli_frames import select_frames, show_frames
    from .decode import decode_frames
    from .render._policy import current

    apply_redaction(show_secrets, redact_columns)
    decoded = decode_frames(open_source(capture, linktype), ports=ports or None,
                            keep_frames=True)
    catalog = catalog_for(dsn, decoded) if dsn else None
    choice = frame_choice(frame_numbers, conn_number, query_number, message_types,
                           len(frame_numbers) or 1)
    chosen, _ = select_frames(decoded, choice)
    if not chosen:
        raise CaptureError("no frame matches (choose one with --frame N)")
    show_frames(ctx.out, decoded, chosen, 0, redaction=current(), catalog=catalog, explain=True,
                export_svg=export_svg, export_html=export_html)
    wrote_exports(ctx, export_svg, export_html)


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
    return redaction_options(frame_options(fn))


def _run_and_show(ctx: Ctx, program_of: Callable[[], Any], *, dsn: str, driver: str, fmt: str,
                  show_all: bool, rows: int, write_pcap: str | None, iface: str | None,
                  connect_timeout: float, seed_demo: bool, show_secrets: bool,
                  redact_columns: tuple[str, ...], capture_method: str = "auto",
                  redact: bool = False, views: Any = None) -> None:
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
        save_pcap(ctx, write_pcap, result.decoded, result.frames, redact)
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
                catalog = catalog_for(str(url.url.set(drivername="postgresql")
                                           .render_as_string(hide_password=False)),
                                       result.decoded)
            except PgWireError as exc:
                ctx.err.print(f"[yellow]note:[/] no catalog names: {exc}", highlight=False)
        render_orm_run(ctx.out, linked, rows=rows, show_all=show_all, catalog=catalog)
        if views is not None and views.wanted:
            _show_orm_frames(ctx, views, result.decoded, linked, catalog,
                             lambda out: render_orm_run(out, linked, rows=rows,
                                                        show_all=show_all, catalog=catalog))
    if result.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    failed = [s for s in result.run.steps if s.error]
    if failed:
        raise PgWireError(f"step {failed[0].index + 1} failed: {failed[0].error}")


class FrameViews:
    """The frame options of `demo` and `query` (--hexdump, --explain, choice, export)."""

    def __init__(self, hexdump: bool, explain: bool, choice: Any, export_svg: str | None,
                 export_html: str | None) -> None:
        self.hexdump = hexdump
        self.explain = explain
        self.choice = choice
        self.export_svg = export_svg
        self.export_html = export_html

    @property
    def wanted(self) -> bool:
        """Whether any frame view was asked for."""
        return bool(self.hexdump or self.explain or self.choice.frames or self.export_svg
                    or self.export_html)


def _show_orm_frames(ctx: Ctx, views: FrameViews, decoded: Any, linked: Any, catalog: Any,
                     tables: Callable[[Console], None]) -> None:
    """Frames of the ORM's own queries (not the set-up), and with --explain the walk from
    the first DataRow's bytes to its instance's attributes."""
    from .cli_frames import select_frames, show_frames
    from .render._policy import current
    from .render.explain import explain_orm_row

    orm_frames = {f for step in linked.steps for lq in step.queries if lq.role == "orm"
                  for w in lq.query.messages for f in range(w.frame, w.last_frame + 1)}
    rows = [r for step in linked.steps for lq in step.queries for r in lq.rows
            if r.instance is not None and r.built]
    choice = views.choice
    if views.explain and not choice.frames and rows:
        from dataclasses import replace

        choice = replace(choice, frames=(rows[0].row.frame,))
    chosen, left_out = select_frames(decoded, choice, only=orm_frames)

    def walk(out: Console) -> None:
        if views.explain and rows and linked.conn is not None:
            explain_orm_row(out, rows[0], linked.conn, decoded=decoded)

    ctx.out.rule("Frames on the wire", style="dim")
    show_frames(ctx.out, decoded, chosen, left_out, redaction=current(), catalog=catalog,
                explain=views.explain, extra=walk, before=tables,
                export_svg=views.export_svg, export_html=views.export_html)
    wrote_exports(ctx, views.export_svg, views.export_html)


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
         connect_timeout: float, show_secrets: bool, redact_columns: tuple[str, ...],
         hexdump: bool, explain: bool, frame_numbers: tuple[int, ...], conn_number: int | None,
         query_number: int | None, message_types: str | None, max_frames: int,
         export_svg: str | None, export_html: str | None) -> None:
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
             show_secrets=show_secrets, redact_columns=redact_columns,
             views=FrameViews(hexdump, explain, frame_choice(
                 frame_numbers, conn_number, query_number, message_types, max_frames),
                 export_svg, export_html))


@cli.command()
@click.argument("function")
@live_options
@click.pass_obj
@guarded
def query(ctx: Ctx, function: str, dsn: str, driver: str, fmt: str, show_all: bool, rows: int,
          write_pcap: str | None, redact: bool, iface: str | None, capture_method: str,
          connect_timeout: float, show_secrets: bool, redact_columns: tuple[str, ...],
          hexdump: bool, explain: bool, frame_numbers: tuple[int, ...], conn_number: int | None,
          query_number: int | None, message_types: str | None, max_frames: int,
          export_svg: str | None, export_html: str | None) -> None:
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
                  capture_method=capture_method, redact=redact,
                  views=FrameViews(hexdump, explain, frame_choice(
                      frame_numbers, conn_number, query_number, message_types, max_frames),
                      export_svg, export_html))


register(cli)
register_watch(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pgwire-inspect")
