"""Names for the OIDs a capture shows: tables, columns and non-builtin types.

A RowDescription field carries the OID of the table a column comes from,
the column's attribute number and its type OID, but no names. This module
looks those names up in the system catalogs (``pg_class``,
``pg_namespace``, ``pg_attribute``, ``pg_type``) on a new psycopg
connection, so that views can show ``public.users.username`` and ``mood``
instead of ``16390/2`` and ``oid 16401``.

Spec: PostgreSQL docs, "Frontend/Backend Protocol", "Message Formats",
RowDescription (B); "System Catalogs" (pg_class, pg_attribute, pg_type).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field

import psycopg
from psycopg import postgres
from psycopg.conninfo import conninfo_to_dict

from pgwire_inspect.errors import PgWireError
from pgwire_inspect.types import type_name

__all__ = ["Catalog", "load_catalog"]

_TABLES_SQL = """
SELECT c.oid::int8, n.nspname, c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%s::int8[]::oid[])
"""
_COLUMNS_SQL = """
SELECT a.attrelid::int8, a.attnum, a.attname
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY(%s::int8[]::oid[]) AND a.attnum <> 0 AND NOT a.attisdropped
"""
_TYPES_SQL = """
SELECT t.oid::int8, pg_catalog.format_type(t.oid, NULL)
FROM pg_catalog.pg_type t
WHERE t.oid = ANY(%s::int8[]::oid[])
"""

# The password in a URI ("://user:password@") or a key=value string.
_PASSWORDS = re.compile(r"://[^:/@]*:([^@/]+)@|password\s*=\s*('[^']*'|\S+)")
# "postgresql+psycopg2://", "postgres+asyncpg://": SQLAlchemy's dialect+driver scheme.
_SQLALCHEMY_SCHEME = re.compile(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://")


@dataclass(frozen=True)
class Catalog:
    """Names of tables, columns and types by OID, from one database.

    Attributes:
        tables: table OID -> (schema, table), from pg_class and pg_namespace.
        columns: (table OID, attribute number) -> column name, from
            pg_attribute (system columns have negative numbers).
        types: type OID -> name (``format_type(oid, NULL)``, e.g. ``mood``,
            ``mood[]``, ``myschema.address``) for types psycopg's builtin
            registry does not know: enums, domains, composites, extension
            types and the rarer builtins. Meant for the ``user_types`` of
            :func:`pgwire_inspect.types.type_name` and ``ValueDecoder``.
    """

    tables: dict[int, tuple[str, str]] = field(default_factory=dict)
    columns: dict[tuple[int, int], str] = field(default_factory=dict)
    types: dict[int, str] = field(default_factory=dict)

    def table_name(self, oid: int) -> str | None:
        """The qualified name of a table.

        Args:
            oid: the table OID (RowDescription field "table OID").

        Returns:
            ``"schema.table"`` (e.g. ``"public.users"``), or None if unknown
            (or 0, a column that is not a table column).
        """
        names = self.tables.get(oid)
        return None if names is None else f"{names[0]}.{names[1]}"

    def column_name(self, table_oid: int, attnum: int) -> str | None:
        """The qualified name of a table column.

        Args:
            table_oid: the table OID (RowDescription field "table OID").
            attnum: the column's attribute number (RowDescription field
                "attribute number of the column").

        Returns:
            ``"schema.table.column"`` (e.g. ``"public.users.username"``), or
            None if the table or the column is unknown.
        """
        table = self.table_name(table_oid)
        column = self.columns.get((table_oid, attnum))
        return None if table is None or column is None else f"{table}.{column}"

    def type_name(self, oid: int, typmod: int = -1) -> str:
        """Name a type, this catalog's names first, then psycopg's registry.

        Args:
            oid: the type OID.
            typmod: the type modifier, -1 for none.

        Returns:
            e.g. ``"mood"``, ``"varchar(40)"``, or ``"oid 16401"`` if unknown.
        """
        return type_name(oid, typmod, user_types=self.types)


def load_catalog(
    dsn: str,
    *,
    table_oids: Collection[int] = (),
    type_oids: Collection[int] = (),
    connect_timeout: float = 10,
) -> Catalog:
    """Look up names of tables, their columns and types on a new connection.

    The connection is opened with ``sslmode=disable`` unless the DSN sets
    ``sslmode``, in autocommit mode, and closed before returning. Nothing
    is written. With no OIDs to look up, no connection is made.

    Args:
        dsn: a libpq connection string or URI (``postgresql://user@host:5432/db``,
            ``host=... dbname=...``) or an SQLAlchemy URL
            (``postgresql+psycopg2://...``: the ``+driver`` part is dropped).
        table_oids: table OIDs from RowDescription; all columns of these
            tables are loaded.
        type_oids: type OIDs to name; the ones psycopg's registry knows are
            not looked up.
        connect_timeout: seconds to wait for the connection (libpq rounds
            up to whole seconds, 2 at least).

    Returns:
        A :class:`Catalog` with the OIDs that exist; unknown ones are left out.

    Raises:
        PgWireError: the DSN is invalid, the server cannot be reached or
            refuses the connection, or a catalog query fails; the message is
            one line (``cannot connect to 127.0.0.1:5433: connection refused``).
    """
    tables = sorted({int(o) for o in table_oids if o})
    types = sorted({int(o) for o in type_oids if o and postgres.types.get(int(o)) is None})
    if not tables and not types:
        return Catalog()
    params = _connection_params(dsn, connect_timeout)
    where = _where(params)
    try:
        conn = psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]
    except psycopg.Error as ex:
        raise PgWireError(f"cannot connect to {where}: {_reason(ex)}") from None
    try:
        with conn, conn.cursor() as cur:
            cur.execute(_TABLES_SQL, (tables,))
            table_rows = cur.fetchall()
            cur.execute(_COLUMNS_SQL, (tables,))
            column_rows = cur.fetchall()
            cur.execute(_TYPES_SQL, (types,))
            type_rows = cur.fetchall()
    except psycopg.Error as ex:
        raise PgWireError(f"catalog query on {where} failed: {_reason(ex)}") from None
    return Catalog(
        tables={oid: (schema, table) for oid, schema, table in table_rows},
        columns={(oid, attnum): name for oid, attnum, name in column_rows},
        types={oid: name for oid, name in type_rows},
    )


def _connection_params(dsn: str, connect_timeout: float) -> dict[str, str]:
    """Connection keywords for ``dsn``, with our defaults for what it does not say."""
    dsn = _SQLALCHEMY_SCHEME.sub(r"\1://", dsn.strip())
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.Error as ex:
        reason = _reason(ex)
        for m in _PASSWORDS.finditer(dsn):  # libpq quotes the DSN in some errors
            reason = reason.replace((m.group(1) or m.group(2)).strip("'"), "***")
        raise PgWireError(f"invalid DSN: {reason}") from None
    params.setdefault("sslmode", "disable")
    params.setdefault("connect_timeout", str(max(2, math.ceil(connect_timeout))))
    params.setdefault("application_name", "pgwire-inspect catalog")
    return params


def _where(params: dict[str, str]) -> str:
    host = (
        params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "local socket"
    )
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    return f"{host}:{port}"


def _reason(ex: BaseException) -> str:
    """The gist of a psycopg error in one line, without libpq's "connection to ... failed:"."""
    lines = str(ex).strip().splitlines() or [type(ex).__name__]
    reason = lines[0].rsplit(" failed: ", 1)[-1]
    reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason).strip()
    return reason[:1].lower() + reason[1:] if reason[1:2].islower() else reason
