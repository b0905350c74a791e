"""The ORM side: run SQLAlchemy queries on a fresh connection and record them.

pgwire-inspect runs an ORM query against a real PostgreSQL server while the
TCP traffic is captured, then shows each DataRow beside the instance
SQLAlchemy built from it. This package runs the ORM side and records what is
needed to link the two; it knows nothing about packet capture. The caller
starts its capture before ``run_orm`` and learns the connection's client TCP
port from the ``on_connect`` hook.

Typical use::

    url = prepare_url("postgresql://postgres@127.0.0.1/postgres")
    ensure_demo_data(url)
    run = run_orm(url, demo_program(), on_connect=capture.follow_port)

Drivers: ``psycopg2`` (sync), ``psycopg`` (psycopg 3: sync, or its asyncio
mode when a step is ``async def``) and ``asyncpg`` (always through
SQLAlchemy's asyncio extension, as FastAPI apps use it; sync steps run
through ``AsyncSession.run_sync``). The demo program has both forms of each
step.

What reaches the wire but is not a ``RecordedStatement`` (measured with
SQLAlchemy 2.1, psycopg2 2.9 and psycopg 3.3 against PostgreSQL 15; the
caller marks wire queries that match no recorded statement as set-up):

* SQLAlchemy's dialect initialisation on first connect runs
  ``select pg_catalog.version()``, ``select current_schema()`` and
  ``show standard_conforming_strings`` on a connection without cursor
  events: they pass ``DialectEvents.do_execute`` only, and are kept in
  ``OrmRun.setup_statements``. ``show transaction isolation level`` (read on
  a raw cursor by ``get_isolation_level``) passes no event at all.
* The dialect's ``on_connect`` looks up the ``hstore`` type OIDs: with
  psycopg2 ``SELECT t.oid, typarray FROM pg_type ... WHERE typname =
  'hstore'`` (simple Query, inside its own BEGIN/ROLLBACK, before the
  initialisation queries); with psycopg 3 a Parse/Bind/Describe/Execute/Sync
  of ``SELECT typname AS name, oid, ... WHERE t.oid = to_regtype($1)``
  wrapped in ``SAVEPOINT "_pg3_1"`` / ``RELEASE "_pg3_1"``, after them. No
  event sees these.
* The drivers' own transaction control: ``BEGIN`` before the first
  statement of each transaction, ``ROLLBACK``/``COMMIT`` when SQLAlchemy
  ends it (both drivers send them as simple Query messages), and Terminate
  when the connection closes.

The program's statements do pass the cursor events. psycopg2 sends each as a
simple Query whose text is ``cursor.query`` (``RecordedStatement.wire_sql``,
parameters interpolated). psycopg 3 sends a statement with parameters as
Parse/Bind/Describe/Execute/Sync with ``$n`` placeholders (``wire_sql`` is
the Parse text, the values travel in Bind) and one without parameters as a
simple Query (``wire_sql`` is its text); from the fifth execution of the same
query it prepares a named statement and later sends only Bind/Execute.

Async drivers (SQLAlchemy's asyncio extension, ``run_orm`` with asyncpg, or
with psycopg when a step is ``async def``): the events are those of the
async engine's ``sync_engine`` and record the same things. psycopg 3 in its
async mode puts on the wire exactly what its sync mode does (above).
asyncpg (0.32, measured the same way) differs:

* Its StartupMessage carries ``client_encoding='utf-8'`` besides user and
  database (and any ``server_settings``), and no SSLRequest comes first
  because ``prepare_url`` gives it ``ssl=False``.
* Every statement, the dialect's initialisation queries included, is
  prepared under a name: Parse (``__asyncpg_stmt_1__``, a hexadecimal
  counter that runs across the whole process, not per connection), Describe
  (statement), Flush; then Bind (every result column asked for in binary
  format), Execute, Sync. ``wire_sql`` is the statement text as SQLAlchemy
  handed it to the cursor, which is exactly the Parse query: the asyncpg
  dialect writes ``$1::VARCHAR`` placeholders itself, and ``parameters``
  is the tuple of values sent in Bind. SQLAlchemy keeps each connection's
  prepared statements (``prepared_statement_cache_size``, 100), so running
  the same SQL again on the connection sends only Bind/Execute/Sync with
  the earlier name.
* The initialisation runs inside ``BEGIN;`` ... ``ROLLBACK;`` (simple
  Queries, with the semicolon); ``show transaction isolation level`` goes
  through asyncpg's Parse/Bind like the others but passes no event. There
  is no ``hstore`` lookup. The dialect's ``on_connect`` registers asyncpg
  codecs for ``json`` and ``jsonb`` (``set_type_codec``), which sends
  nothing: both are built-in types asyncpg knows by OID.
* Transaction control is ``BEGIN;`` before the first statement and
  ``ROLLBACK;``/``COMMIT;`` at its end, then Terminate.
* A statement whose parameter or result types are not built in (an enum, a
  domain, a composite, an extension's type) makes asyncpg introspect them
  the first time the connection meets them, between the statement's
  Parse/Describe/Flush and its Bind: ``SELECT current_setting('jit') ...
  set_config('jit', 'off', false)``, then ``WITH RECURSIVE typeinfo_tree(``
  ... over ``pg_type`` with the type OIDs in Bind, then ``set_config('jit',
  $1, false)`` to restore the setting, each prepared under its own
  ``__asyncpg_stmt_N__`` name. No event sees any of this.
"""

from __future__ import annotations

from pgwire_inspect.orm._demo import DEMO_USERS, DemoBase, User, demo_program, ensure_demo_data
from pgwire_inspect.orm._loader import callable_program, is_async_callable, load_callable
from pgwire_inspect.orm._model import (
    InstanceRecord,
    OrmRun,
    OrmStep,
    OrmStepResult,
    RecordedStatement,
)
from pgwire_inspect.orm._runner import run_orm
from pgwire_inspect.orm._url import ASYNC_DRIVERS, DRIVERS, PreparedUrl, prepare_url

__all__ = [
    "ASYNC_DRIVERS",
    "DEMO_USERS",
    "DRIVERS",
    "DemoBase",
    "InstanceRecord",
    "OrmRun",
    "OrmStep",
    "OrmStepResult",
    "PreparedUrl",
    "RecordedStatement",
    "User",
    "callable_program",
    "demo_program",
    "ensure_demo_data",
    "is_async_callable",
    "load_callable",
    "prepare_url",
    "run_orm",
]
