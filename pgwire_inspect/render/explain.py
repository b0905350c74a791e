"""The byte-by-byte explanation: a frame, or a DataRow becoming an ORM instance, in sentences.

`explain_frame` walks a frame's annotations from the first byte to the
last: what each link, IP and TCP header field says, then each PostgreSQL
message and each of its fields with its value and meaning. `explain_orm_row`
follows one DataRow column by column: where each value's bytes are, how
long, what text or binary value they hold, what Python value that is and
which attribute of the ORM instance received it.

Spec: PostgreSQL docs, "Frontend/Backend Protocol", "Message Formats"
(DataRow (B), RowDescription (B)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..annotate import Annotation
from ..capture import LINKTYPE_NAMES, Frame
from ..conversation import Connection
from ..decode import Decoded
from ..linking import LinkedRow
from ..protocol import DataRow
from ..types import type_name, value_to_text

__all__ = ["explain_frame", "explain_orm_row", "range_text"]

_SECTION = {"link": "The link-layer header", "ip": "The IP header", "tcp": "The TCP header",
            "payload": "Bytes that are not decoded", "trailer": "After the IP packet"}
_PREVIEW = 16


def range_text(start: int, end: int) -> str:
    """A byte range as "bytes 66-70 (0x0042-0x0046)", or "byte 66 (0x0042)" for one byte.

    Args:
        start: first byte offset.
        end: offset just past the last byte (exclusive).
    """
    if end - start <= 1:
        return f"byte {start} (0x{start:04x})"
    return f"bytes {start}-{end - 1} (0x{start:04x}-0x{end - 1:04x})"


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!", "…")) else text + "."


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column(overflow="fold")
    return grid


def _field_line(a: Annotation) -> Text:
    line = Text()
    line.append(a.field, style="bold")
    line.append(" = ")
    line.append(a.value, style="cyan")
    line.append(". ")
    line.append(_sentence(a.meaning))
    return line


def explain_frame(console: Console, frame: Frame, annotations: Sequence[Annotation]) -> None:
    """Print a step-by-step walk through a frame's bytes, in plain sentences.

    Args:
        console: where to print.
        frame: the frame.
        annotations: `annotate_frame`'s annotations of ``frame``, in byte order.
    """
    data = frame.data
    link = LINKTYPE_NAMES.get(frame.linktype, f"link type {frame.linktype}")
    head = Text(f"Frame {frame.no}", style="bold")
    cut = f", {frame.wirelen} on the wire" if frame.wirelen != len(data) else ""
    head.append(f": {len(data)} bytes captured{cut}; link layer {link}.")
    console.print(head)
    repeat = next((a.meaning.split(";")[0] for a in annotations
                   if a.meaning.startswith("retransmission/duplicate of frame")), None)
    if repeat:
        console.print(Text(f"This frame is a {repeat}: its TCP payload carries stream bytes an "
                           "earlier frame already delivered (a retransmission, or the second "
                           "copy of each packet a Linux loopback capture sees).", style="yellow"))
    i = 0
    while i < len(annotations):
        a = annotations[i]
        j = i
        while j + 1 < len(annotations) and _same_section(annotations[j + 1], a):
            j += 1
        section = annotations[i : j + 1]
        console.print()
        console.print(_section_title(section, data))
        grid = _grid()
        for b in section:
            grid.add_row(range_text(b.start, b.end), _field_line(b))
        console.print(grid)
        i = j + 1


def _same_section(b: Annotation, a: Annotation) -> bool:
    if a.layer == "pgsql" or b.layer == "pgsql" or a.message or b.message:
        return (b.layer, b.message_index) == (a.layer, a.message_index)
    return b.layer == a.layer and a.layer != "payload"


def _section_title(section: Sequence[Annotation], data: bytes) -> Text:
    first, last = section[0], section[-1]
    span = range_text(first.start, last.end)
    size = last.end - first.start
    title = Text()
    if first.message:
        way = {"F": "from the frontend (client) to the backend (server)",
               "B": "from the backend (server) to the frontend (client)"}.get(first.direction, "")
        title.append(f"Message {first.message_index + 1}: {first.message}", style="bold")
        title.append(f", {span}, {size} bytes in this frame, {way}".rstrip(", ") + ".")
        if first.continues_before:
            title.append(" It started in an earlier frame: its first bytes are not here.",
                         style="yellow")
        if last.continues_after:
            title.append(" It goes on in a later frame (continues in the next frame).",
                         style="yellow")
        return title
    title.append(_SECTION.get(first.layer, first.layer), style="bold")
    title.append(f", {span}, {size} bytes.")
    return title


# ------------------------------------------------------------------ DataRow → ORM instance


def _hex_preview(raw: bytes) -> str:
    shown = raw[:_PREVIEW].hex(" ")
    return shown + (f" … (+{len(raw) - _PREVIEW} bytes)" if len(raw) > _PREVIEW else "")


def explain_orm_row(console: Console, linked_row: LinkedRow, conn: Connection, *,
                    decoded: Decoded | None = None) -> None:
    """Print how a DataRow's bytes become each attribute of its ORM instance.

    For each column: where its length and value bytes are (stream offset of
    the connection's backend stream, and with ``decoded`` the frame and the
    byte offset in that frame), the length, the bytes as text or hex, the
    Python value they decode to, and the instance attribute that holds it
    (through ``linked_row.columns``, attribute key → result column).

    Args:
        console: where to print.
        linked_row: the DataRow with its instance (`pgwire_inspect.linking.link_run`).
        conn: the row's connection.
        decoded: the decoded capture (``keep_frames=True``) the row comes from,
            to give frame offsets; None gives stream offsets only.
    """
    wm = linked_row.row
    msg = wm.message
    assert isinstance(msg, DataRow)
    result = linked_row.result
    inst = linked_row.instance
    locs = sorted(((no, loc) for no, loc in (decoded.locations.items() if decoded else ())
                   if loc.conn_key == conn.key and loc.direction == msg.direction),
                  key=lambda item: item[0])

    def frame_offset(pos: int) -> tuple[int, int] | None:
        """(frame, byte offset in it) of the first frame that carried stream byte ``pos``."""
        for no, loc in locs:
            if loc.stream_offset <= pos < loc.stream_offset + loc.length:
                return no, loc.payload_offset + pos - loc.stream_offset
        return None

    def where(start: int, end: int) -> str:
        """Stream bytes [start, end) as frame bytes (with ``decoded``) or stream bytes."""
        first, last = frame_offset(start), frame_offset(end - 1)
        if first is None or last is None:
            return f"stream {range_text(start, end)}"
        if first[0] == last[0]:
            return f"frame {first[0]} {range_text(first[1], last[1] + 1)}"
        return (f"frame {first[0]} {range_text(first[1], first[1] + 1)} to frame {last[0]} "
                f"{range_text(last[1], last[1] + 1)}")

    title = Text(f"DataRow {linked_row.number}", style="bold")
    title.append(f" ({where(msg.offset, msg.end)}, {msg.length} bytes): type byte 'D', a 4-byte "
                 f"length ({msg.length - 1}), a 2-byte column count ({len(msg.values)}), then "
                 "each column's 4-byte length and its bytes.")
    console.print(title)
    if inst is None:
        console.print(Text("No ORM instance matched this row.", style="yellow"))
    else:
        how = ("SQLAlchemy built it from this row." if linked_row.built else
               "It was already in the session's identity map: this row did not change it.")
        console.print(Text(f"It becomes the ORM instance {inst.label}. {how}", style="green"))
    by_column: dict[str, list[str]] = {}
    for attr, column in linked_row.columns.items():
        by_column.setdefault(column, []).append(attr)
    spans = {sp.name: sp for sp in msg.spans()}
    grid = _grid()
    for i, raw in enumerate(msg.values):
        col = result.columns[i] if i < len(result.columns) else None
        fmt = result.formats[i] if i < len(result.formats) else 0
        name = col.name if col is not None else f"#{i + 1}"
        kind = type_name(col.type_oid, col.typmod) if col is not None else "unknown type"
        line = Text()
        line.append(f"{name}", style="bold")
        line.append(f" ({kind}, {'binary' if fmt else 'text'} format): length ")
        line.append("-1" if raw is None else str(len(raw)), style="cyan")
        length = spans.get(f"values[{i}].length")
        if length is not None:
            line.append(f" at {where(msg.offset + length.start, msg.offset + length.end)}")
        value = linked_row.values[i] if i < len(linked_row.values) else None
        if raw is None:
            line.append(": NULL, no value bytes follow → None")
        else:
            body = spans.get(f"values[{i}].value")
            if body is not None and raw:
                line.append(f"; value at {where(msg.offset + body.start, msg.offset + body.end)}")
            line.append(": text " if fmt == 0 else ": binary ")
            shown = (repr(raw.decode("utf-8", "backslashreplace")) if fmt == 0
                     else _hex_preview(raw))
            line.append(_clip(shown), style="cyan")
            line.append(" → ")
            line.append(_value_text(value), style="magenta")
        line.append(" ")
        line.append_text(_attributes(by_column.get(name, []), inst))
        grid.add_row(f"column {i + 1}", line)
    console.print(grid)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value_text(value: Any) -> str:
    if isinstance(value, Exception):
        return f"[cannot decode: {value}]"
    text = repr(value) if isinstance(value, str) else value_to_text(value)
    return f"{_clip(text)} ({type(value).__name__})"


def _attributes(attrs: Sequence[str], inst: Any) -> Text:
    text = Text()
    if inst is None:
        return text
    if not attrs:
        text.append(f"→ no attribute of {inst.class_name} is loaded from this column.",
                    style="dim")
        return text
    for k, attr in enumerate(attrs):
        if k:
            text.append(" ")
        value = inst.attributes.get(attr)
        kind = inst.attribute_types.get(attr, type(value).__name__)
        text.append("→ attribute ")
        text.append(attr, style="bold green")
        text.append(" = ")
        text.append(_clip(repr(value)), style="green")
        text.append(f" ({kind}).")
    return text
