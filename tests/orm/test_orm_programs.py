"""Users' ORM functions run by pgwire_inspect.orm, and what reaches the wire.

The server comes from ``PGWIRE_TEST_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it cannot be
reached the server tests are skipped, except under ``CI=true`` where they
fail. The demo table ``users`` lives in the default schema; other tables get
unique names and are dropped afterwards.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgwire_inspect.orm import (
    PreparedUrl,
    callable_program,
    demo_program,
    load_callable,
    prepare_url,
    run_orm,
)
from tests.orm.support import DRIVERS, Relay, unique

# -- a user's module ------------------------------------------------------------------

USER_MODULE = """
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, joinedload, mapped_column, relationship

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

def authors_with_books(session):
    stmt = select(Author).options(joinedload(Author.books)).order_by(Author.id)
    return session.scalars(stmt).unique()

def rows(session):
    return session.execute(select(Book.id, Book).order_by(Book.id).limit(1))
"""


@pytest.fixture
def user_module(server: PreparedUrl, isolated_path: Path) -> Iterator[str]:
    name = unique("pgwi_queries")
    authors, books = unique("pgwi_author"), unique("pgwi_book")
    (isolated_path / f"{name}.py").write_text(
        textwrap.dedent(USER_MODULE).format(authors=authors, books=books)
    )
    load_callable(f"{name}:rows")
    module = sys.modules[name]
    engine = create_engine(server.url, poolclass=NullPool)
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


def test_user_callables(server: PreparedUrl, user_module: str) -> None:
    spec = f"{user_module}:authors_with_books"
    run = run_orm(server, callable_program(load_callable(spec), spec))
    assert run.error is None
    (step,) = run.steps
    assert (step.label, step.code) == (spec, "authors_with_books(session)")
    (statement,) = run.statements
    assert statement.result_columns == ["id", "name", "id_1", "author_id", "title"]
    assert statement.attribute_columns == {
        "Author": {"id": "id", "full_name": "name"},
        "Book": {"id": "id_1", "author_id": "author_id", "title": "title"},
    }
    author, alpha, beta = step.instances
    assert (author.class_name, author.returned) == ("Author", True)
    assert author.attributes == {"id": 1, "full_name": "Ann"}
    assert author.columns == {"id": "id", "full_name": "name"}
    for book, title in ((alpha, "Alpha"), (beta, "Beta")):
        assert (book.class_name, book.returned, book.statement) == ("Book", False, 0)
        assert book.attributes["title"] == title
        assert book.columns == {"id": "id_1", "author_id": "author_id", "title": "title"}

    # Rows holding instances are flattened to their instances.
    spec = f"{user_module}:rows"
    run = run_orm(server, callable_program(load_callable(spec), spec))
    (step,) = run.steps
    assert step.error is None
    (book,) = step.instances
    assert (book.class_name, book.identity, book.attributes["title"]) == ("Book", (10,), "Alpha")
    assert step.result_repr.startswith("[(10, <")
    assert run.statements[0].attribute_columns == {
        "Book": {"id": "id", "author_id": "author_id", "title": "title"}
    }


# -- what reaches the wire ------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_wire_matches_the_record(demo: PreparedUrl, driver: str) -> None:
    relay = Relay(demo.host, demo.port)
    relayed = demo.url.set(host="127.0.0.1", port=relay.port)
    url = prepare_url(relayed.render_as_string(hide_password=False), driver)
    run = run_orm(url, demo_program())
    assert run.client_port == relay.client_port
    messages = relay.messages()
    assert messages[-1] == ("X", b"")  # Terminate: the connection was closed

    def sql_text(kind: str, body: bytes) -> str:
        if kind == "P":  # Parse: statement name, then the query
            body = body.split(b"\0", 1)[1]
        return body.split(b"\0", 1)[0].decode()

    wire = [(kind, sql_text(kind, body)) for kind, body in messages if kind in "QP"]
    recorded = [s.wire_sql for s in run.statements]
    assert [q for _, q in wire if q in recorded] == recorded
    # psycopg2 sends simple Query messages; psycopg 3 uses Parse/Bind/... when the
    # statement has parameters and a simple Query when it has none.
    kinds = ["P" if driver == "psycopg" and s.parameters else "Q" for s in run.statements]
    assert [kind for kind, q in wire if q in recorded] == kinds
    others = [q for _, q in wire if q not in recorded]
    for statement in run.setup_statements:
        assert statement in others
    for query in others:
        assert (
            query in ("BEGIN", "ROLLBACK", "show transaction isolation level")
            or query in run.setup_statements
            or "hstore" in query
            or "to_regtype($1)" in query
            or re.fullmatch(r'(SAVEPOINT|RELEASE) "_pg3_\d+"', query)
        ), query
    # Step 2 (session.get) sent nothing: the two recorded queries are adjacent on the
    # wire, in the same transaction.
    positions = [i for i, (_, q) in enumerate(wire) if q in recorded]
    assert positions[1] == positions[0] + 1
