"""The Python API: read_capture on recorded captures, capture() around real traffic."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from captures.scenarios import show
from pgwire_inspect import Capture, CapturedQuery, capture, read_capture
from pgwire_inspect.api import classify_sql
from pgwire_inspect.capture import Frame, LiveCapture, open_capture, write_pcap
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.orm import User, ensure_demo_data, prepare_url

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
EXAMPLE = ROOT / "examples" / "fastapi_app"


def reference(name: str) -> dict[str, Any]:
    import json

    return json.loads((CAPTURES / f"{name}.json").read_text())


def dsn_for(pg_dsn: str, driver: str) -> str:
    return make_url(pg_dsn).set(drivername=f"postgresql+{driver}").render_as_string(
        hide_password=False)


# -- read_capture ------------------------------------------------------------------


def test_read_capture_values_are_what_the_client_fetched() -> None:
    ref = reference("psycopg2-simple")
    cap = read_capture(CAPTURES / "psycopg2-simple.pcap")
    assert isinstance(cap, Capture) and cap.notices == []
    assert [q.sql for q in cap.statements] == ref["sent"]
    first, multi, div0, _do, series = cap.statements
    assert [[show(v) for v in row] for row in first.rows] == ref["rows"][0]
    assert first.columns == ["i", "v", "n", "d", "b", "t", "by"]
    assert isinstance(first.rows[0][3], Decimal) and isinstance(first.rows[0][5], datetime)
    # psycopg2 hands the client the last result of a multi-statement Query
    assert [[show(v) for v in row] for row in multi.results[-1].rows] == ref["rows"][1]
    assert [r.command_tag for r in multi.results] == ["SELECT 1", "SELECT 1"]
    assert div0.error is not None and div0.error["code"] == ref["rows"][2]["error"]
    assert div0.error["message"] == "division by zero" and div0.rows == []
    assert [[show(v) for v in row] for row in series.rows] == ref["rows"][3]
    assert series.row_count == 5 and series.command_tag == "SELECT 5"
    assert all(q.duration is not None and q.duration >= 0 for q in cap.queries)


def test_read_capture_bind_parameters_are_python_values() -> None:
    ref = reference("psycopg-extended")
    cap = read_capture(CAPTURES / "psycopg-extended.pcap")
    executed = [q for q in cap.statements if q.sql == ref["sent"][0]]
    assert executed
    for q in executed:  # the server computed n = $1 + 1, t = $2, z = $3
        (n, t, z), = q.rows
        assert q.parameters == [n - 1, t, z]
        assert [[show(v) for v in row] for row in q.rows] == ref["rows"][0]
    # psycopg prepares before executing: Parse/Describe/Sync without Execute
    assert any(q.kind == "prepare" and q.sql == ref["sent"][0] for q in cap.queries)
    by_id = [q for q in cap.statements if "where id >= $1" in (q.sql or "")]
    assert [q.parameters[0] for q in by_id] == [0, 1, 2]
    assert [[r[0] for r in q.rows] for q in by_id] == [[1, 2], [1, 2], [2]]


def test_read_capture_set_up_and_transaction_control_are_not_statements() -> None:
    ref = reference("orm-demo-psycopg2")
    cap = read_capture(CAPTURES / "orm-demo-psycopg2.pcap")
    assert [q.sql for q in cap.statements] == ref["sent"]
    kinds = {q.sql: q.kind for q in cap.queries}
    assert kinds["BEGIN"] == kinds["ROLLBACK"] == "transaction"
    assert kinds["select pg_catalog.version()"] == kinds["select current_schema()"] == "setup"
    assert all(q.is_transaction_control or q.is_setup or q.kind == "statement"
               for q in cap.queries)
    # every message of the connection, in wire order
    names = [m.name for m in cap.messages]
    assert names[0] == "StartupMessage" and names[-1] == "Terminate"
    assert len(cap.messages) == len(cap.connections[0].messages)


@pytest.mark.parametrize("path", sorted(CAPTURES.glob("*.pcap")), ids=lambda p: p.stem)
def test_read_capture_holds_what_the_pipeline_decodes(path: Path) -> None:
    decoded = decode_frames(open_capture(path), ports=None)
    cap = read_capture(path)
    assert Counter((q.conn, q.sql, q.row_count) for q in cap.queries) == Counter(
        (q.conn, q.sql, q.row_count) for q in decoded.queries)
    starts = [q.started for q in cap.queries]
    assert starts == sorted(starts)  # across connections, in order of their first request
    assert len(cap.messages) == len(decoded.messages)
    assert cap.frames and len(cap.frames) == decoded.frames


def _frames(name: str) -> list[Frame]:
    return list(open_capture(CAPTURES / f"{name}.pcap"))


def _summary(cap: Capture) -> list[tuple[Any, ...]]:
    return [(q.sql, q.kind, q.parameters, q.rows, q.command_tag) for q in cap.queries]


def test_read_capture_tells_hex_dumps_and_pcapng_by_content(tmp_path: Path) -> None:
    expected = _summary(read_capture(CAPTURES / "psycopg2-simple.pcap"))
    frames = _frames("psycopg2-simple")
    # A hex dump (od -Ax -tx1 layout, blocks separated by blank lines)
    dump = "\n\n".join("\n".join(
        f"{off:06x} " + " ".join(f"{b:02x}" for b in f.data[off:off + 16])
        for off in range(0, len(f.data), 16)) for f in frames) + "\n"
    path = tmp_path / "dump.txt"
    path.write_text(dump)
    assert _summary(read_capture(path)) == expected
    assert _summary(read_capture(io.BytesIO(dump.encode()))) == expected
    # pcapng: two link types (Ethernet and raw IP) make write_pcap write pcapng
    mixed = [f if f.no % 2 else Frame(f.no, f.ts, 101, f.data[14:], f.wirelen - 14)
             for f in frames]
    ng = tmp_path / "mixed.pcapng"
    write_pcap(ng, mixed)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert _summary(read_capture(ng)) == expected
    with open(CAPTURES / "psycopg2-simple.pcap", "rb") as fh:
        assert _summary(read_capture(fh)) == expected


def test_read_capture_port_and_bad_input(tmp_path: Path, zeek_dir: Path) -> None:
    other_port = read_capture(zeek_dir / "psql-aws-ssl-disable-15432.pcap")
    assert other_port.queries  # found on port 15432 by the shape of its first messages
    assert read_capture(zeek_dir / "psql-aws-ssl-disable-15432.pcap", port=5432).queries == []
    assert read_capture(zeek_dir / "psql-aws-ssl-disable-15432.pcap", port=[15432]).queries
    tls = read_capture(zeek_dir / "psql-aws-ssl-require.pcap")
    assert tls.queries == [] and any("switched to TLS" in n for n in tls.notices)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02\x03 not a capture")
    with pytest.raises(CaptureError):
        read_capture(junk)
    with pytest.raises(CaptureError, match="cannot read"):
        read_capture(tmp_path / "missing.pcap")


def test_classify_sql() -> None:
    assert classify_sql("  begin isolation level serializable") == "transaction"
    assert classify_sql("/* app */ COMMIT;") == "transaction"
    assert classify_sql('RELEASE SAVEPOINT "_pg3_1"') == "transaction"
    assert classify_sql(";") == "setup"
    assert classify_sql("select pg_catalog.version()") == "setup"
    assert classify_sql("select version()") == "statement"
    assert classify_sql("update t set ended = now()") == "statement"
    assert classify_sql(None) == "other"


def test_package_exports_the_api_function_not_the_subpackage() -> None:
    import pgwire_inspect.capture.sniff  # binds nothing over the function

    assert pgwire_inspect.capture is capture and callable(capture)
    assert pgwire_inspect.read_capture is read_capture
    assert sys.modules["pgwire_inspect.capture"].LiveCapture is LiveCapture


# -- capture() around real traffic -------------------------------------------------------


def test_capture_around_an_orm_query(pg_dsn: str, tmp_path: Path) -> None:
    ensure_demo_data(pg_dsn)
    engine = create_engine(dsn_for(pg_dsn, "psycopg2"))
    try:
        pcap = tmp_path / "orm.pcap"
        with capture(engine, write_pcap=pcap) as cap, Session(engine) as session:
            users = session.scalars(select(User).where(User.id >= 1).order_by(User.id)).all()
        # a new engine's first connection: set-up, then the statement
        [stmt] = cap.statements
        assert stmt.sql is not None and stmt.sql.startswith("SELECT users.id, users.username")
        assert stmt.columns == ["id", "username", "email", "hashed_password"]
        assert [row[:3] for row in stmt.rows] == [(u.id, u.username, u.email) for u in users]
        assert stmt.command_tag == f"SELECT {len(users)}"
        assert {q.kind for q in cap.queries} == {"transaction", "setup", "statement"}
        names = [m.name for m in cap.messages]
        assert names[:3] == ["SSLRequest", "SSLResponse", "StartupMessage"]  # sslmode=prefer
        assert len(cap.connections) == 1 and cap.notices == []
        # the saved pcap holds the same conversation
        again = read_capture(pcap)
        assert _summary(again) == _summary(cap)
        # the pooled connection stays open: later captures need no FIN and hold
        # exactly that connection's BEGIN, statement, ROLLBACK each time
        for i in range(5):
            with capture(engine) as cap, engine.connect() as conn:
                conn.execute(text("select cast(:i as int) as i"), {"i": i}).all()
            assert [q.sql for q in cap.queries] == [
                "BEGIN", f"select cast({i} as int) as i", "ROLLBACK"]
            assert cap.statements[0].rows == [(i,)] and cap.notices == []
    finally:
        engine.dispose()


def test_capture_fills_in_while_the_block_runs(pg_dsn: str) -> None:
    engine = create_engine(dsn_for(pg_dsn, "psycopg"))
    try:
        with capture(engine) as cap, engine.connect() as conn:
            conn.execute(text("select 1 as one")).all()
            deadline = time.time() + 2
            while not any(q.sql == "select 1 as one" for q in cap.queries):
                assert time.time() < deadline, "the query did not show during the block"
                time.sleep(0.01)
            conn.execute(text("select 2 as two")).all()
        assert [q.sql for q in cap.statements] == ["select 1 as one", "select 2 as two"]
    finally:
        engine.dispose()


def test_capture_keeps_the_queries_when_the_block_raises(pg_dsn: str) -> None:
    engine = create_engine(dsn_for(pg_dsn, "psycopg"))
    try:
        with pytest.raises(Exception, match="division by zero"), capture(engine) as cap, \
                engine.connect() as conn:
            conn.execute(text("select cast(:n as int) / 0"), {"n": 7})
        [failed] = cap.statements
        assert failed.error is not None and failed.error["code"] == "22012"
        assert failed.parameters == [7] and failed.protocol == "extended"
        assert failed.rows == [] and failed.command_tag is None
    finally:
        engine.dispose()


def test_capture_with_a_dsn_keeps_every_connection_to_the_server(pg_dsn: str) -> None:
    marker = f"dsn-{uuid.uuid4().hex[:12]}"
    url = make_url(pg_dsn)
    keywords = f"host={url.host} port={url.port or 5432} dbname={url.database} user={url.username}"
    stop = threading.Event()

    def busy_neighbour() -> None:  # never quiet: the capture must settle without silence
        with psycopg.connect(pg_dsn, autocommit=True) as other:
            while not stop.is_set():
                other.execute("select pg_sleep(0.002)")

    neighbour = threading.Thread(target=busy_neighbour)
    neighbour.start()
    try:
        time.sleep(0.05)
        with capture(pg_dsn) as by_url, capture(keywords) as by_keywords, \
                psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"select '{marker}' as m")
    finally:
        stop.set()
        neighbour.join()
    for cap in (by_url, by_keywords):
        [mine] = [q for q in cap.statements if marker in (q.sql or "")]
        assert mine.rows == [(marker,)] and mine.columns == ["m"]
        assert cap.notices == []  # settled: no timeout
        assert {q.conn for q in cap.statements} - {mine.conn}  # the neighbour's queries too


def test_capture_refuses_what_it_cannot_sniff(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CaptureError, match="Unix socket"), capture("postgresql:///postgres"):
        pass
    with pytest.raises(CaptureError, match="Unix socket"), \
            capture("postgresql://postgres@/db?host=/var/run/postgresql"):
        pass
    with pytest.raises(TypeError), capture(5432):
        pass

    def refuse(self: LiveCapture) -> LiveCapture:
        raise CaptureError("live capture needs root or CAP_NET_RAW: Operation not permitted")

    monkeypatch.setattr(LiveCapture, "start", refuse)
    with pytest.raises(CaptureError, match=r"capture\(\) sniffs .*CAP_NET_RAW"), \
            capture("postgresql://postgres@127.0.0.1:5432/postgres"):
        pass


def load_example_app(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example's main.py, imported afresh with DATABASE_URL pointing at the test server."""
    monkeypatch.setenv("DATABASE_URL", dsn_for(pg_dsn, "asyncpg") + "?ssl=disable")
    spec = importlib.util.spec_from_file_location(
        f"example_main_{uuid.uuid4().hex[:8]}", EXAMPLE / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # SQLAlchemy resolves annotations there
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_capture_around_a_fastapi_request(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    ensure_demo_data(prepare_url(pg_dsn, "asyncpg"))
    example = load_example_app(pg_dsn, monkeypatch)
    with TestClient(example.app) as client:
        with capture(example.engine) as first:
            assert client.get("/users/Demo").json()["username"] == "Demo"
        with capture(example.engine) as second:
            assert client.get("/users/alice").json()["username"] == "alice"
    [select_demo] = first.statements
    assert select_demo.parameters == ["Demo"] and select_demo.protocol == "extended"
    assert [m.name for m in select_demo.messages].count("DataRow") == 1
    assert select_demo.rows[0][:2] == (1, "Demo")
    assert any(q.is_setup for q in first.queries)  # the pool's first connection
    # asyncpg reuses the statement it prepared on the pooled connection before
    # this capture: Bind/Execute only, so no SQL text and undecoded values
    [select_alice] = second.statements
    assert select_alice.sql is None and select_alice.statement
    assert select_alice.rows == [(b"\x00\x00\x00\x02", b"alice", b"alice@example.com",
                                  select_alice.rows[0][3])]
    assert [q.sql for q in second.queries if q.is_transaction_control] == ["BEGIN;", "ROLLBACK;"]


def test_capture_an_async_engine_in_a_running_loop(pg_dsn: str) -> None:
    async def run() -> Capture:
        engine = create_async_engine(dsn_for(pg_dsn, "asyncpg"),
                                     connect_args={"ssl": False})
        try:
            with capture(engine) as cap:
                async with engine.connect() as conn:
                    await conn.execute(text("select cast(:x as int) + 1 as y"), {"x": 41})
            return cap
        finally:
            await engine.dispose()

    cap = asyncio.run(run())
    [stmt] = cap.statements
    assert isinstance(stmt, CapturedQuery)
    assert stmt.parameters == [41] and stmt.rows == [(42,)] and stmt.columns == ["y"]
