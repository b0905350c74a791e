"""The `read` view: connections, then each connection's queries with their tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..conversation import Connection, QueryExchange, ResultSet
from ..copydata import copy_rows, is_csv_copy, replication_message
from ..decode import Decoded
from ..protocol import CopyData
from ._policy import current
from .tables import (
    connection_header,
    data_row_table,
    message_line,
    query_footer,
    query_header,
    row_description_table,
    startup_summary,
)

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = ["render_capture", "render_connection_list", "render_query", "render_result_rows"]


def render_connection_list(console: Console, decoded: Decoded) -> None:
    """A table of the connections found (one server: named in the title, not on each row)."""
    servers = {c.server_text for c in decoded.connections}
    one_server = len(servers) == 1
    to = f" to {next(iter(servers))}" if one_server else ""
    table = Table(title=f"{len(decoded.connections)} connection(s){to} in {decoded.frames} frames",
                  title_justify="left", box=box.SIMPLE_HEAD, title_style="bold")
    table.add_column("conn", justify="right", no_wrap=True)
    table.add_column("client" if one_server else "client → server", overflow="fold")
    table.add_column("first\nframe", justify="right", no_wrap=True)
    table.add_column("messages\nF / B", justify="right", no_wrap=True)
    table.add_column("queries", justify="right", no_wrap=True)
    table.add_column("what it holds", overflow="fold", min_width=12)
    for c in decoded.connections:
        verdict = c.verdict
        where = c.client_text if one_server else f"{c.client_text} → {c.server_text}"
        table.add_row(str(c.id), where, str(c.first_frame),
                      f"{c.counts['F']} / {c.counts['B']}", str(c.query_count),
                      Text(verdict, style="green" if verdict == "PostgreSQL" else "yellow"))
    console.print(table)


def render_result_rows(console: Console, conn: Connection, result: ResultSet, rows: int,
                       catalog: Catalog | None = None) -> None:
    """A result's RowDescription and its first ``rows`` DataRows (and the last one)."""
    if result.columns:
        console.print(row_description_table(conn, result, catalog))
    n = result.row_count
    for i, row in enumerate(result.rows[:rows]):
        console.print(data_row_table(conn, result, row, i + 1))
    last = result.last_row or (result.rows[-1] if len(result.rows) > rows else None)
    if n > rows and last is not None:
        console.print(Text(f"  … {n - rows - 1} more DataRow(s) not shown "
                           f"(--rows {n} shows them all)", style="dim"))
        console.print(data_row_table(conn, result, last, n))


def copy_table(conn: Connection, q: QueryExchange, rows: int) -> RenderableType:
    """The COPY data of a query as rows (text and CSV), or a byte count (binary)."""
    copy = q.copy
    assert copy is not None
    payloads = [w.message.data for w in copy.data if isinstance(w.message, CopyData)]
    size = sum(len(p) for p in payloads)
    arrow = {"in": "frontend → backend", "out": "backend → frontend"}.get(copy.kind, "both ways")
    title = (f"COPY {copy.kind.upper()} ({arrow}): {len(payloads)} CopyData, {size} bytes, "
             f"{'binary' if copy.format else ('CSV' if is_csv_copy(q.sql) else 'text')}")
    if copy.failed is not None:
        title += f"; CopyFail: {current().summary(copy.failed.message)}"
    if conn.state.startup_parameters.get("replication"):
        names = [replication_message(p) or "?" for p in payloads]
        counts = ", ".join(f"{n} ×{names.count(n)}" for n in dict.fromkeys(names))
        return Text(f"  {title}\n  replication messages: {counts}", style="blue")
    if copy.format:
        return Text(f"  {title} (binary COPY is not split into rows)", style="blue")
    parsed = copy_rows(payloads, csv_format=is_csv_copy(q.sql), limit=rows + 1)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, title_style="bold blue",
                  pad_edge=False, padding=(0, 1, 0, 0))
    width = max((len(r) for r in parsed), default=0)
    table.add_column("#", justify="right", style="dim")
    for i in range(width):
        table.add_column(f"col {i + 1}", overflow="fold")
    for n, row in enumerate(parsed[:rows], 1):
        table.add_row(str(n), *[Text("NULL", style="dim italic") if v is None else Text(v)
                                for v in row])
    if len(parsed) > rows:
        table.caption = "more rows not shown (--rows N shows more)"
        table.caption_justify = "left"
    return table


def render_query(console: Console, conn: Connection, q: QueryExchange, *, rows: int = 5,
                 catalog: Catalog | None = None, title: str | None = None) -> None:
    """One query: its header (SQL, parameters), its results, its tag and status."""
    console.print(query_header(q, title=title, conn=conn))
    if q.copy is not None:
        console.print(copy_table(conn, q, rows))
    for result in q.results:
        render_result_rows(console, conn, result, rows, catalog)
    for wm in q.responses:
        if wm.name in ("NoticeResponse", "NotificationResponse", "MalformedMessage"):
            console.print(message_line(wm, current().summary(wm.message)))
    console.print(query_footer(q))
    console.print()


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else ("queries" if noun == "query" else noun + "s")


def render_capture(console: Console, decoded: Decoded, *, rows: int = 5,
                   catalog: Catalog | None = None) -> None:
    """The whole `read` view of a decoded capture."""
    render_connection_list(console, decoded)
    for conn in decoded.connections:
        console.rule(style="dim")
        console.print(connection_header(conn))
        console.print(startup_summary(conn))
        console.print()
        for q in conn.queries:
            render_query(console, conn, q, rows=rows, catalog=catalog)
            if q.index + 1 < conn.query_count:
                for wm in conn.idle_after(q.index):
                    console.print(message_line(wm, current().summary(wm.message)))
        hidden = conn.query_count - len(conn.queries)
        if hidden > 0:
            console.print(Text(f"  … {hidden:,} more {_plural(hidden, 'query')} (--queries N "
                               f"to show more, --stats for a summary)", style="yellow"))
        for wm in conn.trailing:
            detail = ("the frontend closes the connection" if wm.name == "Terminate"
                      else current().summary(wm.message))
            console.print(message_line(wm, detail))
        for d, reason in sorted(conn.ended.items()):
            side = "frontend" if d == "F" else "backend"
            console.print(Text(f"  {side} stream ended: {reason}", style="dim"))
        console.print()
