"""Replay: a server that answers with a capture's recorded bytes, and the `replay` command.

Every test here except the asyncpg recording runs with the test server made
unreachable (`no_server`): the drivers only ever talk to the replay server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import psycopg2
import pytest
from click.testing import CliRunner

from pgwire_inspect.capture import open_capture
from pgwire_inspect.cli import cli
from pgwire_inspect.cli_more import register
from pgwire_inspect.conversation import Connection
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.linking import link_run
from pgwire_inspect.live import run_live
from pgwire_inspect.orm import demo_program, prepare_url
from pgwire_inspect.protocol import (
    NEED_DATA,
    Bind,
    ErrorResponse,
    Message,
    Parse,
    ReadyForQuery,
    SessionState,
    StreamParser,
)
from pgwire_inspect.replay import (
    DIVERGENCE_MESSAGE,
    Recording,
    ReplayServer,
    ReplaySession,
    guess_driver,
    load_recording,
)

CAPTURES = Path(__file__).resolve().parent.parent / "captures"

# ---------------------------------------------------------------- helpers


def msg(type_code: bytes, body: bytes = b"") -> bytes:
    """A frontend message: type byte, length, body (PostgreSQL docs, Message Formats)."""
    return type_code + struct.pack("!i", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def startup(**params: str) -> bytes:
    body = struct.pack("!i", 3 << 16) + b"".join(cstr(k) + cstr(v) for k, v in params.items())
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def query(sql: str) -> bytes:
    return msg(b"Q", cstr(sql))


def parse(name: str, sql: str, types: tuple[int, ...] = ()) -> bytes:
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!h", len(types))
               + b"".join(struct.pack("!I", t) for t in types))


def bind(statement: str, recorded: Bind) -> bytes:
    """A Bind like ``recorded`` (same formats and values) for another statement name."""
    body = cstr("") + cstr(statement) + struct.pack("!h", len(recorded.parameter_formats))
    body += b"".join(struct.pack("!h", f) for f in recorded.parameter_formats)
    body += struct.pack("!h", len(recorded.parameters))
    for value in recorded.parameters:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack("!h", len(recorded.result_formats))
    body += b"".join(struct.pack("!h", f) for f in recorded.result_formats)
    return msg(b"B", body)


DESCRIBE_PORTAL = msg(b"D", b"P" + cstr(""))
EXECUTE = msg(b"E", cstr("") + struct.pack("!i", 0))
SYNC = msg(b"S")
FLUSH = msg(b"H")
TERMINATE = msg(b"X")


def backend_messages(data: bytes, whole: bool = True) -> list[Message]:
    """The backend messages in ``data`` (``whole``: and nothing else)."""
    parser = StreamParser("B", SessionState())
    parser.receive_data(data)
    out = []
    while (m := parser.next_message()) is not NEED_DATA:
        assert isinstance(m, Message)
        out.append(m)
    assert parser.buffered == 0 or not whole
    return out


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def recv_until_ready(sock: socket.socket) -> bytes:
    """Bytes up to and including the next ReadyForQuery."""
    data = b""
    while not any(isinstance(m, ReadyForQuery) for m in backend_messages(data, whole=False)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed before ReadyForQuery"
        data += chunk
    return data


def assert_nothing_more(sock: socket.socket) -> None:
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(5)


def raw(wms: list[Any]) -> bytes:
    return b"".join(w.message.raw for w in wms)


def recorded(name: str) -> Connection:
    return load_recording(CAPTURES / name)[1]


def instances_as_text(linked: Any) -> list[dict[str, Any]]:
    """What the capture's .json holds: the instances built from rows (not the identity map)."""
    return [{"class": li.instance.class_name, "identity": list(li.instance.identity),
             "attributes": {k: str(v) for k, v in li.instance.attributes.items()}}
            for li in linked.instances if li.row is not None and li.row.built]


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Make every configured server a closed port (bound, not listening: refused)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        monkeypatch.setenv("PGWIRE_TEST_DSN", dsn)
        monkeypatch.setenv("DATABASE_URL", dsn)
        monkeypatch.setenv("PGHOST", "127.0.0.1")
        monkeypatch.setenv("PGPORT", str(port))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        yield port


def group() -> click.Group:
    g = click.Group("pgwire-inspect", callback=cli.callback, params=cli.params,
                    commands=dict(cli.commands))
    register(g)
    return g


def invoke(args: list[str]) -> Any:
    return CliRunner(env={"COLUMNS": "200"}).invoke(group(), ["--no-color", *args],
                                                    catch_exceptions=False)


# ---------------------------------------------------------------- the server, raw


def test_raw_socket_gets_exactly_the_recorded_bytes(no_server: int) -> None:
    conn = recorded("orm-demo-psycopg2.pcap")
    startup_bytes = b"".join(w.message.raw for w in conn.startup if w.direction == "B")
    begin, hstore = conn.queries[0], conn.queries[1]
    with ReplayServer(conn) as server, socket.create_connection(("127.0.0.1", server.port),
                                                                timeout=5) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert recv_exactly(s, 1) == b"N"
        s.sendall(startup(user="postgres", database="postgres"))
        assert recv_exactly(s, len(startup_bytes)) == startup_bytes
        assert_nothing_more(s)
        s.sendall(query("BEGIN"))
        assert recv_exactly(s, len(raw(begin.responses))) == raw(begin.responses)
        # The same text with other whitespace gets the recorded answer.
        assert hstore.sql is not None
        s.sendall(query("  " + "\n\t ".join(hstore.sql.split()) + " "))
        assert recv_exactly(s, len(raw(hstore.responses))) == raw(hstore.responses)
        assert_nothing_more(s)
        s.sendall(query("select 42"))
        error, ready = backend_messages(recv_until_ready(s))
        assert isinstance(error, ErrorResponse) and isinstance(ready, ReadyForQuery)
        assert error.fields()["code"] == "08P01" and error.fields()["severity"] == "ERROR"
        assert error.fields()["message"] == DIVERGENCE_MESSAGE
        assert error.fields()["detail"] == "Query: select 42"
        assert ready.status == "E"  # an error inside the recorded transaction block
        s.sendall(TERMINATE)
        assert s.recv(1) == b""
    (d,) = server.divergences
    assert d.request == "Query" and d.sql == "select 42"
    assert d.expected is not None and d.expected.sql == "ROLLBACK" and d.expected.index == 2


@pytest.mark.parametrize("name", ["auth-scram", "auth-md5", "auth-password"])
def test_login_needs_no_password(no_server: int, name: str) -> None:
    info = json.loads((CAPTURES / f"{name}.json").read_text())
    conn = recorded(f"{name}.pcap")
    recorded_auth = [w.name for w in conn.startup if w.name.startswith("Authentication")]
    assert len(recorded_auth) >= 2  # a password was asked for, then AuthenticationOk
    with ReplayServer(conn) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(startup(user=info["user"], database="postgres"))
            answer = backend_messages(recv_until_ready(s))
        assert [m.name for m in answer if m.name.startswith("Authentication")] == [
            "AuthenticationOk"]
        kept = [w.message.raw for w in conn.startup
                if w.direction == "B" and not w.name.startswith("Authentication")]
        assert [m.raw for m in answer[1:]] == kept
        c = psycopg2.connect(host="127.0.0.1", port=server.port, user=info["user"],
                             dbname="postgres", sslmode="disable")  # no password
        try:
            cur = c.cursor()
            sql = conn.queries[-1].sql
            cur.execute(sql)
            assert [[str(v) for v in row] for row in cur.fetchall()] == info["rows"]
        finally:
            c.close()
    assert server.divergences == []


def test_flush_answers_the_requests_received_so_far(no_server: int) -> None:
    conn = recorded("orm-demo-psycopg.pcap")
    q = conn.queries[10]  # Parse/Bind/Describe/Execute/Sync of the filter query
    by_name = {w.name: w.message for w in q.requests}
    p, b = by_name["Parse"], by_name["Bind"]
    assert isinstance(p, Parse) and isinstance(b, Bind)
    session = ReplaySession(Recording(conn))
    session.receive_data(startup(user="postgres", database="postgres"))
    for earlier in conn.queries[:10]:
        for w in earlier.requests:
            session.receive_data(w.message.raw)
    # A statement name the recording never used: matched by the query text.
    got = session.receive_data(parse("renamed_7", p.query, p.parameter_types))
    assert got == b""  # nothing before Flush
    got = session.receive_data(FLUSH)
    assert got == raw([w for w in q.responses if w.name == "ParseComplete"])
    rest = session.receive_data(bind("renamed_7", b) + DESCRIBE_PORTAL + EXECUTE + SYNC)
    assert rest == raw([w for w in q.responses if w.name != "ParseComplete"])
    assert session.divergences == [] and 10 in session.used


def test_extended_query_without_answer_errors_once_then_ready(no_server: int) -> None:
    conn = recorded("orm-demo-psycopg.pcap")
    session = ReplaySession(Recording(conn), number=3)
    session.receive_data(startup(user="postgres", database="postgres"))
    out = session.receive_data(parse("", "select $1::int", (23,)) + msg(
        b"B", cstr("") + cstr("") + struct.pack("!hhi", 0, 1, 1) + b"7" + struct.pack("!h", 0))
        + EXECUTE + SYNC)
    error, ready = backend_messages(out)
    assert isinstance(error, ErrorResponse) and error.fields()["code"] == "08P01"
    assert error.fields()["detail"] == "Parse: select $1::int"
    assert isinstance(ready, ReadyForQuery) and ready.status == "I"
    (d,) = session.divergences
    assert (d.session, d.request, d.kind, d.sql, d.parameters) == (
        3, "Parse", "extended", "select $1::int", (b"7",))
    assert d.expected is not None and d.expected.index == 0  # BEGIN comes first


def test_bind_parameters_and_formats_pick_the_recorded_execution(no_server: int) -> None:
    """psycopg 3 with prepared statements, in another order than recorded."""
    info = json.loads((CAPTURES / "psycopg-extended.json").read_text())
    expected = info["rows"]  # text, binary, then k = 0, 1, 2

    def show(rows: list[tuple[Any, ...]]) -> list[list[str | None]]:
        return [[None if v is None else str(v) for v in r] for r in rows]

    with ReplayServer(recorded("psycopg-extended.pcap")) as server:
        got: dict[str, Any] = {}
        with psycopg.connect(server.dsn(), sslmode="disable", autocommit=True) as c:
            for binary in (True, False):  # recorded: text first
                cur = c.cursor(binary=binary)
                cur.execute("select %s::int4 + 1 as n, %s::text as t, %s::int8 as z",
                            (41, "héllo", None), prepare=True)
                got[f"binary={binary}"] = show(cur.fetchall())
            cur = c.cursor(binary=True)
            for k in (2, 0, 1):  # recorded: 0, 1, 2
                cur.execute("select id, username from users where id >= %s order by id", (k,),
                            prepare=True)
                got[f"k={k}"] = show(cur.fetchall())
    assert got == {"binary=False": expected[0], "binary=True": expected[1],
                   "k=0": expected[2], "k=1": expected[3], "k=2": expected[4]}
    assert server.divergences == [] and server.sessions[0].unused() == []


def test_asyncpg_cursor_with_flush_and_portal_executes(no_server: int) -> None:
    import asyncpg

    info = json.loads((CAPTURES / "asyncpg-cursor.json").read_text())
    with ReplayServer(recorded("asyncpg-cursor.pcap")) as server:
        async def run() -> list[int]:
            c = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres",
                                      database="postgres", ssl=False)
            try:
                async with c.transaction():
                    return [r[0] async for r in c.cursor("select generate_series(1,50)",
                                                         prefetch=info["prefetch"])]
            finally:
                await c.close()

        assert asyncio.run(run()) == info["rows"]
    assert server.divergences == [] and server.sessions[0].unused() == []


def test_guess_driver() -> None:
    assert guess_driver(recorded("orm-demo-psycopg2.pcap")) == "psycopg2"
    assert guess_driver(recorded("orm-demo-psycopg.pcap")) == "psycopg"
    assert guess_driver(recorded("asyncpg-cursor.pcap")) == "asyncpg"


def test_load_recording_picks_the_busiest_connection() -> None:
    decoded, conn = load_recording(CAPTURES / "pgbench-prepared.pcap")
    assert len(decoded.connections) > 1
    assert len(conn.queries) == max(len(c.queries) for c in decoded.connections)
    with pytest.raises(CaptureError, match="has no connection 99"):
        load_recording(CAPTURES / "pgbench-prepared.pcap", 99)


# ---------------------------------------------------------------- ORM instances


def check_replayed_demo(result: Any, server: ReplayServer, json_name: str) -> None:
    info = json.loads((CAPTURES / json_name).read_text())
    assert result.run is not None and result.connection is not None
    assert result.connection.server[1] == server.port
    assert all(s.error is None for s in result.run.steps)
    linked = link_run(result.run, result.connection)
    assert instances_as_text(linked) == info["instances"]
    # The rows SQLAlchemy got are the recorded bytes.
    played = [w.message.raw for w in result.connection.messages if w.name == "DataRow"]
    recorded_rows = [w.message.raw for w in server.recording.connection.messages
                     if w.name == "DataRow"]
    assert played == recorded_rows
    assert server.divergences == [] and server.sessions[0].unused() == []


def test_replay_psycopg2_demo_builds_the_recorded_instances(no_server: int) -> None:
    with ReplayServer(recorded("orm-demo-psycopg2.pcap")) as server:
        url = prepare_url(server.dsn(), "psycopg2")
        result = run_live(url, demo_program(), capture="relay", connect_timeout=5)
    check_replayed_demo(result, server, "orm-demo-psycopg2.json")


def test_replay_command_psycopg_demo_jsonl(no_server: int) -> None:
    info = json.loads((CAPTURES / "orm-demo-psycopg.json").read_text())
    result = invoke(["replay", str(CAPTURES / "orm-demo-psycopg.pcap"), "--demo",
                     "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    objs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    built = [{"class": o["class"], "identity": o["identity"],
              "attributes": {k: str(v) for k, v in o["attributes"].items()}}
             for o in objs if o["type"] == "OrmInstance"]
    assert built == info["instances"]
    assert not any(o["type"] == "ReplayDivergence" for o in objs)
    assert "with psycopg; no database is involved" in result.stderr
    names = [o["type"] for o in objs]
    assert names[0] == "StartupMessage" and "Bind" in names
    assert names.count("DataRow") == 7  # 4 of SQLAlchemy's set-up queries, 3 of the demo


@pytest.fixture(scope="module")
def asyncpg_capture(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh recording of the demo with asyncpg (needs the test server)."""
    from pgwire_inspect.capture import write_pcap
    from pgwire_inspect.orm import ensure_demo_data

    url = prepare_url(pg_dsn, "asyncpg")
    ensure_demo_data(url)
    result = run_live(url, demo_program(), capture="relay")
    assert result.run is not None and result.connection is not None
    path = tmp_path_factory.mktemp("asyncpg") / "orm-demo-asyncpg.pcap"
    write_pcap(path, result.frames)
    linked = link_run(result.run, result.connection)
    path.with_suffix(".json").write_text(json.dumps({"instances": instances_as_text(linked)}))
    return path


def test_replay_asyncpg_demo(asyncpg_capture: Path, no_server: int) -> None:
    conn = load_recording(asyncpg_capture)[1]
    assert guess_driver(conn) == "asyncpg"
    with ReplayServer(conn) as server:
        url = prepare_url(server.dsn(), "asyncpg")
        result = run_live(url, demo_program(), capture="relay", connect_timeout=5)
    info = json.loads(asyncpg_capture.with_suffix(".json").read_text())
    assert len(info["instances"]) == 2
    assert result.run is not None and result.connection is not None
    assert instances_as_text(link_run(result.run, result.connection)) == info["instances"]
    assert server.divergences == [] and server.sessions[0].unused() == []

    def names(c: Connection) -> list[str]:
        return [w.message.statement for w in c.messages if isinstance(w.message, Parse)]

    # asyncpg numbers its statements per process: the names differ, the texts match.
    assert names(result.connection) and names(result.connection) != names(conn)


# ---------------------------------------------------------------- divergence


def test_function_with_an_unrecorded_query_gets_08p01_and_the_report(
        no_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"extra_query_{time.monotonic_ns()}"
    (tmp_path / f"{module}.py").write_text(
        "from sqlalchemy import select, text\n"
        "from pgwire_inspect.orm import User\n\n"
        "def load(session):\n"
        "    users = session.scalars(select(User).order_by(User.id)).all()\n"
        "    session.execute(text('select 42'))\n"
        "    return users\n")
    monkeypatch.chdir(tmp_path)
    result = invoke(["replay", str(CAPTURES / "orm-demo-psycopg2.pcap"),
                     "--query", f"{module}:load"])
    assert result.exit_code == 1
    assert "ErrorResponse ERROR 08P01" in result.stdout
    assert DIVERGENCE_MESSAGE in result.stdout
    report = result.stderr
    assert "replay diverged: 1 request(s)" in report
    assert ("connection 0: Query of 'select 42' has no recorded answer; the recording had "
            "next: query 12 (simple): ROLLBACK") in report
    assert "error: the run diverged from the recording" in report
    assert "Traceback" not in result.output


def test_replay_command_input_errors(no_server: int) -> None:
    capture = str(CAPTURES / "orm-demo-psycopg2.pcap")
    neither = invoke(["replay", capture])
    assert neither.exit_code == 2 and "either --query MODULE:FUNCTION or --demo" in neither.output
    both = invoke(["replay", capture, "--demo", "--query", "m:f"])
    assert both.exit_code == 2
    missing = invoke(["replay", capture, "--demo", "--conn", "5"])
    assert missing.exit_code == 2 and "has no connection 5" in missing.stderr
    text = invoke(["replay", "--help"]).output
    assert "Example" in text and "--conn" in text


def test_other_bind_values_are_answered_and_noted(no_server: int) -> None:
    conn = recorded("orm-demo-psycopg.pcap")
    q = conn.queries[10]
    by_name = {w.name: w.message for w in q.requests}
    p, b = by_name["Parse"], by_name["Bind"]
    assert isinstance(p, Parse) and isinstance(b, Bind)
    assert b.parameters[0] == b"Demo"
    session = ReplaySession(Recording(conn))
    session.receive_data(startup(user="postgres", database="postgres"))
    for earlier in conn.queries[:10]:
        for w in earlier.requests:
            session.receive_data(w.message.raw)
    other = dataclasses.replace(b, parameters=(b"alice", *b.parameters[1:]))
    out = session.receive_data(parse("", p.query, p.parameter_types) + bind("", other)
                               + DESCRIBE_PORTAL + EXECUTE + SYNC)
    assert out == raw(q.responses)  # the only recorded execution of the text
    (m,) = session.mismatches
    assert m.recorded.index == 10 and m.parameters == (b"alice", b"\x00\x01")
    assert m.describe().endswith("with parameters ('alice', '\\x00\\x01') was answered with "
                                 "the recording of query 10, whose parameters were ('Demo', "
                                 "'\\x00\\x01')")
    assert session.divergences == []


def test_connection_captured_without_its_startup_cannot_be_replayed() -> None:
    frames = list(open_capture(CAPTURES / "orm-demo-psycopg2.pcap"))
    first_query = next(i for i, f in enumerate(frames) if b"BEGIN" in f.data)
    decoded = decode_frames(frames[first_query:], ports=None)
    (conn,) = decoded.connections
    assert conn.queries and not any(w.name == "StartupMessage" for w in conn.startup)
    with pytest.raises(CaptureError, match="captured without its startup"):
        ReplayServer(conn)
