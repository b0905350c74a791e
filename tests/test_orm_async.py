"""Tests of pgwire_inspect.orm on SQLAlchemy's asyncio extension (asyncpg, psycopg async).

The server comes from ``PGWIRE_TEST_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it cannot be
reached the server tests are skipped, except under ``CI=true`` where they
fail. The demo table ``users`` lives in the default schema; other tables and
types get unique names and are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgwire_inspect.errors import OrmRunError
from pgwire_inspect.orm import (
    DEMO_USERS,
    OrmStep,
    PreparedUrl,
    User,
    callable_program,
    demo_program,
    ensure_demo_data,
    is_async_callable,
    load_callable,
    prepare_url,
    run_orm,
)

DSN = os.environ.get("PGWIRE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ATTRIBUTES = ["id", "username", "email", "hashed_password"]
SELECT_COLUMNS = {key: key for key in ATTRIBUTES}  # select(User)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> PreparedUrl:
    """The test server's asyncpg URL; skip (or fail under CI=true) if unreachable."""
    url = prepare_url(DSN)
    engine = create_engine(url.url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"PostgreSQL at {url.masked} is unreachable: {str(exc).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return prepare_url(DSN, "asyncpg")


@pytest.fixture(scope="module")
def demo(server: PreparedUrl) -> PreparedUrl:
    ensure_demo_data(server)  # through asyncpg, as the CLI does with --driver asyncpg
    return server


@pytest.fixture
def sql(server: PreparedUrl) -> Iterator[Session]:
    """A separate sync session on the test server, for setting up and checking."""
    engine = create_engine(prepare_url(DSN).url, poolclass=NullPool)
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def isolated_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Work in tmp_path with sys.path restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class _Relay:
    """A TCP relay between the client and the server that keeps the frontend bytes."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frontend = bytearray()
        self.client_port: int | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, driver: str, **query: str) -> PreparedUrl:
        relayed = prepare_url(DSN).url.set(host="127.0.0.1", port=self.port, query=query)
        return prepare_url(relayed.render_as_string(hide_password=False), driver)

    def _serve(self) -> None:
        client, peer = self.listener.accept()
        self.client_port = peer[1]
        server = socket.create_connection(self.upstream)
        back = threading.Thread(target=self._pump, args=(server, client, None), daemon=True)
        back.start()
        self._pump(client, server, self.frontend)
        back.join(5)
        client.close()
        server.close()
        self.listener.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        while data := src.recv(65536):
            if keep is not None:
                keep += data
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)

    def startup(self) -> dict[str, str]:
        """The StartupMessage's parameters (no SSLRequest may come before it)."""
        self.thread.join(5)
        data = bytes(self.frontend)
        (length,) = struct.unpack_from("!i", data, 0)
        assert struct.unpack_from("!i", data, 4) == (196608,)  # protocol 3.0
        words = data[8 : length - 1].split(b"\0")[:-1]
        return {k.decode(): v.decode() for k, v in zip(words[::2], words[1::2], strict=True)}

    def messages(self) -> list[tuple[str, bytes]]:
        """Frontend messages after the StartupMessage: (type, body)."""
        self.thread.join(5)
        data = bytes(self.frontend)
        (length,) = struct.unpack_from("!i", data, 0)
        out: list[tuple[str, bytes]] = []
        offset = length
        while offset < len(data):
            kind = chr(data[offset])
            (length,) = struct.unpack_from("!i", data, offset + 1)
            out.append((kind, data[offset + 5 : offset + 1 + length]))
            offset += 1 + length
        return out


def _cstrings(body: bytes, count: int) -> list[str]:
    return [part.decode() for part in body.split(b"\0")[:count]]


def _bind_values(body: bytes) -> tuple[str, list[bytes | None]]:
    """Bind (F): the statement name and the parameter values (PostgreSQL docs, Message Formats)."""
    _portal, name = _cstrings(body, 2)
    offset = len(_portal) + len(name) + 2
    (formats,) = struct.unpack_from("!h", body, offset)
    offset += 2 + 2 * formats
    (count,) = struct.unpack_from("!h", body, offset)
    offset += 2
    values: list[bytes | None] = []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", body, offset)
        offset += 4
        values.append(None if size < 0 else body[offset : offset + size])
        offset += max(size, 0)
    return name, values


# -- prepare_url ----------------------------------------------------------------------


def test_prepare_url_asyncpg() -> None:
    url = prepare_url("postgres://bob:s3cret@db.example:6543/app", "asyncpg")
    assert url.url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.driver) == ("db.example", 6543, "asyncpg")
    assert dict(url.url.query) == {}
    assert url.connect_args == {"ssl": False}
    assert url.masked == "postgresql+asyncpg://bob:***@db.example:6543/app"
    assert url.notices == []
    # The sync drivers keep everything in the URL.
    assert prepare_url("postgres://bob@db.example/app", "psycopg").connect_args == {}


def test_prepare_url_asyncpg_query() -> None:
    url = prepare_url(
        "postgresql+psycopg2://u@h/db?sslmode=require&gssencmode=disable&application_name=x"
        "&options=-csearch_path%3Dfoo&connect_timeout=3&prepared_statement_cache_size=0",
        "asyncpg",
    )
    # asyncpg's own keywords stay in the URL; SQLAlchemy hands them to asyncpg.connect().
    assert dict(url.url.query) == {"prepared_statement_cache_size": "0"}
    assert url.connect_args == {
        "ssl": False,
        "server_settings": {"application_name": "x", "options": "-csearch_path=foo"},
    }
    assert url.notices == [
        "the DSN names driver psycopg2; using asyncpg",
        "the DSN asked for sslmode=require; using ssl=False so the traffic can be decoded",
    ]
    plain = prepare_url("postgresql://u@h/db?ssl=true&gssencmode=require", "asyncpg")
    assert plain.notices == [
        "the DSN asked for ssl=true; using ssl=False so the traffic can be decoded",
        "the DSN asked for gssencmode=require; asyncpg has no GSS encryption, "
        "connecting in plaintext",
    ]
    # Without asyncpg-only keys, the URL is still a libpq URI (for catalog look-ups).
    libpq = prepare_url("postgresql://u@h:5433/db?application_name=x", "asyncpg")
    assert conninfo_to_dict(libpq.url.set(drivername="postgresql").render_as_string()) == {
        "user": "u",
        "host": "h",
        "port": "5433",
        "dbname": "db",
    }


def test_async_steps_need_an_async_driver() -> None:
    async def first(session: AsyncSession) -> Any:
        return await session.get(User, 1)

    assert is_async_callable(first)
    assert not is_async_callable(lambda session: None)
    (step,) = callable_program(first, "mod:first")
    assert (step.code, step.run, step.arun, step.async_only) == (
        "await first(session)",
        None,
        first,
        True,
    )
    url = prepare_url("postgresql://u@127.0.0.1:1/db")
    with pytest.raises(OrmRunError) as info:
        run_orm(url, [step])
    assert str(info.value) == (
        "step 'mod:first' is async and driver psycopg2 has no asyncio mode: use psycopg or asyncpg"
    )
    with pytest.raises(OrmRunError) as info:
        OrmStep("empty", "pass")
    assert str(info.value) == "step 'empty' has neither a sync nor an async form"


# -- connection errors ----------------------------------------------------------------


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_refused_port_raises_quickly(driver: str) -> None:
    port = _free_port()
    url = prepare_url(f"postgresql://postgres@127.0.0.1:{port}/postgres", driver=driver)
    async_program = [OrmStep("get", "await session.get(User, 1)", arun=lambda s: s.get(User, 1))]
    started = time.monotonic()
    with pytest.raises(OrmRunError) as info:
        run_orm(url, async_program, connect_timeout=5)
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert time.monotonic() - started < 2


def test_silent_server_times_out() -> None:
    # The kernel completes the handshake, but nobody answers the StartupMessage.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        url = prepare_url(f"postgresql://postgres@127.0.0.1:{port}/postgres", "asyncpg")
        started = time.monotonic()
        with pytest.raises(OrmRunError) as info:
            run_orm(url, demo_program(), connect_timeout=0.5)
        elapsed = time.monotonic() - started
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: timeout expired"
    assert 0.4 < elapsed < 2


def test_unknown_role(server: PreparedUrl) -> None:
    role = _unique("nobody")
    dsn = server.url.set(drivername="postgresql", username=role)
    url = prepare_url(dsn.render_as_string(hide_password=False), "asyncpg")
    with pytest.raises(OrmRunError) as info:
        run_orm(url, demo_program())
    assert re.fullmatch(
        rf'cannot connect to {url.host}:{url.port}: (role "{role}" does not exist'
        rf'|password authentication failed for user "{role}")',
        str(info.value),
    )


# -- the demo -------------------------------------------------------------------------


def test_demo_run_asyncpg(demo: PreparedUrl, sql: Session) -> None:
    run = run_orm(demo, demo_program())
    assert (run.error, run.driver, run.asyncio) == (None, "asyncpg", True)
    assert [len(s.statements) for s in run.steps] == [1, 0, 1]
    assert [(s.label, s.code) for s in run.steps] == [
        (
            "select with filter: first user named Demo",
            '(await session.execute(select(User).filter(User.username == "Demo")))'
            ".scalars().first()",
        ),
        ("Session.get by primary key", "await session.get(User, 1)"),
        ("2.0 select: all users", "(await session.scalars(select(User).order_by(User.id))).all()"),
    ]
    assert run.setup_statements == [
        "select pg_catalog.version()",
        "select current_schema()",
        "show standard_conforming_strings",
    ]
    assert run.server_version == sql.execute(text("SHOW server_version")).scalar_one()

    by_name, everyone_stmt = run.statements
    assert by_name.statement == (
        "SELECT users.id, users.username, users.email, users.hashed_password \n"
        "FROM users \nWHERE users.username = $1::VARCHAR"
    )
    assert (by_name.wire_sql, by_name.parameters) == (by_name.statement, ("Demo",))
    assert (everyone_stmt.wire_sql, everyone_stmt.parameters) == (everyone_stmt.statement, ())
    for statement in run.statements:
        assert statement.result_columns == ATTRIBUTES
        assert statement.attribute_columns == {"User": SELECT_COLUMNS}
        assert statement.error is None
        assert run.started <= statement.started <= (statement.ended or 0) <= run.ended
    assert by_name.rowcount == 1
    count = sql.execute(text("SELECT count(*) FROM users")).scalar_one()
    assert everyone_stmt.rowcount == count

    first, from_map, everyone = run.steps
    (demo_user,) = first.instances
    assert (demo_user.identity, demo_user.statement, demo_user.from_identity_map) == (
        (1,),
        0,
        False,
    )
    assert demo_user.attributes == dict(zip(ATTRIBUTES, DEMO_USERS[0], strict=True))
    assert demo_user.attribute_types == {"id": "int", **{k: "str" for k in ATTRIBUTES[1:]}}
    assert demo_user.columns == SELECT_COLUMNS
    assert first.result_repr == "User(id=1, username='Demo', email='demo@aa.io')"

    assert from_map.statements == []
    assert from_map.note == "sent nothing: session.get found User(1) in the identity map"
    (again,) = from_map.instances
    assert (again.identity, again.statement, again.from_identity_map) == ((1,), 0, True)

    assert everyone.statements == [1]
    assert len(everyone.instances) == count
    demo_again, alice = everyone.instances[:2]
    assert (demo_again.statement, demo_again.from_identity_map) == (0, True)
    assert (alice.statement, alice.from_identity_map, alice.columns) == (1, False, SELECT_COLUMNS)
    for record in everyone.instances:
        row = sql.execute(select(User.__table__).where(User.id == record.identity[0])).one()
        assert record.attributes == row._asdict()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_on_connect_port_is_the_servers_client_port(server: PreparedUrl, driver: str) -> None:
    async def client_port(session: AsyncSession) -> Any:
        return (await session.execute(text("SELECT inet_client_port()"))).scalar_one()

    calls: list[tuple[int, float]] = []
    program = [OrmStep("client port", "SELECT inet_client_port()", arun=client_port)]
    run = run_orm(
        prepare_url(DSN, driver), program, on_connect=lambda p: calls.append((p, time.time()))
    )
    ((port, called_at),) = calls
    assert (run.error, run.asyncio, run.client_port) == (None, True, port)
    assert run.steps[0].result_repr == str(port)
    assert called_at <= run.statements[0].started


def test_threads_and_running_loops(demo: PreparedUrl) -> None:
    # A thread that has no event loop, and a thread whose loop is running.
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(run_orm(demo, demo_program())))
    thread.start()
    thread.join(10)

    async def inside_a_loop() -> Any:
        return run_orm(demo, demo_program())

    results.append(asyncio.run(inside_a_loop()))
    assert [(r.error, len(r.statements)) for r in results] == [(None, 2), (None, 2)]


def test_sql_error_stops_the_run(server: PreparedUrl) -> None:
    missing = _unique("pgwi_missing")
    ran: list[str] = []

    async def bad(session: AsyncSession) -> Any:
        return (await session.execute(text(f"SELECT * FROM {missing}"))).all()

    program = [
        OrmStep("ok", "SELECT 1", lambda session: session.execute(text("SELECT 1")).scalar_one()),
        OrmStep("bad", f"SELECT * FROM {missing}", arun=bad),
        OrmStep("never", "", lambda session: ran.append("never")),
    ]
    run = run_orm(server, program)
    message = f'relation "{missing}" does not exist'
    assert (len(run.steps), ran, run.error) == (2, [], message)
    assert (run.steps[0].error, run.steps[0].result_repr) == (None, "1")
    failed = run.steps[1]
    assert (failed.error, failed.statements, failed.result_repr) == (message, [1], "")
    assert (run.statements[1].error, run.statements[1].wire_sql) == (
        message,
        f"SELECT * FROM {missing}",
    )
    assert run.statements[1].ended is not None
    # An exception in Python code ends the run the same way.
    run = run_orm(server, [OrmStep("boom", "1 / 0", lambda session: 1 / 0)])
    assert run.steps[0].error == "ZeroDivisionError: division by zero"
    assert (run.steps[0].statements, run.steps[0].note) == ([], None)


def test_server_settings_reach_the_server(server: PreparedUrl, sql: Session) -> None:
    schema = _unique("pgwi_schema")
    sql.execute(text(f"CREATE SCHEMA {schema}"))
    sql.commit()
    try:
        dsn = prepare_url(DSN).url.set(
            drivername="postgresql",
            query={"options": f"-csearch_path={schema}", "application_name": "pgwi-async"},
        )
        url = prepare_url(dsn.render_as_string(hide_password=False), "asyncpg")
        ensure_demo_data(url)  # lands in the new schema, first on the search path

        async def where(session: AsyncSession) -> Any:
            query = text("SELECT current_schema(), current_setting('application_name')")
            return tuple((await session.execute(query)).one())

        run = run_orm(url, [OrmStep("where", "SELECT ...", arun=where)])
        assert run.steps[0].result_repr == repr((schema, "pgwi-async"))
        users = sql.execute(text(f"SELECT id, username FROM {schema}.users ORDER BY id")).all()
        assert [tuple(u) for u in users] == [(u[0], u[1]) for u in DEMO_USERS]
    finally:
        sql.rollback()
        sql.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        sql.commit()


# -- a user's module ------------------------------------------------------------------

USER_MODULE = """
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

class Base(DeclarativeBase):
    pass

class Author(Base):
    __tablename__ = "{authors}"
    id: Mapped[int] = mapped_column(primary_key=True)
    full_name: Mapped[str] = mapped_column("name", String(40))
    books: Mapped[list["Book"]] = relationship(order_by="Book.id")

class Book(Base):
    __tablename__ = "{books}"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("{authors}.id"))
    title: Mapped[str] = mapped_column(String(80))

async def first_author(session):
    stmt = select(Author).options(selectinload(Author.books)).order_by(Author.id)
    return (await session.scalars(stmt)).first()

async def streamed(session):
    return await session.stream_scalars(select(Book).order_by(Book.id))

def lazy_books(session):
    author = session.get(Author, 1)
    return [book.title for book in author.books]  # a lazy load: SQL inside run_sync
"""


@pytest.fixture
def user_module(server: PreparedUrl, isolated_path: Path) -> Iterator[str]:
    name = _unique("pgwi_async_queries")
    authors, books = _unique("pgwi_author"), _unique("pgwi_book")
    (isolated_path / f"{name}.py").write_text(
        textwrap.dedent(USER_MODULE).format(authors=authors, books=books)
    )
    load_callable(f"{name}:first_author")
    module = sys.modules[name]
    engine = create_engine(prepare_url(DSN).url, poolclass=NullPool)
    module.Base.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            shelf = [module.Book(id=10, title="Alpha"), module.Book(id=11, title="Beta")]
            session.add(module.Author(id=1, full_name="Ann", books=shelf))
            session.commit()
        yield name
    finally:
        module.Base.metadata.drop_all(engine)
        engine.dispose()
        sys.modules.pop(name, None)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_async_user_callable(user_module: str, driver: str) -> None:
    spec = f"{user_module}:first_author"
    run = run_orm(prepare_url(DSN, driver), callable_program(load_callable(spec), spec))
    assert (run.error, run.asyncio, run.driver) == (None, True, driver)
    (step,) = run.steps
    assert (step.label, step.code, step.statements) == (spec, "await first_author(session)", [0, 1])
    authors, books = run.statements
    assert authors.attribute_columns == {"Author": {"id": "id", "full_name": "name"}}
    assert books.attribute_columns["Book"] == {
        "id": "id",
        "author_id": "author_id",
        "title": "title",
    }
    author, alpha, beta = step.instances
    assert (author.class_name, author.returned, author.statement) == ("Author", True, 0)
    assert author.attributes == {"id": 1, "full_name": "Ann"}
    assert [(b.attributes["title"], b.returned, b.statement) for b in (alpha, beta)] == [
        ("Alpha", False, 1),
        ("Beta", False, 1),
    ]
    if driver == "asyncpg":
        assert books.parameters == (1,)
        assert books.wire_sql == books.statement
    # An AsyncResult (session.stream) is fetched like a Result.
    spec = f"{user_module}:streamed"
    run = run_orm(prepare_url(DSN, driver), callable_program(load_callable(spec), spec))
    assert run.error is None
    assert [(i.identity, i.returned) for i in run.steps[0].instances] == [
        ((10,), True),
        ((11,), True),
    ]


def test_sync_user_callable_under_asyncpg(server: PreparedUrl, user_module: str) -> None:
    spec = f"{user_module}:lazy_books"
    run = run_orm(server, callable_program(load_callable(spec), spec))
    assert (run.error, run.asyncio) == (None, True)
    (step,) = run.steps
    assert step.code == "lazy_books(session)"
    assert step.result_repr == "['Alpha', 'Beta']"
    get_author, lazy_load = run.statements
    assert get_author.parameters == (1,)
    assert lazy_load.parameters == (1,)
    assert "WHERE $1::INTEGER = " in lazy_load.statement
    assert [(i.class_name, i.identity, i.statement, i.returned) for i in step.instances] == [
        ("Author", (1,), 0, False),
        ("Book", (10,), 1, False),
        ("Book", (11,), 1, False),
    ]


# -- what reaches the wire ------------------------------------------------------------

STATEMENT_NAME = re.compile(r"__asyncpg_stmt_[0-9a-f]+__")


def test_asyncpg_wire_matches_the_record(demo: PreparedUrl) -> None:
    relay = _Relay(demo.host, demo.port)
    run = run_orm(relay.url("asyncpg"), demo_program())
    assert run.error is None
    assert run.client_port == relay.client_port
    startup = relay.startup()
    assert startup["client_encoding"] == "'utf-8'"
    messages = relay.messages()
    assert messages[-1] == ("X", b"")  # Terminate: the connection was closed

    parses = {
        index: _cstrings(body, 2) for index, (kind, body) in enumerate(messages) if kind == "P"
    }
    for name, _ in parses.values():
        assert STATEMENT_NAME.fullmatch(name)
    queries = [body[:-1].decode() for kind, body in messages if kind == "Q"]
    assert queries == ["BEGIN;", "ROLLBACK;", "BEGIN;", "ROLLBACK;"]
    # Every recorded statement is the query of one Parse, in order; the others are
    # the dialect's set-up.
    parsed = [query for _, query in parses.values()]
    recorded = [s.wire_sql for s in run.statements]
    assert [q for q in parsed if q in recorded] == recorded
    others = [q for q in parsed if q not in recorded]
    assert sorted(others) == sorted([*run.setup_statements, "show transaction isolation level"])
    # Each statement: Parse, Describe, Flush, then Bind (values), Execute, Sync.
    kinds = "".join(kind for kind, _ in messages)
    positions = [i for i, (_, query) in parses.items() if query in recorded]
    for position, statement in zip(positions, run.statements, strict=True):
        assert kinds[position : position + 6] == "PDHBES"
        name, values = _bind_values(messages[position + 3][1])
        assert name == parses[position][0]
        assert values == [str(v).encode() for v in statement.parameters]
    # Step 2 (session.get) sent nothing: the second statement follows the first's Sync.
    assert positions[1] == positions[0] + 6


def test_asyncpg_type_introspection_sends_what_no_event_sees(
    server: PreparedUrl, sql: Session
) -> None:
    mood = _unique("pgwi_mood")
    sql.execute(text(f"CREATE TYPE {mood} AS ENUM ('ok', 'sad')"))
    sql.commit()
    try:

        async def moods(session: AsyncSession) -> Any:
            first = (await session.execute(text(f"SELECT 'ok'::{mood}"))).scalar_one()
            second = (await session.execute(text(f"SELECT 'sad'::{mood}"))).scalar_one()
            return first, second

        relay = _Relay(server.host, server.port)
        run = run_orm(relay.url("asyncpg"), [OrmStep("moods", "...", arun=moods)])
        assert run.steps[0].result_repr == "('ok', 'sad')"
        messages = relay.messages()
    finally:
        sql.execute(text(f"DROP TYPE {mood}"))
        sql.commit()
    parsed = [(i, _cstrings(body, 2)[1]) for i, (kind, body) in enumerate(messages) if kind == "P"]
    first = next(i for i, query in parsed if query == run.statements[0].wire_sql)
    second = next(i for i, query in parsed if query == run.statements[1].wire_sql)
    between = [query.strip() for i, query in parsed if first < i < second]
    # The first use of the enum: asyncpg turns JIT off, reads pg_type, turns JIT back
    # on, all between the statement's Parse/Describe/Flush and its Bind.
    assert [q.split("\n")[0] for q in between] == [
        "SELECT",
        "WITH RECURSIVE typeinfo_tree(",
        "SELECT",
    ]
    assert "set_config('jit', 'off', false)" in between[0]
    assert between[2] == "SELECT\n                    set_config('jit', $1, false)"
    assert messages[first + 3][0] == "P"  # Flush, then the introspection's Parse
    assert "".join(kind for kind, _ in messages[second : second + 6]) == "PDHBES"
    assert len(run.statements) == 2  # no event saw the introspection
