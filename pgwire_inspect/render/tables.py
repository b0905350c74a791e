"""Rich tables for connections, queries, RowDescription and DataRow messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..conversation import Connection, QueryExchange, ResultSet, WireMessage
from ..protocol import (
    TRANSACTION_STATUS,
    BackendKeyData,
    DataRow,
    ErrorResponse,
    GSSENCResponse,
    MalformedMessage,
    NoticeResponse,
    ParameterStatus,
    ReadyForQuery,
    SSLResponse,
    StartupMessage,
)
from ..redact import MASK
from ..types import type_name, value_to_text
from ._policy import current

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = [
    "HEX_BYTES",
    "connection_header",
    "data_row_table",
    "error_text",
    "hex_cell",
    "message_line",
    "query_footer",
    "query_header",
    "row_description_table",
    "startup_summary",
]

#: How many bytes of a value the raw column shows before eliding.
HEX_BYTES = 16

FORMAT_NAMES = {0: "text", 1: "binary"}


def hex_cell(raw: bytes | None, limit: int = HEX_BYTES) -> Text:
    """A value's bytes as hex, elided after ``limit`` bytes; NULL for None."""
    if raw is None:
        return Text("NULL", style="dim italic")
    shown = raw[:limit].hex(" ")
    text = Text(shown, style="cyan")
    if len(raw) > limit:
        text.append(f" … (+{len(raw) - limit})", style="dim")
    return text


def value_cell(value: Any) -> Text:
    """A decoded value as text; NULL, and decoding errors, stand out."""
    if value is None:
        return Text("NULL", style="dim italic")
    if isinstance(value, Exception):
        return Text(f"[cannot decode: {value}]", style="red")
    return Text(value_to_text(value))


def connection_header(conn: Connection) -> Text:
    """One line naming a connection, its endpoints and what it holds."""
    text = Text()
    text.append(f"Connection {conn.id}", style="bold")
    text.append(f"  {conn.client_text} → {conn.server_text}")
    text.append(f"  first frame {conn.first_frame}")
    queries = conn.query_count
    text.append(f"  {queries} quer{'y' if queries == 1 else 'ies'}")
    verdict = conn.verdict
    style = "green" if verdict == "PostgreSQL" else "yellow"
    text.append(f"  {verdict}", style=style)
    st = conn.state
    if st.encrypted_by:
        text.append(
            f" (encrypted bytes: {st.encrypted_bytes['F']} frontend, "
            f"{st.encrypted_bytes['B']} backend; nothing after the switch can be decoded)",
            style="yellow")
    if conn.gaps:
        lost = sum(g[2] for g in conn.gaps)
        text.append(f"  {len(conn.gaps)} gap(s), {lost} bytes missing", style="red")
    return text


def startup_summary(conn: Connection) -> RenderableType:
    """The startup phase folded into a few lines."""
    lines: list[Text] = []
    params: list[str] = []
    for wm in conn.startup:
        msg = wm.message
        if isinstance(msg, ParameterStatus):
            params.append(f"{msg.parameter}={msg.value}")
            continue
        if isinstance(msg, StartupMessage):
            detail = " ".join(f"{k}={v}" for k, v in msg.parameters.items())
            lines.append(message_line(wm, f"protocol {msg.protocol_version} {detail}"))
        elif isinstance(msg, BackendKeyData):
            lines.append(message_line(wm, f"process {msg.process_id}"))
        elif isinstance(msg, ReadyForQuery):
            lines.append(message_line(wm, TRANSACTION_STATUS.get(msg.status, msg.status)))
        elif isinstance(msg, SSLResponse | GSSENCResponse):
            meaning = ("encryption follows: nothing after this can be decoded"
                       if msg.answer in "SG" else "no encryption, the session goes on in plaintext")
            lines.append(message_line(wm, f"{msg.answer!r}: {meaning}"))
        elif isinstance(msg, ErrorResponse | NoticeResponse):
            lines.append(message_line(wm, "", error_text(msg.notice_fields)))
        else:
            lines.append(message_line(wm, current().summary(msg)))
    if params:
        lines.append(Text(f"  ← ParameterStatus ×{len(params)}: " + ", ".join(params),
                          style="dim"))
    return Group(*lines) if lines else Text("  (no startup messages captured)", style="dim")


def message_line(wm: WireMessage, detail: str = "", extra: RenderableType | None = None) -> Text:
    """One line for one message: direction arrow, name, frame, and a detail."""
    msg = wm.message
    text = Text("  ")
    arrow = "→" if msg.direction == "F" else "←"
    style = "red" if isinstance(msg, MalformedMessage | ErrorResponse) else (
        "magenta" if msg.direction == "F" else "blue")
    text.append(f"{arrow} {msg.name}", style=style)
    text.append(f"  frame {wm.frame}, byte {msg.offset}", style="dim")
    if isinstance(msg, MalformedMessage):
        text.append(f"  {msg.reason} (at byte {msg.error_offset})", style="red")
    elif detail:
        text.append(f"  {detail}")
    if isinstance(extra, Text):
        text.append("  ")
        text.append(extra)
    if not isinstance(msg, MalformedMessage):
        text.no_wrap = True
        text.overflow = "ellipsis"
    return text


def error_text(fields: dict[str, str], sql: str | None = None) -> Text:
    """An ErrorResponse/NoticeResponse: severity, SQLSTATE, message, detail, hint, position.

    With the query's ``sql``, the position (1-based, in characters) is shown as a caret
    under the line of the query it points into.
    """
    text = Text()
    text.append(f"{fields.get('severity', '?')} {fields.get('code', '')}: ", style="bold red")
    text.append(fields.get("message", ""))
    for key in ("detail", "hint", "position", "where"):
        if key in fields:
            text.append(f"\n      {key}: {fields[key]}", style="red")
    pos = fields.get("position", "")
    if sql and pos.isdigit() and 0 < int(pos) <= len(sql) + 1:
        before = sql[: int(pos) - 1]
        line_start = before.rfind("\n") + 1
        line_end = sql.find("\n", line_start)
        line = sql[line_start : None if line_end < 0 else line_end]
        text.append(f"\n        {line}\n        {' ' * (len(before) - line_start)}^", style="red")
    return text


def query_header(q: QueryExchange, *, title: str | None = None,
                 conn: Connection | None = None) -> Text:
    """The query's kind, number, timing, SQL as it went on the wire, and Bind parameters.

    With ``conn``, parameters are decoded by their type OID and format.
    """
    text = Text()
    text.append(title or f"Query {q.index + 1}", style="bold")
    first = q.requests[0] if q.requests else None
    names = ", ".join(dict.fromkeys(w.name for w in q.requests))
    text.append(f"  ({q.kind}: {names})", style="dim")
    if first is not None:
        text.append(f"  frame {first.frame}", style="dim")
    if q.duration is not None:
        text.append(f"  {q.duration * 1000:.2f} ms", style="dim")
    text.append("\n")
    sql = q.sql if q.sql is not None else "(no SQL)"
    text.append("\n".join("    " + line for line in sql.splitlines() or [""]),
                style="bold yellow")
    for i, (oid, fmt, raw) in enumerate(q.parameters, 1):
        text.append(f"\n  ${i} = ", style="dim")
        text.append(_param_text(conn, oid, fmt, raw))
    return text


def _param_text(conn: Connection | None, oid: int, fmt: int, raw: bytes | None) -> str:
    """A Bind parameter: its value, type, format and size."""
    if raw is None:
        return "NULL"
    kind = f"{type_name(oid) if oid else 'unspecified type'}, {FORMAT_NAMES.get(fmt, fmt)}, " \
           f"{len(raw)} bytes"
    value: Any
    try:
        if conn is None or (oid == 0 and fmt == 1):
            raise ValueError
        value = conn.decoder.decode(oid or 25, fmt, raw)
        shown = repr(value) if isinstance(value, str) else value_to_text(value)
    except Exception:
        shown = f"\\x{raw.hex()}"
    return f"{shown}  ({kind})"


def query_footer(q: QueryExchange) -> Text:
    """The command tags, the error if any, and the ReadyForQuery status in words."""
    text = Text("  ")
    tags = [r.tag for r in q.results if r.tag]
    if tags:
        text.append("CommandComplete ", style="blue")
        text.append(", ".join(repr(t) for t in tags))
        text.append(" · ")
    if q.error is not None and isinstance(q.error.message, ErrorResponse):
        text.append("ErrorResponse ", style="red")
        text.append(error_text(q.error.message.notice_fields, q.sql))
        text.append("\n  ")
    if q.status is not None:
        text.append("ReadyForQuery ", style="blue")
        text.append(f"{q.status!r} ({TRANSACTION_STATUS.get(q.status, 'unknown')})")
    else:
        text.append("no ReadyForQuery captured", style="yellow")
    return text


def row_description_table(conn: Connection, result: ResultSet,
                          catalog: Catalog | None = None) -> Table:
    """The RowDescription of a result as a table, one line per column."""
    where = f"frame {result.description.frame}" if result.description else "from Describe"
    table = Table(title=f"RowDescription ({where})", title_justify="left", box=box.SIMPLE_HEAD,
                  title_style="bold blue", pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("column name", style="bold", overflow="fold")
    table.add_column("table\nOID", justify="right", no_wrap=True)
    table.add_column("col", justify="right", no_wrap=True)
    table.add_column("type\nOID", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("typlen", justify="right", no_wrap=True)
    table.add_column("typmod", justify="right", no_wrap=True)
    table.add_column("format", no_wrap=True)
    named: dict[int, str] = {}
    for i, c in enumerate(result.columns):
        table_cell = Text(str(c.table_oid))
        if catalog is not None and c.table_oid:
            name = catalog.table_name(c.table_oid)
            if name:
                named[c.table_oid] = name
        fmt = result.formats[i] if i < len(result.formats) else c.format
        table.add_row(str(i + 1), c.name, table_cell, str(c.column), str(c.type_oid),
                      Text(type_name(c.type_oid, c.typmod, user_types=catalog.types
                                     if catalog else None), style="green"),
                      str(c.typlen), str(c.typmod), FORMAT_NAMES.get(fmt, str(fmt)))
    if named:
        table.caption = "; ".join(f"table OID {oid} is {name}" for oid, name in named.items())
        table.caption += "; col is the column's number in that table (attnum)"
        table.caption_justify = "left"
        table.caption_style = "dim"
    return table


def data_row_table(conn: Connection, result: ResultSet, row: WireMessage, number: int,
                   values: Sequence[Any] | None = None) -> Table:
    """One DataRow as a table: column, length, raw bytes as hex, decoded value."""
    msg = row.message
    assert isinstance(msg, DataRow)
    decoded = list(values) if values is not None else conn.decode_row(result, row)
    table = Table(title=f"DataRow {number} (frame {row.frame}, byte {msg.offset}, "
                        f"{msg.length} bytes)",
                  title_justify="left", box=box.SIMPLE_HEAD, title_style="bold blue",
                  pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("column", style="bold", overflow="fold")
    table.add_column("length", justify="right")
    table.add_column("raw bytes (hex)", overflow="fold")
    table.add_column("value", overflow="fold")
    policy = current()
    for i, raw in enumerate(msg.values):
        name = result.columns[i].name if i < len(result.columns) else f"#{i + 1}"
        length = Text("-1 (NULL)" if raw is None else str(len(raw)))
        if raw is not None and policy.hides_column(name):
            table.add_row(name, length, Text(MASK, style="dim"),
                          Text(f"{MASK} (--redact-columns)", style="dim"))
            continue
        table.add_row(name, length, hex_cell(raw), value_cell(decoded[i]))
    return table
