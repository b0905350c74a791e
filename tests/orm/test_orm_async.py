"""Tests of pgwire_inspect.orm on SQLAlchemy's asyncio extension (asyncpg, psycopg async).

The server comes from ``PGWIRE_TEST_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it cannot be
reached the server tests are skipped, except under ``CI=true`` where they
fail. The demo table ``users`` lives in the default schema; other tables and
types get unique names and are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

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
    prepare_url,
    run_orm,
)
from tests.orm.support import (
    ATTRIBUTES,
    DSN,
    SELECT_COLUMNS,
    free_port,
    unique,
)


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
    port = free_port()
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


def test_unknown_role(async_server: PreparedUrl) -> None:
    role = unique("nobody")
    dsn = async_server.url.set(drivername="postgresql", username=role)
    url = prepare_url(dsn.render_as_string(hide_password=False), "asyncpg")
    with pytest.raises(OrmRunError) as info:
        run_orm(url, demo_program())
    assert re.fullmatch(
        rf'cannot connect to {url.host}:{url.port}: (role "{role}" does not exist'
        rf'|password authentication failed for user "{role}")',
        str(info.value),
    )


# -- the demo -------------------------------------------------------------------------


def test_demo_run_asyncpg(async_demo: PreparedUrl, sql: Session) -> None:
    run = run_orm(async_demo, demo_program())
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
def test_on_connect_port_is_the_servers_client_port(async_server: PreparedUrl, driver: str) -> None:
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


def test_threads_and_running_loops(async_demo: PreparedUrl) -> None:
    # A thread that has no event loop, and a thread whose loop is running.
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(run_orm(async_demo, demo_program())))
    thread.start()
    thread.join(10)

    async def inside_a_loop() -> Any:
        return run_orm(async_demo, demo_program())

    results.append(asyncio.run(inside_a_loop()))
    assert [(r.error, len(r.statements)) for r in results] == [(None, 2), (None, 2)]


def test_sql_error_stops_the_run(async_server: PreparedUrl) -> None:
    missing = unique("pgwi_missing")
    ran: list[str] = []

    async def bad(session: AsyncSession) -> Any:
        return (await session.execute(text(f"SELECT * FROM {missing}"))).all()

    program = [
        OrmStep("ok", "SELECT 1", lambda session: session.execute(text("SELECT 1")).scalar_one()),
        OrmStep("bad", f"SELECT * FROM {missing}", arun=bad),
        OrmStep("never", "", lambda session: ran.append("never")),
    ]
    run = run_orm(async_server, program)
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
    run = run_orm(async_server, [OrmStep("boom", "1 / 0", lambda session: 1 / 0)])
    assert run.steps[0].error == "ZeroDivisionError: division by zero"
    assert (run.steps[0].statements, run.steps[0].note) == ([], None)


def test_server_settings_reach_the_server(async_server: PreparedUrl, sql: Session) -> None:
    schema = unique("pgwi_schema")
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


