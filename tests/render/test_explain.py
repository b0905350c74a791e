"""The byte-by-byte explanation of a frame, and of a DataRow becoming an ORM instance."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

from rich.console import Console

from pgwire_inspect.annotate import annotate_frame
from pgwire_inspect.linking import LinkedRow, link_run
from pgwire_inspect.live import run_live
from pgwire_inspect.orm import demo_program, ensure_demo_data, prepare_url
from pgwire_inspect.render.explain import explain_frame, explain_orm_row, range_text
from tests.render.frames import decoded, orm_frame


def text_of(width: int, fn: object, *args: object, **kwargs: object) -> str:
    console = Console(width=width, file=StringIO())
    fn(console, *args, **kwargs)  # type: ignore[operator]
    file = console.file
    assert isinstance(file, StringIO)
    return file.getvalue()


def flat(text: str) -> str:
    """The output with its lines joined, as the sentences read."""
    return " ".join(" ".join(line.split()) for line in text.splitlines())


def test_range_text() -> None:
    assert range_text(66, 67) == "byte 66 (0x0042)"
    assert range_text(67, 71) == "bytes 67-70 (0x0043-0x0046)"


def test_frame_walk_from_first_to_last_byte() -> None:
    d, f = orm_frame()
    anns = annotate_frame(d, f)
    out = text_of(100, explain_frame, f, anns)
    lines = out.splitlines()
    assert lines[0] == f"Frame {f.no}: {len(f.data)} bytes captured; link layer ETHERNET."
    # Every field in byte order, each on a line that starts with its byte range.
    starts = [i for a in anns for i, line in enumerate(lines)
              if line.startswith(range_text(a.start, a.end) + " ")]
    assert len(starts) == len(anns) and starts == sorted(starts)
    titles = [line for line in lines if re.match(r"^(The |Message )", line)]
    assert titles[:3] == ["The link-layer header, bytes 0-13 (0x0000-0x000d), 14 bytes.",
                          "The IP header, bytes 14-33 (0x000e-0x0021), 20 bytes.",
                          "The TCP header, bytes 34-65 (0x0022-0x0041), 32 bytes."]
    assert titles[3].startswith("Message 1: RowDescription, bytes 66-")
    assert [t.split(",")[0] for t in titles[4:]] == [
        "Message 2: DataRow", "Message 3: CommandComplete", "Message 4: ReadyForQuery"]
    text = flat(out)
    assert "columns[1].type_oid = 1043. Type OID 1043 is varchar." in text
    assert "columns[1].typmod = 44. Typmod 44 means varchar(40)." in text
    assert "Source port = 5432. The PostgreSQL server's port." in text
    assert "values[1].value = 'Demo'." in text and "decodes to 'Demo' (str)" in text
    assert "status = 'T'. ReadyForQuery 'T' means in a transaction block." in text


def test_duplicate_frame_says_so() -> None:
    d, f = orm_frame()
    copy = next(x for x in d.kept_frames if x.no == f.no + 1)
    text = flat(text_of(80, explain_frame, copy, annotate_frame(d, copy)))
    assert f"This frame is a retransmission/duplicate of frame {f.no}:" in text
    plain = flat(text_of(80, explain_frame, f, annotate_frame(d, f)))
    assert "duplicate" not in plain


def test_encrypted_and_malformed_bytes_are_explained(zeek_dir: Path) -> None:
    d = decoded(zeek_dir / "psql-aws-ssl-require.pcap")
    texts = [flat(text_of(80, explain_frame, f, annotate_frame(d, f))) for f in d.kept_frames]
    assert any("answer = 'S'. 'S': the server agrees, encrypted bytes follow." in t
               for t in texts)
    assert any("Encrypted (TLS) bytes: nothing after the switch" in t for t in texts)
    d = decoded(zeek_dir / "http-on-port-5432.pcap")
    wm = next(w for w in d.connections[0].messages if w.direction == "B")
    f = next(x for x in d.kept_frames if x.no == wm.frame + 1)
    text = flat(text_of(100, explain_frame, f, annotate_frame(d, f)))
    assert "Message 1: MalformedMessage" in text
    assert "It started in an earlier frame" in text and "It goes on in a later frame" in text


def test_data_row_without_an_instance_from_a_capture() -> None:
    d, f = orm_frame()
    conn = d.connections[0]
    row = next(w for w in conn.messages if w.frame == f.no and w.name == "DataRow")
    result = conn.result_of(row)
    assert result is not None
    linked = LinkedRow(result, row, 1, conn.decode_row(result, row))
    text = flat(text_of(100, explain_orm_row, linked, conn, decoded=d))
    anns = {a.field: a for a in annotate_frame(d, f) if a.message == "DataRow"}
    value, length = anns["values[1].value"], anns["values[1].length"]
    assert "No ORM instance matched this row." in text
    assert (f"users_username (varchar(40), text format): length 4 at frame {f.no} "
            f"{range_text(length.start, length.end)}; value at frame {f.no} "
            f"{range_text(value.start, value.end)}: text 'Demo' → 'Demo' (str)") in text
    # Without the capture only stream offsets can be given.
    alone = flat(text_of(100, explain_orm_row, linked, conn))
    stream = row.message.offset + value.start - anns["type"].start
    assert f"value at stream {range_text(stream, stream + 4)}: text 'Demo'" in alone


def test_orm_row_becomes_instance_attributes(pg_dsn: str) -> None:
    url = prepare_url(pg_dsn, "psycopg2")
    ensure_demo_data(url)
    live = run_live(url, demo_program())
    conn = live.connection
    assert conn is not None
    linked = link_run(live.run, conn)
    row = next(r for s in linked.steps for q in s.queries for r in q.rows)
    assert row.instance is not None and row.built
    text = flat(text_of(120, explain_orm_row, row, conn, decoded=live.decoded))
    assert f"It becomes the ORM instance {row.instance.label}. SQLAlchemy built it" in text
    for i, column in enumerate(c.name for c in row.result.columns):
        attrs = [a for a, c in row.columns.items() if c == column]
        for attr in attrs:
            shown = repr(row.instance.attributes[attr])
            shown = shown if len(shown) <= 40 else shown[:39] + "…"  # long values are clipped
            assert (f"→ attribute {attr} = {shown} "
                    f"({row.instance.attribute_types[attr]}).") in text, attr
        assert f"column {i + 1} {column} (" in text
    # The offsets given are where the bytes are in the captured frame.
    msg = row.row.message
    frames = {f.no: f for f in live.decoded.kept_frames}
    checked = 0
    for m in re.finditer(r"value at frame (\d+) bytes? (\d+)(?:-(\d+))? \(0x[-0-9a-fx]+\): "
                         r"text '([^'…]*)'", text):
        no, start, end, shown = int(m[1]), int(m[2]), int(m[3] or m[2]), m[4]
        assert frames[no].data[start : end + 1] == shown.encode()
        assert shown.encode() in msg.values
        checked += 1
    assert checked == 3  # id, username, email (the password hash is clipped)
