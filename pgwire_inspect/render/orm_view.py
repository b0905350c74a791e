"""The side-by-side view: each ORM step, its queries on the wire, DataRows beside instances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..conversation import Connection
from ..linking import LinkedInstance, LinkedQuery, LinkedRow, LinkedRun
from ..orm import InstanceRecord
from ..protocol import TRANSACTION_STATUS
from ..redact import MASK
from ._policy import current
from .capture_view import render_result_rows
from .jsonl import JsonLinesWriter
from .tables import (
    connection_header,
    data_row_table,
    query_footer,
    query_header,
    row_description_table,
    startup_summary,
)

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = ["SIDE_BY_SIDE_WIDTH", "instance_table", "orm_instance_objects", "render_orm_run"]

#: Terminals at least this wide show DataRow and instance side by side; narrower, stacked.
SIDE_BY_SIDE_WIDTH = 150


def instance_table(inst: InstanceRecord, row: LinkedRow | None, built: bool) -> Table:
    """The ORM instance: class, identity, each mapped attribute with value, type and column."""
    how = ("built by SQLAlchemy from this DataRow" if built else
           "already in the session's identity map: this row did not change it")
    table = Table(title=f"ORM instance {inst.label}", caption=how, caption_justify="left",
                  title_justify="left", box=box.SIMPLE_HEAD, title_style="bold green",
                  caption_style="dim", pad_edge=False)
    table.add_column("attribute", style="bold")
    table.add_column("Python value", overflow="fold")
    table.add_column("type", style="dim")
    table.add_column("← wire column")
    names = [c.name for c in row.result.columns] if row is not None else []
    columns = row.columns if row is not None and row.columns else inst.columns
    policy = current()
    for key, value in inst.attributes.items():
        col = columns.get(key, "")
        if policy.hides_column(key) or (col and policy.hides_column(col)):
            table.add_row(key, Text(f"{MASK} (--redact-columns)", style="dim"),
                          inst.attribute_types.get(key, ""), Text(col))
            continue
        where = Text(col)
        if col in names:
            where.append(f" (#{names.index(col) + 1})", style="dim")
        table.add_row(key, repr(value), inst.attribute_types.get(key, type(value).__name__),
                      where)
    return table


def _side_by_side(console: Console, left: RenderableType, right: RenderableType) -> None:
    if console.width >= SIDE_BY_SIDE_WIDTH:
        grid = Table.grid(padding=(0, 3))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(left, right)
        console.print(grid)
    else:
        console.print(left)
        console.print(Text("  ↓ SQLAlchemy turns this row into", style="green"))
        console.print(right)


def _compact(lq: LinkedQuery) -> Text:
    q = lq.query
    text = Text("  ")
    text.append(f"{q.sql or '(no SQL)'}", style="dim bold")
    tags = [r.tag for r in q.results if r.tag]
    status = TRANSACTION_STATUS.get(q.status or "", "no ReadyForQuery")
    text.append(f"  → {', '.join(tags) or 'no rows'} · ReadyForQuery {status}", style="dim")
    if lq.role == "driver":
        text.append("  (sent by the driver, not by the ORM)", style="dim italic")
    return text


def _render_orm_query(console: Console, conn: Connection, lq: LinkedQuery, rows: int,
                      catalog: Catalog | None) -> None:
    conn_q = lq.query
    console.print(query_header(conn_q, title="SQL on the wire", conn=conn))
    linked = {id(r.row): r for r in lq.rows}
    for result in conn_q.results:
        if result.columns:
            console.print(row_description_table(conn, result, catalog))
        for i, row in enumerate(result.rows):
            if i >= rows:
                console.print(Text(f"  … {len(result.rows) - rows} more DataRow(s) "
                                   f"(--rows {len(result.rows)} shows them)", style="dim"))
                break
            lr = linked.get(id(row))
            left = data_row_table(conn, result, row, i + 1,
                                  lr.values if lr else None)
            if lr is not None and lr.instance is not None:
                _side_by_side(console, left, instance_table(lr.instance, lr, lr.built))
            else:
                console.print(left)
                console.print(Text("  (no ORM instance matched this row)", style="dim"))
    console.print(query_footer(conn_q))


def render_orm_run(console: Console, linked: LinkedRun, *, rows: int = 10,
                   show_all: bool = False, catalog: Catalog | None = None) -> None:
    """The whole side-by-side view of an ORM run.

    Args:
        console: where to print.
        linked: the run laid over its connection.
        rows: DataRows shown per result.
        show_all: show SQLAlchemy's set-up queries and the startup phase in full.
        catalog: names for table and type OIDs, if known.
    """
    conn = linked.conn
    if conn is None:
        console.print(Text("The ORM's connection was not captured: nothing to show on the wire.",
                           style="red"))
        return
    console.rule(style="dim")
    console.print(connection_header(conn))
    console.print(startup_summary(conn) if show_all else Text(
        f"  startup: {len(conn.startup)} messages (StartupMessage, Authentication, "
        "ParameterStatus, BackendKeyData, ReadyForQuery); --all shows them", style="dim"))
    if linked.setup:
        if show_all:
            console.print(Text("\nSQLAlchemy's own set-up queries on first connect:",
                               style="bold dim"))
            for lq in linked.setup:
                render_result_rows_query(console, conn, lq, rows, catalog)
        else:
            sqls = "; ".join(" ".join((lq.query.sql or "").split())[:50] for lq in linked.setup)
            console.print(Text(f"  SQLAlchemy set-up on first connect: {len(linked.setup)} "
                               f"queries ({sqls}) — --all shows them", style="dim"))
    console.print()
    for ls in linked.steps:
        step = ls.step
        console.rule(Text(f"Step {step.index + 1}: {step.code}", style="bold"), align="left")
        if not ls.queries:
            console.print(Text(f"  {step.note or 'sent nothing'}", style="bold yellow"))
            console.print(Text("  Nothing crossed the wire for this step: "
                               "no bytes, no round trip.", style="yellow"))
        for lq in ls.queries:
            if lq.role == "orm":
                _render_orm_query(console, conn, lq, rows, catalog)
            else:
                console.print(_compact(lq))
        if step.error:
            console.print(Text(f"  the step failed: {step.error}", style="red"))
        elif step.result_repr:
            console.print(Text("  returned: ", style="dim").append(step.result_repr[:300]))
        console.print()
    for lq in linked.teardown:
        console.print(_compact(lq))
    terminate = [wm for wm in conn.messages if wm.name == "Terminate"]
    if terminate:
        console.print(Text(f"  Terminate (frame {terminate[0].frame}): the connection closes",
                           style="dim"))
    for st in linked.unmatched:
        console.print(Text(f"  statement not found on the wire: {st.statement[:80]}",
                           style="yellow"))


def render_result_rows_query(console: Console, conn: Connection, lq: LinkedQuery, rows: int,
                             catalog: Catalog | None) -> None:
    """A set-up query in full: header, its results, footer (dimmed)."""
    console.print(query_header(lq.query, conn=conn), style="dim")
    for result in lq.query.results:
        render_result_rows(console, conn, result, rows, catalog)
    console.print(query_footer(lq.query), style="dim")


def orm_instance_objects(linked: LinkedRun) -> list[dict[str, Any]]:
    """The JSON objects of the instances: class, identity, attributes, columns, DataRow."""
    return [_instance_object(li) for li in linked.instances]


def _instance_object(li: LinkedInstance) -> dict[str, Any]:
    inst = li.instance
    policy = current()
    attributes = {k: MASK if policy.hides_column(k) or policy.hides_column(inst.columns.get(k, ""))
                  else v for k, v in inst.attributes.items()}
    obj: dict[str, Any] = {"type": "OrmInstance", "class": inst.class_name,
                           "identity": list(inst.identity), "attributes": attributes,
                           "columns": inst.columns, "conn": None, "frame": None, "offset": None}
    if li.row is not None:
        obj.update(conn=li.row.row.conn, frame=li.row.row.frame, offset=li.row.row.message.offset)
    return obj


def write_instances(writer: JsonLinesWriter, linked: LinkedRun) -> None:
    """Write one OrmInstance object per instance."""
    for obj in orm_instance_objects(linked):
        writer.write(obj)
