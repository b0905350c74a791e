"""Users' ORM functions run on SQLAlchemy's asyncio extension, and what asyncpg sends.

The server comes from ``PGWIRE_TEST_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it cannot be
reached the server tests are skipped, except under ``CI=true`` where they
fail. The demo table ``users`` lives in the default schema; other tables and
types get unique names and are dropped afterwards.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgwire_inspect.orm import (
    OrmStep,
    PreparedUrl,
    callable_program,
    demo_program,
    load_callable,
    prepare_url,
    run_orm,
)
from tests.orm.support import (
    DSN,
    Relay,
    bind_values,
    cstrings,
    unique,
)

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
def user_module(async_server: PreparedUrl, isolated_path: Path) -> Iterator[str]:
    name = unique("pgwi_async_queries")
    authors, books = unique("pgwi_author"), unique("pgwi_book")
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


def test_sync_user_callable_under_asyncpg(async_server: PreparedUrl, user_module: str) -> None:
    spec = f"{user_module}:lazy_books"
    run = run_orm(async_server, callable_program(load_callable(spec), spec))
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


def test_asyncpg_wire_matches_the_record(async_demo: PreparedUrl) -> None:
    relay = Relay(async_demo.host, async_demo.port)
    run = run_orm(relay.url("asyncpg"), demo_program())
    assert run.error is None
    assert run.client_port == relay.client_port
    startup = relay.startup()
    assert startup["client_encoding"] == "'utf-8'"
    messages = relay.messages()
    assert messages[-1] == ("X", b"")  # Terminate: the connection was closed

    parses = {
        index: cstrings(body, 2) for index, (kind, body) in enumerate(messages) if kind == "P"
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
        name, values = bind_values(messages[position + 3][1])
        assert name == parses[position][0]
        assert values == [str(v).encode() for v in statement.parameters]
    # Step 2 (session.get) sent nothing: the second statement follows the first's Sync.
    assert positions[1] == positions[0] + 6


def test_asyncpg_type_introspection_sends_what_no_event_sees(
    async_server: PreparedUrl, sql: Session
) -> None:
    mood = unique("pgwi_mood")
    sql.execute(text(f"CREATE TYPE {mood} AS ENUM ('ok', 'sad')"))
    sql.commit()
    try:

        async def moods(session: AsyncSession) -> Any:
            first = (await session.execute(text(f"SELECT 'ok'::{mood}"))).scalar_one()
            second = (await session.execute(text(f"SELECT 'sad'::{mood}"))).scalar_one()
            return first, second

        relay = Relay(async_server.host, async_server.port)
        run = run_orm(relay.url("asyncpg"), [OrmStep("moods", "...", arun=moods)])
        assert run.steps[0].result_repr == "('ok', 'sad')"
        messages = relay.messages()
    finally:
        sql.execute(text(f"DROP TYPE {mood}"))
        sql.commit()
    parsed = [(i, cstrings(body, 2)[1]) for i, (kind, body) in enumerate(messages) if kind == "P"]
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
