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
"""

from __future__ import annotations

from pgwire_inspect.orm._demo import DEMO_USERS, DemoBase, User, demo_program, ensure_demo_data
from pgwire_inspect.orm._loader import callable_program, load_callable
from pgwire_inspect.orm._model import (
    InstanceRecord,
    OrmRun,
    OrmStep,
    OrmStepResult,
    RecordedStatement,
)
from pgwire_inspect.orm._runner import run_orm
from pgwire_inspect.orm._url import DRIVERS, PreparedUrl, prepare_url

__all__ = [
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
    "load_callable",
    "prepare_url",
    "run_orm",
]
