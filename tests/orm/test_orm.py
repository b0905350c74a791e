"""Tests of pgwire_inspect.orm against a real PostgreSQL server.

The server comes from ``PGWIRE_TEST_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it cannot be
reached the server tests are skipped, except under ``CI=true`` where they
fail. The demo table ``users`` lives in the default schema; other tables get
unique names and are dropped afterwards.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
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
    load_callable,
    prepare_url,
    run_orm,
)
from tests.orm.support import (
    ATTRIBUTES,
    DRIVERS,
    DSN,
    LEGACY_COLUMNS,
    SELECT_COLUMNS,
    free_port,
    unique,
)

# -- prepare_url ----------------------------------------------------------------------


def test_prepare_url_forces_driver_tcp_and_plaintext() -> None:
    url = prepare_url("postgres://bob:s3cret@db.example:6543/app")
    assert url.url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.driver) == ("db.example", 6543, "psycopg2")
    assert url.url.query["sslmode"] == "disable"
    assert url.url.query["gssencmode"] == "disable"
    assert url.masked == (
        "postgresql+psycopg2://bob:***@db.example:6543/app?gssencmode=disable&sslmode=disable"
    )
    assert "s3cret" not in str(url)
    assert url.notices == []


def test_prepare_url_defaults() -> None:
    url = prepare_url("postgresql://postgres@localhost/postgres", driver="psycopg")
    assert url.url.drivername == "postgresql+psycopg"
    assert (url.host, url.port) == ("localhost", 5432)
    nohost = prepare_url("postgresql:///postgres")
    assert (nohost.host, nohost.port) == ("127.0.0.1", 5432)
    assert nohost.notices == [
        "the DSN names no host (libpq would use a Unix socket); connecting over TCP to 127.0.0.1"
    ]


def test_prepare_url_notices() -> None:
    url = prepare_url("postgresql+psycopg://u@h/db?sslmode=require&application_name=x")
    assert url.url.query == {
        "application_name": "x",
        "gssencmode": "disable",
        "sslmode": "disable",
    }
    assert url.notices == [
        "the DSN names driver psycopg; using psycopg2",
        "the DSN asked for sslmode=require; using sslmode=disable so the traffic can be decoded",
    ]
    sock = prepare_url("postgresql://u@/db?host=/var/run/postgresql&port=5433")
    assert (sock.host, sock.port) == ("127.0.0.1", 5433)
    assert "host" not in sock.url.query
    assert sock.notices == [
        "the DSN names a Unix socket (/var/run/postgresql); "
        "connecting over TCP to 127.0.0.1 instead"
    ]


FORM = "expected postgresql://user:password@host:port/dbname"
BAD_URLS = [
    (
        "postgresql://u@h/db",
        "pg8000",
        "unknown driver 'pg8000': expected one of psycopg2, psycopg, asyncpg",
    ),
    ("mysql://u:pw@h/db", "psycopg2", f"not a PostgreSQL DSN: mysql://u:***@h/db: {FORM}"),
    ("host=h dbname=db", "psycopg2", f"cannot parse DSN 'host=h dbname=db': {FORM}"),
]


@pytest.mark.parametrize(("dsn", "driver", "message"), BAD_URLS)
def test_prepare_url_errors(dsn: str, driver: str, message: str) -> None:
    with pytest.raises(OrmRunError) as info:
        prepare_url(dsn, driver=driver)
    assert str(info.value) == message


# -- load_callable --------------------------------------------------------------------


def test_load_callable_errors(isolated_path: Path) -> None:
    name = unique("pgwi_spec")
    (isolated_path / f"{name}.py").write_text("CONST = 3\n\nclass Box:\n    pass\n")
    (isolated_path / f"{name}_broken.py").write_text("x = 1 / 0\n")
    cases = {
        f"{name}": f"invalid callable '{name}': expected the form module:function "
        "(e.g. myapp.queries:load_users)",
        "nosuchpkg_pgwi.queries:load": "cannot import module 'nosuchpkg_pgwi.queries': "
        "No module named 'nosuchpkg_pgwi'",
        f"{name}:load_users": f"module '{name}' has no attribute 'load_users'",
        f"{name}:Box.missing": f"module '{name}' has no attribute 'Box.missing'",
        f"{name}:CONST": f"'{name}:CONST' is not callable",
        f"{name}_broken:f": f"cannot import module '{name}_broken': "
        "ZeroDivisionError: division by zero",
    }
    for spec, message in cases.items():
        with pytest.raises(OrmRunError) as info:
            load_callable(spec)
        assert str(info.value) == message


def test_load_callable_dotted_attribute(isolated_path: Path) -> None:
    name = unique("pgwi_dotted")
    (isolated_path / f"{name}.py").write_text(
        "class Queries:\n    @staticmethod\n    def first(session):\n        return 42\n"
    )
    fn = load_callable(f"{name}:Queries.first")
    assert fn(None) == 42
    (step,) = callable_program(fn, f"{name}:Queries.first")
    assert (step.label, step.code) == (f"{name}:Queries.first", "Queries.first(session)")


# -- connection errors ----------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_refused_port_raises_quickly(driver: str) -> None:
    port = free_port()
    url = prepare_url(f"postgresql://postgres@127.0.0.1:{port}/postgres", driver=driver)
    started = time.monotonic()
    with pytest.raises(OrmRunError) as info:
        run_orm(url, demo_program(), connect_timeout=5)
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert time.monotonic() - started < 2


def test_silent_server_times_out() -> None:
    # The kernel completes the handshake, but nobody answers the StartupMessage.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        url = prepare_url(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        started = time.monotonic()
        with pytest.raises(OrmRunError) as info:
            run_orm(url, demo_program(), connect_timeout=1)
        elapsed = time.monotonic() - started
    assert re.fullmatch(rf"cannot connect to 127\.0\.0\.1:{port}: timeout expired", str(info.value))
    assert 0.9 < elapsed < 4


def test_unknown_role(server: PreparedUrl) -> None:
    role = unique("nobody")
    url = prepare_url(server.url.set(username=role).render_as_string(hide_password=False))
    with pytest.raises(OrmRunError) as info:
        run_orm(url, demo_program())
    # Trust authentication names the missing role; password methods only fail.
    assert re.fullmatch(
        rf'cannot connect to {url.host}:{url.port}: (role "{role}" does not exist'
        rf'|password authentication failed for user "{role}")',
        str(info.value),
    )


# -- the demo -------------------------------------------------------------------------


def test_ensure_demo_data_is_idempotent(demo: PreparedUrl, sql: Session) -> None:
    ensure_demo_data(demo)
    rows = sql.execute(
        text(
            "SELECT id, username, email, hashed_password FROM users WHERE id IN (1, 2) ORDER BY id"
        )
    ).all()
    assert [tuple(r) for r in rows] == [tuple(u) for u in DEMO_USERS]
    # The hashes are real werkzeug-style pbkdf2 hashes of "secret" and "wonderland".
    for (_, _, _, stored), password in zip(DEMO_USERS, ["secret", "wonderland"], strict=True):
        method, salt, digest = stored.split("$")
        assert method == "pbkdf2:sha256:600000"
        computed = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 600000)
        assert computed.hex() == digest


@pytest.fixture
def schema(server: PreparedUrl, sql: Session) -> Iterator[PreparedUrl]:
    """A fresh schema first on the search path: the demo's ``users`` lands there."""
    name = unique("pgwi_schema")
    sql.execute(text(f"CREATE SCHEMA {name}"))
    sql.commit()
    try:
        yield prepare_url(
            server.url.update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
                hide_password=False
            )
        )
    finally:
        sql.rollback()
        sql.execute(text(f"DROP SCHEMA {name} CASCADE"))
        sql.commit()


def test_ensure_demo_data_creates_the_table(schema: PreparedUrl) -> None:
    ensure_demo_data(schema)
    engine = create_engine(schema.url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            users = session.scalars(select(User).order_by(User.id)).all()
            assert [(u.id, u.username, u.email, u.hashed_password) for u in users] == [
                tuple(u) for u in DEMO_USERS
            ]
            # The serial sequence was moved past the explicit ids.
            session.add(User(username="carol"))
            session.flush()
            assert session.scalars(select(User.id).where(User.username == "carol")).one() == 3
            session.rollback()
    finally:
        engine.dispose()


def test_ensure_demo_data_rejects_another_users_table(schema: PreparedUrl) -> None:
    engine = create_engine(schema.url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE users (id integer PRIMARY KEY, name text)"))
    engine.dispose()
    with pytest.raises(OrmRunError) as info:
        ensure_demo_data(schema)
    assert str(info.value) == (
        'cannot set up the demo table users: column "username" of relation "users" does not exist'
    )




@pytest.mark.parametrize("driver", DRIVERS)
def test_demo_run(demo: PreparedUrl, sql: Session, driver: str) -> None:
    run = run_orm(prepare_url(DSN, driver=driver), demo_program())
    assert (run.error, run.driver) == (None, driver)
    assert [len(s.statements) for s in run.steps] == [1, 0, 1]
    assert [s.step for s in run.statements] == [0, 2]
    assert run.setup_statements == [
        "select pg_catalog.version()",
        "select current_schema()",
        "show standard_conforming_strings",
    ]
    assert run.server_version == sql.execute(text("SHOW server_version")).scalar_one()

    legacy, by_select = run.statements
    assert legacy.result_columns == list(LEGACY_COLUMNS.values())
    assert legacy.attribute_columns == {"User": LEGACY_COLUMNS}
    assert by_select.result_columns == ATTRIBUTES
    assert by_select.attribute_columns == {"User": SELECT_COLUMNS}
    assert legacy.rowcount == 1
    assert by_select.rowcount == sql.execute(text("SELECT count(*) FROM users")).scalar_one()
    for statement in run.statements:
        assert statement.error is None
        assert run.started <= statement.started <= (statement.ended or 0) <= run.ended
    assert legacy.parameters == {"username_1": "Demo", "param_1": 1}
    values = ("'Demo'", "1") if driver == "psycopg2" else ("$1", "$2")
    sent = legacy.statement.replace("%(username_1)s", values[0])
    assert legacy.wire_sql == sent.replace("%(param_1)s", values[1])
    assert by_select.wire_sql == by_select.statement

    first, from_map, everyone = run.steps
    (demo_user,) = first.instances
    assert (demo_user.class_name, demo_user.identity) == ("User", (1,))
    assert demo_user.attributes == dict(zip(ATTRIBUTES, DEMO_USERS[0], strict=True))
    assert demo_user.attributes["email"] == "demo@aa.io"
    assert demo_user.attribute_types == {"id": "int", **{k: "str" for k in ATTRIBUTES[1:]}}
    assert demo_user.columns == LEGACY_COLUMNS
    assert (demo_user.statement, demo_user.returned, demo_user.from_identity_map) == (
        0,
        True,
        False,
    )
    assert first.result_repr == "User(id=1, username='Demo', email='demo@aa.io')"
    assert first.note is None

    assert from_map.statements == []
    assert from_map.note == "sent nothing: session.get found User(1) in the identity map"
    (again,) = from_map.instances
    assert (again.identity, again.statement, again.step) == ((1,), 0, 1)
    assert again.from_identity_map
    assert again.columns == LEGACY_COLUMNS

    assert everyone.statements == [1]
    assert len(everyone.instances) == by_select.rowcount
    demo_again, alice = everyone.instances[:2]
    assert (demo_again.identity, demo_again.statement) == ((1,), 0)
    assert demo_again.from_identity_map
    assert alice.attributes == dict(zip(ATTRIBUTES, DEMO_USERS[1], strict=True))
    assert (alice.statement, alice.from_identity_map, alice.columns) == (1, False, SELECT_COLUMNS)
    # Values agree with what a separate connection reads.
    for record in everyone.instances:
        row = sql.execute(select(User.__table__).where(User.id == record.identity[0])).one()
        assert record.attributes == row._asdict()


@pytest.mark.parametrize("driver", DRIVERS)
def test_on_connect_port_is_the_servers_client_port(
    server: PreparedUrl, sql: Session, driver: str
) -> None:
    url = prepare_url(DSN, driver=driver)
    calls: list[tuple[int, float]] = []
    program = [
        OrmStep(
            "client port",
            "SELECT inet_client_port()",
            lambda session: session.execute(text("SELECT inet_client_port()")).scalar_one(),
        )
    ]
    run = run_orm(url, program, on_connect=lambda port: calls.append((port, time.time())))
    ((port, called_at),) = calls
    assert run.client_port == port
    assert run.steps[0].result_repr == str(port)
    assert called_at <= run.statements[0].started
    # The connection is closed when run_orm returns: its backend goes away.
    query = text("SELECT count(*) FROM pg_stat_activity WHERE client_port = :port")
    deadline = time.monotonic() + 2
    while sql.execute(query, {"port": port}).scalar_one() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sql.execute(query, {"port": port}).scalar_one() == 0


def test_snapshots_are_taken_at_the_end_of_each_step(demo: PreparedUrl) -> None:
    def rename(session: Session) -> User | None:
        user = session.get(User, 1)
        assert user is not None
        user.email = "changed@example.com"  # never flushed: the session rolls back
        return user

    program = [
        OrmStep("load", "session.get(User, 1)", lambda session: session.get(User, 1)),
        OrmStep("change", "user.email = ...", rename),
    ]
    run = run_orm(demo, program)
    assert run.steps[0].instances[0].attributes["email"] == "demo@aa.io"
    changed = run.steps[1].instances[0]
    assert changed.attributes["email"] == "changed@example.com"
    assert changed.from_identity_map
    assert run.steps[1].note == "sent nothing: the session found User(1) in the identity map"


def test_sql_error_stops_the_run(server: PreparedUrl) -> None:
    missing = unique("pgwi_missing")
    ran: list[str] = []
    program = [
        OrmStep("ok", "SELECT 1", lambda session: session.execute(text("SELECT 1")).scalar_one()),
        OrmStep(
            "bad",
            f"SELECT * FROM {missing}",
            lambda session: session.execute(text(f"SELECT * FROM {missing}")).all(),
        ),
        OrmStep("never", "", lambda session: ran.append("never")),
    ]
    run = run_orm(server, program)
    message = f'relation "{missing}" does not exist'
    assert len(run.steps) == 2
    assert ran == []
    assert run.steps[0].error is None
    assert run.steps[0].result_repr == "1"
    failed = run.steps[1]
    assert (failed.error, failed.statements, failed.result_repr) == (message, [1], "")
    assert run.statements[1].error == message
    assert run.statements[1].wire_sql == f"SELECT * FROM {missing}"
    assert run.statements[1].ended is not None
    assert run.error == message
    # An exception in Python code ends the run the same way.
    run = run_orm(server, [OrmStep("boom", "1 / 0", lambda session: 1 / 0)])
    assert run.steps[0].error == "ZeroDivisionError: division by zero"
    assert run.steps[0].statements == []
    assert run.steps[0].note is None


