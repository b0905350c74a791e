"""Every byte of a frame named: coverage on every recorded frame, facts on known frames."""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from pgwire_inspect.annotate import LAYERS, Annotation, annotate_frame, annotate_message
from pgwire_inspect.capture import Frame, LiveCapture, open_capture
from pgwire_inspect.catalog import load_catalog
from pgwire_inspect.decode import Decoded, decode_frames
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.live import run_live
from pgwire_inspect.orm import demo_program, ensure_demo_data, prepare_url
from pgwire_inspect.protocol import DataRow, RowDescription

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
ZEEK = ROOT.parent / "shared" / "captures" / "zeek"  # as tests/conftest.py
ALL_CAPTURES = sorted(CAPTURES.glob("*.pcap")) + sorted(ZEEK.glob("*.pcap"))
KINDS = {"header", "type", "length", "count", "name", "string", "oid", "number",
         "column length", "value", "status", "terminator", "payload", "malformed", "trailer"}


@cache
def decoded(path: Path) -> Decoded:
    """The capture decoded with every frame kept (PostgreSQL found on any port)."""
    return decode_frames(open_capture(path), ports=None, keep_frames=True)


def frame(d: Decoded, no: int) -> Frame:
    return next(f for f in d.kept_frames if f.no == no)


def pg(anns: list[Annotation], message: str) -> list[Annotation]:
    return [a for a in anns if a.message == message]


def field(anns: list[Annotation], name: str) -> Annotation:
    return next(a for a in anns if a.field == name)


def assert_covers(anns: list[Annotation], size: int) -> None:
    pos = 0
    for a in anns:
        assert a.start == pos and a.end > a.start, (pos, a)
        pos = a.end
    assert pos == size


def test_zeek_captures_are_there(zeek_dir: Path) -> None:
    assert [p for p in ALL_CAPTURES if p.parent == zeek_dir]


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_every_byte_of_every_frame_is_annotated_once(path: Path) -> None:
    d = decoded(path)
    assert d.kept_frames
    for f in d.kept_frames:
        anns = annotate_frame(d, f)
        assert_covers(anns, len(f.data))
        for a in anns:
            assert a.layer in LAYERS and a.kind in KINDS, a
            assert (a.message_index == -1) == (not a.message), a
            if a.layer == "pgsql" and a.field == "type" and not a.cut_before:
                assert repr(chr(f.data[a.start])) == a.value  # the type byte itself
            if a.layer == "pgsql" and a.field == "length" and a.end - a.start == 4:
                assert int.from_bytes(f.data[a.start : a.end], "big") == int(a.value)
        located = d.location(f.no)
        if located is None:
            assert not [a for a in anns if a.layer == "pgsql"]
        # The message indexes count up from 0 in byte order.
        indexes = list(dict.fromkeys(a.message_index for a in anns if a.message_index >= 0))
        assert indexes == list(range(len(indexes)))


def first_orm_row_description() -> tuple[Decoded, int]:
    """The frame holding the RowDescription of the ORM demo's first query."""
    d = decoded(CAPTURES / "orm-demo-psycopg2.pcap")
    q = next(q for c in d.connections for q in c.queries
             if (q.sql or "").startswith("SELECT users.id AS users_id"))
    assert q.results[0].description is not None
    return d, q.results[0].description.frame


def test_row_description_byte_by_byte() -> None:
    d, no = first_orm_row_description()
    f = frame(d, no)
    anns = annotate_frame(d, f)
    rd = pg(anns, "RowDescription")
    assert [a.field for a in rd[:3]] == ["type", "length", "column_count"]
    t, length = rd[0], rd[1]
    assert (t.start, t.end, t.value, t.kind, t.direction) == (t.start, t.start + 1, "'T'", "type",
                                                              "B")
    assert f.data[t.start : t.end] == b"T"
    assert (length.start, length.end) == (t.end, t.end + 4) and length.kind == "length"
    msg = next(wm.message for wm in d.connections[0].messages
               if wm.frame == no and isinstance(wm.message, RowDescription))
    assert int(length.value) == msg.length - 1
    assert "so the message is" in length.meaning
    name = field(rd, "columns[0].name")
    assert name.value == "'users_id'" and f.data[name.start : name.end] == b"users_id\x00"
    type_oid = field(rd, "columns[1].type_oid")
    assert type_oid.value == "1043" and f.data[type_oid.start : type_oid.end] == (
        1043).to_bytes(4, "big")
    assert type_oid.meaning == "type OID 1043 is varchar"
    typmod = field(rd, "columns[1].typmod")
    assert typmod.value == "44" and typmod.meaning == "typmod 44 means varchar(40)"
    table = field(rd, "columns[0].table_oid")
    assert table.kind == "oid" and "table OID" in table.meaning
    # The DataRow that follows in the same frame: values and their decoded meaning.
    row = pg(anns, "DataRow")
    username = field(row, "values[1].value")
    assert username.value == "'Demo'" and f.data[username.start : username.end] == b"Demo"
    assert "decodes to 'Demo' (str)" in username.meaning
    assert "varchar(40)" in username.meaning
    assert field(row, "values[1].length").kind == "column length"
    assert field(pg(anns, "ReadyForQuery"), "status").meaning == (
        "ReadyForQuery 'T' means in a transaction block")
    assert not any(a.continues_before or a.continues_after for a in anns)


def test_header_fields_come_first_and_name_the_endpoints() -> None:
    d, no = first_orm_row_description()
    anns = annotate_frame(d, frame(d, no))
    layers = [a.layer for a in anns]
    assert layers[:3] == ["link"] * 3 and layers.index("ip") < layers.index("tcp")
    assert layers.index("pgsql") == max(i for i, x in enumerate(layers) if x == "tcp") + 1
    conn, loc = d.location(no) or (None, None)
    assert conn is not None and loc is not None
    sport = field(anns, "Source port")
    assert sport.value == str(conn.server[1]) and sport.meaning == "the PostgreSQL server's port"
    seq = field(anns, "Sequence number")
    assert f"byte {loc.stream_offset} of the backend" in seq.meaning
    assert anns[[a.layer for a in anns].index("pgsql")].start == loc.payload_offset


def test_null_column_length() -> None:
    d = decoded(CAPTURES / "psycopg2-simple.pcap")
    conn = d.connections[0]
    wm = next(w for w in conn.messages if isinstance(w.message, DataRow)
              and None in w.message.values)
    i = wm.message.values.index(None)
    anns = pg(annotate_frame(d, frame(d, wm.frame)), "DataRow")
    null = next(a for a in anns if a.field == f"values[{i}].length")
    assert null.value == "-1" and "column length -1 means NULL" in null.meaning
    assert not any(a.field == f"values[{i}].value" for a in anns)


def test_duplicate_frame_is_annotated_like_the_original() -> None:
    d, no = first_orm_row_description()
    original, copy = annotate_frame(d, frame(d, no)), annotate_frame(d, frame(d, no + 1))
    assert frame(d, no).data[66:] == frame(d, no + 1).data[66:]  # loopback's second copy
    first = next(i for i, a in enumerate(copy) if a.layer not in ("link", "ip", "tcp"))
    assert copy[first].meaning.startswith(f"retransmission/duplicate of frame {no}; ")
    assert [(a.start, a.field, a.value) for a in copy] == [
        (a.start, a.field, a.value) for a in original]
    assert not any("duplicate" in a.meaning for a in original)


def test_encrypted_bytes_are_payload() -> None:
    d = decoded(ZEEK / "psql-aws-ssl-require.pcap")
    kinds = {}
    for f in d.kept_frames:
        for a in annotate_frame(d, f):
            if a.layer in ("pgsql", "payload"):
                kinds.setdefault((a.layer, a.message or a.meaning[:9]), f.no)
    assert ("pgsql", "SSLRequest") in kinds and ("pgsql", "SSLResponse") in kinds
    assert ("payload", "encrypted") in kinds
    assert kinds[("payload", "encrypted")] > kinds[("pgsql", "SSLResponse")]


def test_malformed_stretch_across_frames(zeek_dir: Path) -> None:
    d = decoded(zeek_dir / "http-on-port-5432.pcap")
    conn = d.connections[0]
    wm = next(w for w in conn.messages if w.direction == "B")
    assert wm.name == "MalformedMessage" and wm.frame < wm.last_frame
    seen = []
    for no in range(wm.frame, wm.last_frame + 1):
        anns = [a for a in annotate_frame(d, frame(d, no)) if a.message == "MalformedMessage"]
        if not anns:
            continue
        (a,) = anns
        assert a.layer == "payload" and a.kind == "malformed"
        seen.append((a.continues_before, a.continues_after))
        if a.continues_after:
            assert a.cut_after and "goes on in a later frame (frame" in a.meaning
        if a.continues_before:
            assert a.cut_before and "started in an earlier frame (frame" in a.meaning
    assert seen[0] == (False, True) and seen[-1] == (True, False)
    assert all(s == (True, True) for s in seen[1:-1]) and len(seen) >= 3


def test_annotate_message_alone() -> None:
    d, no = first_orm_row_description()
    conn = d.connections[0]
    wm = next(w for w in conn.messages if w.frame == no and w.name == "DataRow")
    anns = annotate_message(wm, conn)
    assert_covers(anns, len(wm.message.raw))
    assert anns[0].field == "type" and anns[0].start == 0
    in_frame = pg(annotate_frame(d, frame(d, no)), "DataRow")
    base = in_frame[0].start
    assert [(a.start + base, a.field, a.value, a.meaning) for a in anns] == [
        (a.start, a.field, a.value, a.meaning) for a in in_frame]


def test_bind_parameters_with_their_types() -> None:
    d = decoded(CAPTURES / "psycopg-extended.pcap")
    conn = d.connections[0]
    wm = next(w for w in conn.messages if w.name == "Bind" and w.message.parameters)
    anns = annotate_message(wm, conn)
    values = [a for a in anns if a.field.startswith("parameters[") and a.field.endswith("value")]
    assert values and all("parameter $" in a.meaning for a in values)
    q = next(q for q in conn.queries if wm in q.requests)
    typed = [a for a, p in zip(values, q.parameters, strict=False) if p[0]]
    assert all(", type " in a.meaning for a in typed)


# -- a message longer than a frame, captured live ----------------------------------------


@pytest.fixture
def big_row(pg_dsn: str) -> tuple[Decoded, int]:
    """A 200,000-byte DataRow captured on loopback: (decoded capture, its client port)."""
    url = make_url(pg_dsn)
    cap = LiveCapture(url.host or "127.0.0.1", url.port or 5432)
    try:
        cap.start()
    except CaptureError as exc:
        if "needs root" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(str(exc))
        raise
    try:
        with psycopg.connect(pg_dsn, sslmode="disable") as conn:
            sock = socket.socket(fileno=os.dup(conn.fileno()))
            port = int(sock.getsockname()[1])
            sock.close()
            assert len(conn.execute("select repeat('x', 200000)").fetchone()[0]) == 200000
        assert cap.wait_for_close(port, timeout=10.0)
    finally:
        cap.stop()
    return decode_frames(cap.frames(), ports=(url.port or 5432,), client_ports=(port,),
                         keep_frames=True), port


def test_message_cut_by_frame_boundaries(big_row: tuple[Decoded, int]) -> None:
    d, _port = big_row
    conn = d.connections[0]
    wm = next(w for w in conn.messages if w.name == "DataRow")
    assert wm.frame < wm.last_frame
    parts = []
    for f in d.kept_frames:
        anns = annotate_frame(d, f)
        assert_covers(anns, len(f.data))
        mine = [a for a in anns if a.message == "DataRow"]
        if mine and not any("duplicate" in a.meaning for a in anns):
            parts.append((f.no, mine))
    assert len(parts) >= 4
    first, last = parts[0][1], parts[-1][1]
    assert first[0].field == "type" and not first[0].continues_before
    assert first[-1].field == "values[0].value" and first[-1].cut_after
    assert all(a.continues_after for a in first)
    assert f"goes on in a later frame (frame {parts[1][0]})" in first[-1].meaning
    for _no, mid in parts[1:-1]:
        assert len(mid) == 1 and mid[0].cut_before and mid[0].cut_after
    assert last[0].cut_before and last[0].continues_before and not last[-1].continues_after
    assert f"started in an earlier frame (frame {parts[-2][0]})" in last[0].meaning
    assert sum(a.end - a.start for _no, anns in parts for a in anns
               if a.field == "values[0].value") == 200000


def test_catalog_names_tables_and_columns(pg_dsn: str) -> None:
    url = prepare_url(pg_dsn, "psycopg2")
    ensure_demo_data(url)
    live = run_live(url, demo_program())
    conn = live.connection
    assert conn is not None
    q = next(q for q in conn.queries if (q.sql or "").startswith("SELECT users.id AS users_id"))
    result = q.results[0]
    assert result.description is not None
    oid = result.columns[1].table_oid
    catalog = load_catalog(pg_dsn, table_oids=[oid])
    table = catalog.table_name(oid)
    assert table is not None and table.endswith(".users")
    f = frame(live.decoded, result.description.frame)
    rd = pg(annotate_frame(live.decoded, f, catalog=catalog), "RowDescription")
    assert field(rd, "columns[1].table_oid").meaning == f"table OID {oid} is {table}"
    assert field(rd, "columns[1].column").meaning == (
        f"attribute number 2 of that table: {table}.username")
    without = pg(annotate_frame(live.decoded, f), "RowDescription")
    assert field(without, "columns[1].table_oid").meaning == (
        f"table OID {oid}: the table the column comes from")
