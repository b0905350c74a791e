"""What the CLI's commands share: consoles, error handling, options, input and output.

Library code raises `PgWireError` subclasses; `guarded` turns them into one
red line on stderr and an exit code (``--debug`` adds the traceback).
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

from .errors import CaptureError, PgWireError

__all__ = [
    "DEFAULT_DSN",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "Ctx",
    "F",
    "apply_redaction",
    "catalog_for",
    "frame_choice",
    "frame_options",
    "guarded",
    "make_consoles",
    "open_source",
    "redaction_options",
    "save_pcap",
    "wrote_exports",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes: 1 for a failure of the work asked for, 2 for bad input, 130 interrupted.
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


def wrote_exports(ctx: Ctx, svg: str | None, html: str | None) -> None:
    """Say which export files were written."""
    for path in (svg, html):
        if path:
            ctx.err.print(f"wrote {path}", highlight=False)


def frame_choice(frame_numbers: tuple[int, ...], conn_number: int | None,
                  query_number: int | None, message_types: str | None,
                  max_frames: int) -> Any:
    """The `FrameChoice` of the frame options (--type takes comma-separated names)."""
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


def open_source(path: str, linktype: int | None) -> Any:
    """A capture file, or the frames of a hex dump, from a path or "-" (stdin).

    Raises:
        CaptureError: the file cannot be read or is neither a capture nor a hex dump.
    """
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


def catalog_for(dsn: str, decoded: Any) -> Any:
    """Names for the table and user type OIDs of a decoded capture, from ``dsn``'s catalog."""
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


def save_pcap(ctx: Ctx, path: str, decoded: Any, frames: list[Any], redact: bool) -> None:
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


