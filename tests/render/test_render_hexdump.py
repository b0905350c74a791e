"""The annotated hex dump: layout, marker lines without colour, legend colours, SVG export."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from pgwire_inspect.annotate import annotate_frame
from pgwire_inspect.capture import Frame
from pgwire_inspect.decode import Decoded
from pgwire_inspect.errors import PgWireError
from pgwire_inspect.render.hexdump import (
    annotation_styles,
    export,
    legend_rows,
    render_hexdump,
    render_message_hexdump,
)
from tests.render.frames import decoded, orm_frame
from tests.testpaths import CAPTURES

HEX_LINE = re.compile(r"^([0-9a-f]{4})  ((?:[0-9a-f]{2}[ ]{1,2}){0,15}[0-9a-f]{2})")


def query_frame() -> tuple[Decoded, Frame]:
    """A frame with one Query message: few enough fields for one-letter keys."""
    d = decoded(CAPTURES / "psycopg2-simple.pcap")
    wm = next(w for w in d.connections[0].messages if w.name == "Query")
    return d, next(f for f in d.kept_frames if f.no == wm.frame)


def plain(width: int = 80) -> Console:
    """A console writing to a string, not a terminal: no colour."""
    return Console(width=width, file=StringIO())


def coloured(width: int = 80) -> Console:
    return Console(width=width, file=StringIO(), force_terminal=True, color_system="truecolor",
                   record=True)


def output(console: Console) -> list[str]:
    file = console.file
    assert isinstance(file, StringIO)
    return file.getvalue().splitlines()


def dump_and_markers(lines: list[str]) -> list[tuple[str, str]]:
    """(hex line, marker line under it) pairs of a no-colour dump."""
    pairs = []
    for i, line in enumerate(lines):
        if HEX_LINE.match(line):
            pairs.append((line, lines[i + 1]))
    return pairs


def byte_columns(line: str) -> list[int]:
    """Column of each byte's first hex digit in a dump line."""
    return [m.start() for m in re.finditer(r"(?<![0-9a-f])[0-9a-f]{2}(?![0-9a-f])", line[:55])]


def test_no_colour_marker_lines_key_every_byte() -> None:
    d, f = query_frame()
    anns = annotate_frame(d, f)
    rows = legend_rows(anns)
    assert len(rows) <= 62 and all(len(r.key) == 1 for r in rows)
    console = plain()
    assert console.color_system is None
    render_hexdump(console, f, anns, title=f"Frame {f.no}")
    lines = output(console)
    assert lines[0] == f"Frame {f.no}"
    pairs = dump_and_markers(lines)
    assert len(pairs) == (len(f.data) + 15) // 16
    key_of = {pos: r.key for r in rows for pos in range(r.start, r.end)}
    for n, (hexes, marks) in enumerate(pairs):
        assert hexes.startswith(f"{n * 16:04x}  ")
        positions = range(n * 16, min(n * 16 + 16, len(f.data)))
        cols = byte_columns(hexes)
        assert [int(hexes[c : c + 2], 16) for c in cols] == [f.data[p] for p in positions]
        # One key character per byte under the ASCII column ...
        assert marks[-len(positions):] == "".join(key_of[p] for p in positions)
        # ... and under the hex digits: the key where a field starts, | before it.
        for p, c in zip(positions, cols, strict=True):
            starts = p == n * 16 or key_of[p] != key_of[p - 1]
            assert marks[c] == (key_of[p] if starts else "~")
            if starts and p != n * 16:
                assert marks[c - 1] == "|"
    legend = "\n".join(lines[lines.index("") + 1 :])
    for r in rows:
        assert re.search(rf"^{re.escape(r.key)}\s+0x{r.start:04x}", legend, re.M), r


def test_two_letter_keys_all_appear_in_the_marker_lines() -> None:
    d, f = orm_frame()
    anns = annotate_frame(d, f)
    rows = legend_rows(anns)
    assert len(rows) > 62 and {len(r.key) for r in rows} == {2}
    console = plain()
    render_hexdump(console, f, anns)
    lines = output(console)
    marks = "\n".join(m for _h, m in dump_and_markers(lines))
    for r in rows:
        assert r.key in marks
        assert any(line.startswith(f"{r.key}   0x{r.start:04x}") for line in lines), r


def test_80_columns_and_wide_layout() -> None:
    d, f = orm_frame()
    anns = annotate_frame(d, f)
    narrow = plain(80)
    render_hexdump(narrow, f, anns, title="RowDescription and DataRow")
    lines = output(narrow)
    assert max(len(line) for line in lines) <= 80
    dump = [line for line in lines if HEX_LINE.match(line)]
    assert max(len(line) for line in dump) <= 75
    legend_at = next(i for i, line in enumerate(lines) if "Destination MAC" in line)
    assert legend_at > lines.index(dump[-1])  # stacked: the legend comes after the dump
    wide = plain(160)
    render_hexdump(wide, f, anns)
    wide_lines = output(wide)
    assert max(len(line) for line in wide_lines) <= 160
    beside = [line for line in wide_lines if HEX_LINE.match(line) and "0x00" in line[75:]]
    assert len(beside) > 10  # the legend sits beside the dump


def test_narrow_console_gets_eight_bytes_a_line() -> None:
    d, f = query_frame()
    console = plain(60)
    render_hexdump(console, f, annotate_frame(d, f), legend=False)
    lines = output(console)
    assert lines[0].startswith("0000  ") and lines[2].startswith("0008  ")
    assert max(len(line) for line in lines) <= 60


def test_legend_colours_are_the_dump_colours() -> None:
    d, f = orm_frame()
    anns = annotate_frame(d, f)
    console = coloured()
    render_hexdump(console, f, anns)
    html = console.export_html(inline_styles=True)
    swatches = re.findall(r'<span style="color: (#[0-9a-f]{6})[^"]*">██</span>', html)
    assert len(swatches) == len(legend_rows(anns))
    byte_colours = set()
    for style, _hex in re.findall(r'<span style="([^"]*)">([0-9a-f]{2}(?: +[0-9a-f]{2})*)</span>',
                                  html):
        bg = re.search(r"background-color: (#[0-9a-f]{6})", style)
        fg = re.search(r"(?<![-\w])color: (#[0-9a-f]{6})", style)
        byte_colours.add(bg.group(1) if bg else fg.group(1) if fg else None)
    assert set(swatches) == byte_colours - {None}


def test_styles_separate_layers_and_adjacent_fields() -> None:
    d, f = orm_frame()
    anns = annotate_frame(d, f)
    styles = annotation_styles(anns)
    colour = {layer: {str(s.color) for a, s in zip(anns, styles, strict=True) if a.layer == layer}
              for layer in ("link", "ip", "tcp")}
    assert not (colour["link"] & colour["ip"]) and not (colour["ip"] & colour["tcp"])
    assert not (colour["link"] & colour["tcp"])
    for (a, sa), (b, sb) in zip(zip(anns, styles, strict=True), zip(anns[1:], styles[1:],
                                                                     strict=False), strict=False):
        assert sa != sb, (a, b)
    kinds = {a.kind: s.bgcolor for a, s in zip(anns, styles, strict=True) if a.layer == "pgsql"}
    assert len(set(kinds.values())) == len(kinds)  # each kind of field its own colour


def test_partial_messages_are_marked(zeek_dir: Path) -> None:
    d = decoded(zeek_dir / "http-on-port-5432.pcap")
    wm = next(w for w in d.connections[0].messages if w.direction == "B")
    marks = {}
    for no in (wm.frame, wm.frame + 1, wm.last_frame - 4):
        f = next(f for f in d.kept_frames if f.no == no)
        anns = annotate_frame(d, f)
        (row,) = [r for r in legend_rows(anns) if r.where == "MalformedMessage"]
        console = plain(200)
        render_hexdump(console, f, anns)
        text = "\n".join(output(console))
        marks[no] = tuple(note in row.value and note in text for note in (
            "(continued from the previous frame)", "(continues in the next frame)"))
    assert marks[wm.frame] == (False, True)
    assert marks[wm.frame + 1] == (True, True)
    assert marks[wm.last_frame - 4] == (True, False)


def test_svg_and_html_export(tmp_path: Path) -> None:
    d, f = orm_frame()
    console = coloured(100)
    render_hexdump(console, f, annotate_frame(d, f), title=f"Frame {f.no}")
    svg, html = tmp_path / "frame.svg", tmp_path / "frame.html"
    export(console, str(svg), str(html), title="pgwire-inspect hexdump")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    words = [w for t in root.iter() if t.tag.endswith("text") and t.text
             for w in t.text.replace("\xa0", " ").split()]
    assert " ".join(words).count("75 73 65 72 73 5f") == 4  # the four "users_" column names
    assert "columns[1].type_oid" in words and "'users_id'" in words
    assert "pgwire-inspect hexdump" in "".join(root.itertext()).replace("\xa0", " ")
    page = html.read_text()
    assert "columns[1].typmod" in page and "75 73 65 72" in page.replace("&#160;", " ")


def test_export_needs_a_recording_console() -> None:
    with pytest.raises(PgWireError, match="record=True"):
        export(plain(), svg="never.svg")


def test_annotations_must_cover_the_frame() -> None:
    d, f = query_frame()
    anns = annotate_frame(d, f)
    with pytest.raises(PgWireError, match="exactly once"):
        render_hexdump(plain(), f, anns[:3] + anns[4:])
    with pytest.raises(PgWireError, match="end at byte"):
        render_hexdump(plain(), f, anns[:-1])


def test_one_message_alone() -> None:
    d, f = orm_frame()
    conn = d.connections[0]
    wm = next(w for w in conn.messages if w.frame == f.no and w.name == "DataRow")
    console = plain()
    render_message_hexdump(console, wm, conn)
    lines = output(console)
    assert lines[0] == f"DataRow, frame {f.no}, stream byte {wm.message.offset}, 140 bytes"
    assert lines[1].startswith("0000  44 00 00 00 8b 00 04")  # 'D', length 139, 4 columns
    assert any("values[1].value" in line and "'Demo'" in line for line in lines)


def test_zeek_frames_render(zeek_dir: Path) -> None:
    for name in ("psql-select-now.pcap", "psql-aws-ssl-require.pcap"):
        d = decoded(zeek_dir / name)
        for f in d.kept_frames[2:8]:
            console = plain()
            anns = annotate_frame(d, f)
            render_hexdump(console, f, anns)
            assert len(dump_and_markers(output(console))) == (len(f.data) + 15) // 16
