"""The annotated hex dump: Wireshark's layout, every byte coloured by the field it belongs to.

Each line is a 4-hex-digit offset, sixteen bytes in two groups of eight and
the ASCII column, as Wireshark's "Packet Bytes" pane prints them. Header
bytes are in muted per-layer colours (link, IP, TCP), each kind of
PostgreSQL field has its own background colour (type byte, length, names,
strings, OIDs, numbers, column lengths, values, status bytes), and two
adjacent fields of the same kind take alternate shades. A legend under the
dump (beside it on terminals at least `SIDE_BY_SIDE_WIDTH` columns wide)
names every field with the same colour, its byte range, layer or message,
field and value.

Without colour (``NO_COLOR``, ``--no-color`` or output that is not a
terminal) a marker line under each hex line keys every byte to a legend
row: the row's key at the start of each field, ``~`` over the rest of it,
``|`` at field boundaries, and (when keys are single characters) one key
character per byte under the ASCII column.

`export` writes what a recording console printed as SVG or HTML (rich's
``Console(record=True)``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from ..annotate import Annotation, annotate_message
from ..capture import Frame
from ..conversation import Connection, WireMessage
from ..errors import PgWireError

__all__ = [
    "SIDE_BY_SIDE_WIDTH",
    "LegendRow",
    "annotation_styles",
    "export",
    "hex_lines",
    "legend_lines",
    "legend_rows",
    "render_hexdump",
    "render_message_hexdump",
]

#: Consoles at least this wide show the legend beside the dump; narrower, under it.
SIDE_BY_SIDE_WIDTH = 150

_KEYS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_FILL = "~"
_BAR = "|"

# Header layers: muted foreground colours, two shades each.
_FG: dict[str, tuple[str, str]] = {
    "link": ("#9e9e9e", "#767676"),
    "ip": ("#87afd7", "#5f87af"),
    "tcp": ("#d7af87", "#af875f"),
    "payload": ("#a8a8a8", "#808080"),
    "trailer": ("#626262", "#4e4e4e"),
}
# PostgreSQL field kinds: background colours (black text), two shades each.
_BG: dict[str, tuple[str, str]] = {
    "type": ("#ff87ff", "#d75fd7"),
    "length": ("#ffd75f", "#d7af00"),
    "count": ("#d7d7af", "#afaf87"),
    "name": ("#87d787", "#5faf5f"),
    "string": ("#d7d7ff", "#afafd7"),
    "oid": ("#5fd7ff", "#00afd7"),
    "number": ("#87afff", "#5f87d7"),
    "column length": ("#ffaf5f", "#d7875f"),
    "value": ("#ffafaf", "#d78787"),
    "status": ("#d7afff", "#af87d7"),
    "terminator": ("#bcbcbc", "#9e9e9e"),
    "malformed": ("#ff5f5f", "#d70000"),
}
_LAYER_NAMES = {"link": "link", "ip": "IP", "tcp": "TCP", "payload": "payload",
                "trailer": "trailer"}


_STYLES: dict[tuple[str, int], Style] = {
    **{(group, shade): Style(color="#000000", bgcolor=pair[shade])
       for group, pair in _BG.items() for shade in (0, 1)},
    **{(group, shade): Style(color=pair[shade], italic=group == "payload")
       for group, pair in _FG.items() for shade in (0, 1)},
}


def _style_group(a: Annotation) -> str:
    return a.kind if a.kind in _BG else a.layer


def annotation_styles(annotations: Sequence[Annotation]) -> list[Style]:
    """The style of each annotation, as the dump and the legend both use it.

    Headers, undecoded payload and trailers get a foreground colour of their
    layer; PostgreSQL fields a background colour of their kind with black
    text. An annotation of the same layer or kind as the one before it takes
    the other shade, so adjacent fields stay distinguishable.

    Args:
        annotations: annotations in byte order.

    Returns:
        One `rich.style.Style` per annotation.
    """
    out: list[Style] = []
    prev_group, shade = "", 1
    for a in annotations:
        group = _style_group(a)
        shade = 1 - shade if group == prev_group else 0
        prev_group = group
        out.append(_STYLES.get((group, shade)) or _STYLES[("payload", shade)])
    return out


@dataclass(frozen=True)
class LegendRow:
    """One row of the legend: a run of identical annotations and how it is shown.

    Attributes:
        key: the letters that mark its bytes in the no-colour dump.
        style: its colour in the dump.
        first: index of its first annotation.
        last: index of its last annotation.
        start: first byte offset.
        end: byte offset just past its last byte.
        where: layer or message name ("TCP", "RowDescription").
        field: the field's name.
        value: the value; for a message cut by the frame boundary, followed by
            lines "(continued from the previous frame)" and/or
            "(continues in the next frame)".
    """

    key: str
    style: Style
    first: int
    last: int
    start: int
    end: int
    where: str
    field: str
    value: str


def _key(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, r = divmod(n, len(_KEYS))
        chars.append(_KEYS[r])
    return "".join(reversed(chars))


def legend_rows(annotations: Sequence[Annotation]) -> list[LegendRow]:
    """Group the annotations into legend rows and give each a key.

    Consecutive annotations with the same layer, message, field and value
    (e.g. a header field split in two) make one row. Keys are one character
    (A-Z, a-z, 0-9) for up to 62 rows, two for up to 3,844, three beyond.

    Args:
        annotations: annotations in byte order (as `annotate_frame` returns them).

    Returns:
        The rows, in byte order.
    """
    styles = annotation_styles(annotations)
    groups: list[list[int]] = []
    for i, a in enumerate(annotations):
        if groups:
            p = annotations[groups[-1][-1]]
            same = (p.layer, p.message, p.message_index, p.field, p.value) == (
                a.layer, a.message, a.message_index, a.field, a.value)
            if same and p.end == a.start and a.layer not in ("pgsql",):
                groups[-1].append(i)
                continue
        groups.append([i])
    width = 1 if len(groups) <= len(_KEYS) else 2 if len(groups) <= len(_KEYS) ** 2 else 3
    rows = []
    for n, g in enumerate(groups):
        a, z = annotations[g[0]], annotations[g[-1]]
        value = a.value
        if a.continues_before and _first_of_message(annotations, g[0]):
            value += "\n(continued from the previous frame)"
        if z.continues_after and _last_of_message(annotations, g[-1]):
            value += "\n(continues in the next frame)"
        where = a.message or _LAYER_NAMES.get(a.layer, a.layer)
        rows.append(LegendRow(_key(n, width), styles[g[0]], g[0], g[-1], a.start, z.end, where,
                              a.field, value))
    return rows


def _first_of_message(anns: Sequence[Annotation], i: int) -> bool:
    return i == 0 or anns[i - 1].message_index != anns[i].message_index


def _last_of_message(anns: Sequence[Annotation], i: int) -> bool:
    return i == len(anns) - 1 or anns[i + 1].message_index != anns[i].message_index


def _ascii(b: int) -> str:
    return chr(b) if 0x20 <= b < 0x7F else "."


#: One output line: its pieces of text, each with its style (None: plain).
Line = list[tuple[str, Style | None]]
_DIM = Style(dim=True)
_BOLD = Style(bold=True)


class _Lines:
    """Lines of pre-styled pieces, printed as they are (no wrapping: they fit)."""

    def __init__(self, lines: list[Line]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for line in self.lines:
            for text, style in line:
                yield Segment(text, style)
            yield newline


def _width(line: Line) -> int:
    return sum(len(text) for text, _ in line)


def _text(line: Line) -> Text:
    return Text.assemble(*((text, style) if style else text for text, style in line))


def _hex_lines(data: bytes, rows: Sequence[LegendRow], *, markers: bool,
               per_line: int) -> list[Line]:
    owner = [0] * len(data)  # byte -> legend row
    for r, row in enumerate(rows):
        owner[row.start : row.end] = [r] * (min(row.end, len(data)) - row.start)
    digits = max(4, len(f"{max(len(data) - 1, 0):x}"))
    half = per_line // 2

    def col(j: int) -> int:  # column of byte j's first hex digit, from the first byte's
        return j * 3 + (1 if j >= half else 0)

    ascii_col = col(per_line - 1) + 2 + 3
    one_char = bool(rows) and len(rows[0].key) == 1
    out: list[Line] = []
    for line_start in range(0, len(data), per_line):
        n = min(per_line, len(data) - line_start)
        runs = []  # (first byte index in the line, last, legend row)
        j = 0
        while j < n:
            k = j
            while k + 1 < n and owner[line_start + k + 1] == owner[line_start + j]:
                k += 1
            runs.append((j, k, owner[line_start + j]))
            j = k + 1
        line: Line = [(f"{line_start:0{digits}x}", _DIM), ("  ", None)]
        ascii_part: Line = []
        for j, k, r in runs:
            if j > 0:
                line.append(("  " if j == half else " ", None))
            chunk = data[line_start + j : line_start + k + 1]
            hexes = chunk.hex(" ")
            if j < half <= k:  # the run crosses the gap between the two groups of eight
                cut = (half - j) * 3
                hexes = hexes[:cut] + " " + hexes[cut:]
            line.append((hexes, rows[r].style))
            ascii_part.append(("".join(_ascii(b) for b in chunk), rows[r].style))
        line.append((" " * (ascii_col - col(n - 1) - 2), None))
        out.append(line + ascii_part)
        if not markers:
            continue
        margin = digits + 2
        chars = [" "] * (margin + ascii_col)
        for j, k, r in runs:
            lo, hi = margin + col(j), margin + col(k) + 2
            key = rows[r].key
            chars[lo:hi] = [_FILL] * (hi - lo)
            if j > 0:
                chars[lo - 1] = _BAR
            # A three-letter key on a one-byte field starts where its bar would be.
            at = lo if len(key) <= hi - lo else lo - 1
            chars[at : at + len(key)] = list(key)
        mark = "".join(chars)
        if one_char:
            mark += "".join(rows[owner[pos]].key for pos in range(line_start, line_start + n))
        out.append([(mark.rstrip(), None)])
    return out


def hex_lines(data: bytes, annotations: Sequence[Annotation], *, markers: bool,
              per_line: int = 16) -> list[Text]:
    """The dump's lines, each byte styled by its annotation.

    Args:
        data: the bytes (``frame.data``, or one message's ``raw``).
        annotations: annotations covering ``data`` exactly once, in order.
        markers: add a marker line under each hex line (for output without colour).
        per_line: bytes per line, 16 (Wireshark) or 8 for narrow consoles.

    Returns:
        The lines as `rich.text.Text` (hex lines, each followed by its marker
        line when ``markers``).
    """
    lines = _hex_lines(data, legend_rows(annotations), markers=markers, per_line=per_line)
    return [_text(line) for line in lines]


def _range_text(start: int, end: int) -> str:
    if end - start <= 1:
        return f"0x{start:04x} ({start})"
    return f"0x{start:04x}-0x{end - 1:04x} ({start}-{end - 1})"


_HEADINGS = {"link": "Link layer", "ip": "IP header", "tcp": "TCP header",
             "payload": "Payload not decoded", "trailer": "After the IP packet"}


def _heading(a: Annotation) -> tuple[str, str]:
    if a.layer == "pgsql" or a.message:
        way = {"F": "frontend → backend", "B": "backend → frontend"}.get(a.direction, "")
        return a.message, way
    return _HEADINGS.get(a.layer, a.layer), ""


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width and "\n" not in text:
        return [text]
    lines: list[str] = []
    for part in text.split("\n"):
        lines += textwrap.wrap(part, width, break_long_words=True, break_on_hyphens=False) or [""]
    return lines


def _legend(rows: Sequence[LegendRow], annotations: Sequence[Annotation], width: int, *,
            markers: bool) -> list[Line]:
    kw = max(max((len(r.key) for r in rows), default=1), 3) if markers else 2
    ranges = [_range_text(r.start, r.end) for r in rows]
    bw = max((len(t) for t in ranges), default=5)
    fw = min(max((len(r.field) for r in rows), default=5), 26)
    vw = max(width - kw - bw - fw - 6, 12)
    out: list[Line] = []

    def line(key: tuple[str, Style | None], where: str, name: tuple[str, Style | None],
             value: tuple[str, Style | None]) -> None:
        pieces: Line = [key, (" " * (kw + 2 - len(key[0])), None), (where.ljust(bw), _DIM),
                        ("  ", None), name, (" " * (fw + 2 - len(name[0])), None), value]
        while pieces and not pieces[-1][0].strip():
            pieces.pop()
        out.append(pieces)

    line(("key" if markers else "", _BOLD), "bytes", ("field", _BOLD), ("value", _BOLD))
    out.append([("─" * min(width, kw + bw + fw + 6 + vw), _DIM)])
    group: tuple[str, int] | None = None
    for row, where in zip(rows, ranges, strict=True):
        a = annotations[row.first]
        if (a.layer, a.message_index) != group:
            group = (a.layer, a.message_index)
            name, note = _heading(a)
            line(("", None), "", (name[:fw], _BOLD), (note[:vw], _DIM))
        swatch = (row.key, _BOLD) if markers else (
            "██", Style(color=row.style.bgcolor or row.style.color))
        fields, values = _wrap(row.field, fw), _wrap(row.value, vw)
        for i in range(max(len(fields), len(values))):
            line(swatch if i == 0 else ("", None), where if i == 0 else "",
                 (fields[i] if i < len(fields) else "", None),
                 (values[i] if i < len(values) else "", None))
    return out


def legend_lines(rows: Sequence[LegendRow], annotations: Sequence[Annotation], width: int, *,
                 markers: bool) -> list[Text]:
    """The legend as lines of at most ``width`` columns.

    Columns: the colour swatch (the key letters when ``markers``), the byte
    range in hex and decimal, the field, the value; a bold heading line
    starts each header layer and each message. Long fields and values wrap.

    Args:
        rows: the legend rows (`legend_rows`).
        annotations: the annotations the rows were made from.
        width: the columns available.
        markers: show keys instead of colour swatches.

    Returns:
        The lines as `rich.text.Text`.
    """
    return [_text(line) for line in _legend(rows, annotations, width, markers=markers)]


def _no_color(console: Console) -> bool:
    return bool(console.no_color) or console.color_system is None


def _render(console: Console, data: bytes, annotations: Sequence[Annotation], title: str,
            legend: bool) -> None:
    markers = _no_color(console)
    width = console.width
    rows = legend_rows(annotations)
    lines = _hex_lines(data, rows, markers=markers, per_line=16 if width >= 74 else 8)
    if title:
        console.print(Text(title, style="bold"))
    if legend:
        dump_width = max((_width(line) for line in lines), default=0)
        if width >= SIDE_BY_SIDE_WIDTH:
            table = _legend(rows, annotations, width - dump_width - 3, markers=markers)
            empty: Line = []
            lines = [[*left, (" " * (dump_width - _width(left) + 3), None), *right]
                     for left, right in zip_longest(lines, table, fillvalue=empty)]
        else:
            lines += [[], *_legend(rows, annotations, width, markers=markers)]
    console.print(_Lines(lines))


def render_hexdump(console: Console, frame: Frame, annotations: Sequence[Annotation], *,
                   title: str = "", legend: bool = True) -> None:
    """Print a frame's annotated hex dump and its legend.

    Args:
        console: where to print; without colour (``console.no_color`` or
            ``console.color_system`` None) marker lines key the bytes instead.
        frame: the frame.
        annotations: `annotate_frame`'s annotations of ``frame`` (they must
            cover ``frame.data`` exactly once, in order).
        title: a heading printed above the dump, if any.
        legend: print the legend (one row per field).

    Raises:
        PgWireError: the annotations do not cover the frame's bytes exactly once.
    """
    _check(annotations, len(frame.data))
    _render(console, frame.data, annotations, title, legend)


def render_message_hexdump(console: Console, wm: WireMessage, conn: Connection, *,
                           title: str | None = None, legend: bool = True) -> None:
    """Print one PostgreSQL message's annotated hex dump (offsets from its first byte).

    Args:
        console: where to print.
        wm: the message.
        conn: its connection (for DataRow values and parameter types).
        title: heading; None gives "<name>, frame N, stream byte M, L bytes".
        legend: print the legend.
    """
    msg = wm.message
    if title is None:
        title = (f"{msg.name}, frame {wm.frame}, stream byte {msg.offset}, "
                 f"{len(msg.raw)} bytes")
    _render(console, msg.raw, annotate_message(wm, conn), title, legend)


def _check(annotations: Sequence[Annotation], size: int) -> None:
    pos = 0
    for a in annotations:
        if a.start != pos or a.end <= a.start:
            raise PgWireError(f"annotations do not cover byte {pos} exactly once")
        pos = a.end
    if pos != size:
        raise PgWireError(f"annotations end at byte {pos}, the data at byte {size}")


def export(console: Console, svg: str | None = None, html: str | None = None, *,
           title: str = "pgwire-inspect") -> None:
    """Write what a recording console has printed as SVG and/or HTML.

    The console must have been made with ``Console(record=True)``; for colours
    in the files when the output is not a terminal, give it
    ``force_terminal=True`` (or a ``color_system``).

    Args:
        console: the recording console.
        svg: path of the SVG file to write (rich's ``save_svg``), or None.
        html: path of the HTML file to write (rich's ``save_html``), or None.
        title: the SVG window title.

    Raises:
        PgWireError: the console does not record.
        OSError: a file cannot be written.
    """
    if not console.record:
        raise PgWireError("cannot export: the console was not made with record=True")
    if svg:
        console.save_svg(svg, title=title, clear=not html)
    if html:
        console.save_html(html)
