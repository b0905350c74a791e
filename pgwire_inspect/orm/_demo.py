"""The built-in demo: the FastAPI tutorial's ``users`` table and three queries.

The table lives in the default schema (``public``) of the database the DSN
names. ``ensure_demo_data`` creates it if missing and adds the two demo
users if missing; it never changes or deletes other rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Integer, String, create_engine, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from pgwire_inspect.errors import OrmRunError
from pgwire_inspect.orm._model import OrmStep
from pgwire_inspect.orm._runner import connect_error, engine_connect_args
from pgwire_inspect.orm._url import ASYNC_ONLY_DRIVERS, PreparedUrl, prepare_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["DEMO_USERS", "DemoBase", "User", "demo_program", "ensure_demo_data"]

# pbkdf2_hmac("sha256", password, salt, 600000).hex() in werkzeug's
# generate_password_hash format "pbkdf2:sha256:<iterations>$<salt>$<hex>".
# Passwords: "secret" (Demo) and "wonderland" (alice).
DEMO_USERS: tuple[tuple[int, str, str, str], ...] = (
    (
        1,
        "Demo",
        "demo@aa.io",
        "pbkdf2:sha256:600000$rIGS8DM4XfOeycmx$"
        "37d46cf710ad347e52fee1ee20d9fcb3619ecf5bc605c72008a227a832b3233b",
    ),
    (
        2,
        "alice",
        "alice@example.com",
        "pbkdf2:sha256:600000$PgWYBd5OaGCLoF7b$"
        "38f735496e2b512f8bd67500f471f1f67a6a5b3896f77764836661a1c2646d67",
    ),
)
"""``(id, username, email, hashed_password)`` of the demo rows."""

# Serialises concurrent set-ups (two CLI runs, parallel tests) on one server.
_SETUP_LOCK_KEY = 0x70677769  # "pgwi"


class DemoBase(DeclarativeBase):
    """Declarative base of the demo model (its own registry and metadata)."""


class User(DemoBase):
    """A user of the FastAPI tutorial: table ``users``."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    email: Mapped[str | None] = mapped_column(String(255))
    hashed_password: Mapped[str | None] = mapped_column(String(255))

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r}, email={self.email!r})"


def _set_up(connection: Connection) -> None:
    """Create the table and rows in one transaction holding the set-up lock."""
    with connection.begin():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SETUP_LOCK_KEY})
        DemoBase.metadata.create_all(connection, checkfirst=True)
        rows = [
            {"id": i, "username": u, "email": e, "hashed_password": h} for i, u, e, h in DEMO_USERS
        ]
        inserted = connection.execute(
            insert(User).values(rows).on_conflict_do_nothing().returning(User.id)
        ).all()
        if inserted:
            connection.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('users', 'id'), "
                    "(SELECT max(id) FROM users))"
                )
            )


def _set_up_sync(prepared: PreparedUrl, connect_timeout: float) -> None:
    engine = create_engine(
        prepared.url,
        poolclass=NullPool,
        connect_args=engine_connect_args(prepared, connect_timeout),
    )
    try:
        try:
            connection = engine.connect()
        except SQLAlchemyError as exc:
            raise OrmRunError(connect_error(prepared, exc)) from None
        with connection:
            _set_up(connection)
    finally:
        engine.dispose()


def _set_up_async(prepared: PreparedUrl, connect_timeout: float) -> None:
    from pgwire_inspect.orm._async_runner import async_engine, run_coroutine

    async def set_up() -> None:
        engine = async_engine(prepared, connect_timeout)
        try:
            try:
                connection = await engine.connect()
            except Exception as exc:  # asyncpg raises socket errors unwrapped
                raise OrmRunError(connect_error(prepared, exc)) from None
            try:
                await connection.run_sync(_set_up)
            finally:
                await connection.close()
        finally:
            await engine.dispose()

    run_coroutine(set_up)


def ensure_demo_data(url: PreparedUrl | str, *, connect_timeout: float = 10) -> None:
    """Create the ``users`` table if missing and insert the demo users if missing.

    Runs on its own short-lived connection (not the one ``run_orm`` records),
    with the URL's driver (asyncpg through SQLAlchemy's asyncio extension), in
    one transaction holding an advisory lock so concurrent set-ups do not
    race. Rows are inserted with ``ON CONFLICT DO NOTHING`` and the ``id``
    sequence is moved past the largest id afterwards.

    Args:
        url: a prepared URL, or a DSN string to prepare with the default driver.
        connect_timeout: seconds to wait for the connection, rounded up to whole
            seconds by psycopg2 and psycopg (psycopg 3 waits at least 2).

    Raises:
        OrmRunError: the server cannot be reached, or the table exists with a
            shape the demo cannot use.
    """
    prepared = prepare_url(url) if isinstance(url, str) else url
    try:
        if prepared.driver in ASYNC_ONLY_DRIVERS:
            _set_up_async(prepared, connect_timeout)
        else:
            _set_up_sync(prepared, connect_timeout)
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()
        raise OrmRunError(
            f"cannot set up the demo table users: {first[0] if first else exc}"
        ) from None


async def _first_named_demo(session: AsyncSession) -> User | None:
    result = await session.execute(select(User).filter(User.username == "Demo"))
    return result.scalars().first()


async def _all_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.id))).all()


def demo_program() -> list[OrmStep]:
    """The demo: three steps in one session, showing SQL, no SQL, and SQL again.

    1. ``session.query(User).filter(User.username == "Demo").first()``: the
       legacy Query API (columns labelled ``users_id`` ..., ``LIMIT``).
       ``AsyncSession`` has no ``query()``: the async form is
       ``(await session.execute(select(User).filter(User.username ==
       "Demo"))).scalars().first()`` (columns ``id`` ..., no ``LIMIT``).
    2. ``session.get(User, 1)`` / ``await session.get(User, 1)``: answered
       from the identity map, sends nothing.
    3. ``session.scalars(select(User).order_by(User.id)).all()``: the 2.0
       API (columns ``id`` ...); Demo comes back from the identity map, alice
       is built from her row. Async: ``(await session.scalars(...)).all()``.

    Every step has a sync and an async form (``OrmStep.arun``), so the demo
    runs with every driver.

    Returns:
        The three ``OrmStep`` objects.
    """
    return [
        OrmStep(
            label="legacy Query: first user named Demo",
            code='session.query(User).filter(User.username == "Demo").first()',
            run=lambda session: session.query(User).filter(User.username == "Demo").first(),
            arun=_first_named_demo,
            async_code='(await session.execute(select(User).filter(User.username == "Demo")))'
            ".scalars().first()",
            async_label="select with filter: first user named Demo",
        ),
        OrmStep(
            label="Session.get by primary key",
            code="session.get(User, 1)",
            run=lambda session: session.get(User, 1),
            arun=lambda session: session.get(User, 1),
            async_code="await session.get(User, 1)",
        ),
        OrmStep(
            label="2.0 select: all users",
            code="session.scalars(select(User).order_by(User.id)).all()",
            run=lambda session: session.scalars(select(User).order_by(User.id)).all(),
            arun=_all_users,
            async_code="(await session.scalars(select(User).order_by(User.id))).all()",
        ),
    ]
