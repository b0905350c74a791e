"""Tests of pgwire_inspect.catalog against a real PostgreSQL server."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgwire_inspect.catalog import Catalog, load_catalog
from pgwire_inspect.errors import PgWireError

DSN = os.environ.get("PGWIRE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def schema() -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A scratch schema with a users table (one dropped column) and an enum type."""
    try:
        conn = psycopg.connect(DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as ex:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {DSN} is unreachable: {ex}")
        pytest.skip(f"PostgreSQL at {DSN} is unreachable: {ex}")
    name = f"pgwire_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f"CREATE SCHEMA {name}")
        try:
            conn.execute(f"CREATE TYPE {name}.mood AS ENUM ('sad', 'happy')")
            conn.execute(
                f"CREATE TABLE {name}.users (id serial PRIMARY KEY, gone int,"
                f" username varchar(40) NOT NULL, mood {name}.mood)"
            )
            conn.execute(f"ALTER TABLE {name}.users DROP COLUMN gone")
            conn.execute(f"INSERT INTO {name}.users (username, mood) VALUES ('ada', 'happy')")
            yield conn, name
        finally:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def test_empty_catalog() -> None:
    catalog = Catalog()
    assert catalog.tables == {} and catalog.columns == {} and catalog.types == {}
    assert catalog.table_name(16384) is None
    assert catalog.column_name(16384, 1) is None
    assert catalog.type_name(23) == "int4"
    assert catalog.type_name(16401) == "oid 16401"


def test_names_from_row_description(schema: tuple[psycopg.Connection[Any], str]) -> None:
    conn, name = schema
    cur = conn.cursor()
    cur.execute(f"SELECT id, username, mood, ctid, 1 AS one FROM {name}.users")
    res = cur.pgresult
    assert res is not None
    # Table OID, attribute number and type OID as RowDescription carries them.
    fields = [(res.ftable(i), res.ftablecol(i), res.ftype(i)) for i in range(res.nfields)]
    table_oid = fields[0][0]
    assert table_oid == conn.execute(f"SELECT '{name}.users'::regclass::oid::int8").fetchone()[0]  # type: ignore[index]
    assert [f[1] for f in fields] == [1, 3, 4, -1, 0]  # column 2 was dropped; ctid is -1
    mood_oid = fields[2][2]

    catalog = load_catalog(
        DSN, table_oids=[f[0] for f in fields], type_oids=[f[2] for f in fields] + [mood_oid + 1]
    )
    assert catalog.tables == {table_oid: (name, "users")}
    assert catalog.table_name(table_oid) == f"{name}.users"
    assert [catalog.column_name(t, a) for t, a, _ in fields] == [
        f"{name}.users.id",
        f"{name}.users.username",
        f"{name}.users.mood",
        f"{name}.users.ctid",
        None,
    ]
    assert (table_oid, 2) not in catalog.columns  # dropped
    # Only the types psycopg's registry does not know: the enum (and no int4, text, tid).
    assert catalog.types == {mood_oid: f"{name}.mood"}
    assert catalog.type_name(mood_oid) == f"{name}.mood"
    assert catalog.type_name(fields[1][2], res.fmod(1)) == "varchar(40)"


def test_array_type_and_sqlalchemy_url(schema: tuple[psycopg.Connection[Any], str]) -> None:
    conn, name = schema
    row = conn.execute(
        f"SELECT oid::int8, typarray::int8 FROM pg_type WHERE oid = '{name}.mood'::regtype"
    ).fetchone()
    assert row is not None
    if not DSN.startswith("postgresql://"):
        pytest.skip("the SQLAlchemy form is built from a postgresql:// DSN")
    url = DSN.replace("postgresql://", "postgresql+psycopg2://", 1)
    catalog = load_catalog(url, type_oids=row)
    assert catalog.types == {row[0]: f"{name}.mood", row[1]: f"{name}.mood[]"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_one_line() -> None:
    port = free_port()
    with pytest.raises(PgWireError) as info:
        load_catalog(f"postgresql://postgres@127.0.0.1:{port}/postgres", table_oids=[1259])
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_no_oids_means_no_connection() -> None:
    assert load_catalog(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres") == Catalog()
    # OIDs psycopg already knows need no lookup either.
    assert load_catalog(f"host=127.0.0.1 port={free_port()}", type_oids=[23, 25]) == Catalog()


def test_bad_dsn_and_refusing_server(schema: tuple[psycopg.Connection[Any], str]) -> None:
    with pytest.raises(PgWireError, match=r"^invalid DSN: ") as bad:
        load_catalog("postgresql://x:s3cret@[::1", table_oids=[1259])
    assert "s3cret" not in str(bad.value) and "postgresql://x:***@[::1" in str(bad.value)
    params = schema[0].info.get_parameters()
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    with pytest.raises(PgWireError) as info:
        load_catalog(
            f"host={host} port={port} user=no_such_role_xyz dbname=postgres", table_oids=[1259]
        )
    assert (
        str(info.value)
        == f'cannot connect to {host}:{port}: role "no_such_role_xyz" does not exist'
    )
