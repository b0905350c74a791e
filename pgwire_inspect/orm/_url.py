"""Turn a user's DSN into a SQLAlchemy URL whose traffic can be decoded.

The capture must see plaintext PostgreSQL protocol over TCP, so the URL is
forced to TCP (no Unix socket) and plaintext. For the libpq drivers
(psycopg2, psycopg) that means ``sslmode=disable`` and ``gssencmode=disable``
in the URL (libpq connection parameters, PostgreSQL docs, "libpq -
Connection Strings", section "Parameter Key Words"). asyncpg takes no libpq
parameters: SQLAlchemy's asyncpg dialect hands every URL query key to
``asyncpg.connect()`` as a keyword argument, and ``asyncpg.connect()``
accepts neither ``sslmode`` nor ``gssencmode`` there (it has ``ssl``, and no
GSS encryption at all). So for asyncpg the SSL keys are dropped from the URL
and ``ssl=False`` goes into ``PreparedUrl.connect_args``; the other libpq
keys (``application_name``, ``options`` ...) become asyncpg's
``server_settings``, sent in the StartupMessage, as asyncpg itself does with
the query of a DSN. Every change that alters behaviour is reported as a
notice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pgwire_inspect.errors import OrmRunError

__all__ = [
    "ASYNC_DRIVERS",
    "ASYNC_ONLY_DRIVERS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DRIVERS",
    "PreparedUrl",
    "prepare_url",
]

DRIVERS = ("psycopg2", "psycopg", "asyncpg")
"""The DBAPI drivers ``run_orm`` supports.

``psycopg2`` runs through SQLAlchemy's sync dialect only. ``psycopg``
(psycopg 3) runs through the sync dialect, or through its asyncio dialect
(``create_async_engine`` with the same ``postgresql+psycopg`` URL) when the
program has a step that only has an async form (an ``async def`` callable).
``asyncpg`` always runs through SQLAlchemy's asyncio extension.
"""

ASYNC_ONLY_DRIVERS = ("asyncpg",)
"""Drivers that only run with SQLAlchemy's asyncio extension."""

ASYNC_DRIVERS = ("psycopg", "asyncpg")
"""Drivers that can run async steps (``OrmStep.arun``)."""

# Keyword arguments of asyncpg.connect() (asyncpg 0.29+) and of SQLAlchemy's
# asyncpg adapter that may be written in the URL query and stay there.
_ASYNCPG_URL_KEYS = frozenset(
    {
        "prepared_statement_cache_size",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "passfile",
        "service",
        "servicefile",
    }
)
# libpq parameters about SSL or GSS encryption: meaningless for a plaintext
# asyncpg connection (asyncpg has no GSS encryption).
_ASYNCPG_SSL_KEYS = frozenset(
    {
        "sslmode",
        "ssl",
        "gssencmode",
        "direct_tls",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "sslcrl",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "sslcompression",
        "sslsni",
        "requiressl",
    }
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5432

_FORM = "postgresql://user:password@host:port/dbname"
_PLAINTEXT_WHY = "so the traffic can be decoded"
_OFF = ("disable", "false", "off", "no", "0")


@dataclass(frozen=True)
class PreparedUrl:
    """A DSN rewritten for a capturable connection.

    Attributes:
        url: the SQLAlchemy URL (``postgresql+psycopg2://...``) to connect with.
        driver: the DBAPI driver name, one of ``DRIVERS``.
        host: the TCP host connected to (name or address).
        port: the TCP port of the server.
        masked: the URL as text with the password shown as ``***``.
        notices: one line per change made to the DSN, for the user.
        connect_args: keyword arguments for the driver's ``connect()`` that
            the URL cannot carry, to pass as ``create_engine(...,
            connect_args=...)`` or ``create_async_engine(...)``. Empty for
            psycopg2 and psycopg (everything is in the URL); for asyncpg
            ``{"ssl": False}`` plus ``"server_settings"`` when the DSN had
            libpq run-time parameters.
    """

    url: URL
    driver: str
    host: str
    port: int
    masked: str
    notices: list[str] = field(default_factory=list)
    connect_args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.masked


def _mask_raw(dsn: str) -> str:
    """Hide the password of a DSN that could not be parsed: ``://u:***@``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", dsn)


def _first(value: str | tuple[str, ...] | None) -> tuple[str | None, list[str]]:
    """The first of a query value that may be a tuple or a comma-separated list."""
    if value is None:
        return None, []
    items = [value] if isinstance(value, str) else list(value)
    parts = [p.strip() for item in items for p in item.split(",") if p.strip()]
    return (parts[0] if parts else None), parts


def prepare_url(dsn: str, driver: str = "psycopg2") -> PreparedUrl:
    """Parse a DSN and force the driver, TCP and plaintext.

    Accepts ``postgresql://``, ``postgres://`` and ``postgresql+driver://``
    URLs (libpq keyword/value strings are not accepted). The host comes from
    the URL or its ``host`` query parameter; a Unix socket directory or a
    missing host becomes TCP to 127.0.0.1; the port defaults to 5432.

    For ``"asyncpg"`` the URL becomes ``postgresql+asyncpg://...`` with only
    the query keys ``asyncpg.connect()`` takes as keywords
    (``prepared_statement_cache_size``, ``target_session_attrs`` ...); SSL
    and GSS keys are dropped and ``connect_args`` gets ``ssl=False``;
    ``connect_timeout`` is dropped (``run_orm`` passes its own as asyncpg's
    ``timeout``); every other key goes to ``connect_args["server_settings"]``
    (sent as StartupMessage parameters, PostgreSQL docs, "Message Formats",
    StartupMessage). Unless the DSN named one of asyncpg's own keys, the URL
    with ``+asyncpg`` dropped is still a valid libpq URI.

    Args:
        dsn: the user's database URL.
        driver: ``"psycopg2"`` (default), ``"psycopg"`` (psycopg 3: sync, or
            its asyncio mode for async steps) or ``"asyncpg"`` (SQLAlchemy's
            asyncio extension). SQLAlchemy's ``psycopg_async`` is not a
            separate name here: ``run_orm`` picks psycopg's mode from the
            program.

    Returns:
        The prepared URL with a notice for every change made.

    Raises:
        OrmRunError: unknown driver, unparsable DSN, or not PostgreSQL.
    """
    if driver not in DRIVERS:
        raise OrmRunError(f"unknown driver {driver!r}: expected one of {', '.join(DRIVERS)}")
    try:
        url = make_url(dsn)
    except (ArgumentError, ValueError) as exc:
        raise OrmRunError(f"cannot parse DSN {_mask_raw(dsn)!r}: expected {_FORM}") from exc
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise OrmRunError(
            f"not a PostgreSQL DSN: {url.render_as_string(hide_password=True)}: expected {_FORM}"
        )
    notices: list[str] = []
    if "+" in url.drivername and url.get_driver_name() != driver:
        notices.append(f"the DSN names driver {url.get_driver_name()}; using {driver}")

    query = dict(url.query)
    query_host, all_hosts = _first(query.pop("host", None))
    query_port, _ = _first(query.pop("port", None))
    host = url.host or query_host
    if not url.host and len(all_hosts) > 1:
        notices.append(f"the DSN lists several hosts ({', '.join(all_hosts)}); using {host}")
    if host is None:
        notices.append(
            f"the DSN names no host (libpq would use a Unix socket); "
            f"connecting over TCP to {DEFAULT_HOST}"
        )
        host = DEFAULT_HOST
    elif host.startswith("/") or host.startswith("@"):
        notices.append(
            f"the DSN names a Unix socket ({host}); connecting over TCP to {DEFAULT_HOST} instead"
        )
        host = DEFAULT_HOST
    port = url.port
    if port is None and query_port is not None:
        try:
            port = int(query_port)
        except ValueError as exc:
            raise OrmRunError(f"the DSN has an invalid port {query_port!r}") from exc
    if port is None:
        port = DEFAULT_PORT

    connect: dict[str, Any] = {}
    if driver == "asyncpg":
        query, connect = _asyncpg_query(query, notices)
    else:
        for key in ("sslmode", "gssencmode"):
            asked, _ = _first(query.get(key))
            if asked is not None and asked != "disable":
                notices.append(
                    f"the DSN asked for {key}={asked}; using {key}=disable {_PLAINTEXT_WHY}"
                )
            query[key] = "disable"

    prepared = url.set(drivername=f"postgresql+{driver}", host=host, port=port, query=query)
    return PreparedUrl(
        url=prepared,
        driver=driver,
        host=host,
        port=port,
        masked=prepared.render_as_string(hide_password=True),
        notices=notices,
        connect_args=connect,
    )


def _asyncpg_query(
    query: dict[str, str | tuple[str, ...]], notices: list[str]
) -> tuple[dict[str, str | tuple[str, ...]], dict[str, Any]]:
    """Split a URL query for asyncpg: what stays in the URL, and ``connect()`` arguments.

    Args:
        query: the DSN's query, host and port already taken out.
        notices: where to add a line for each SSL or GSS encryption request refused.

    Returns:
        ``(url_query, connect_args)``: ``connect_args`` has ``ssl=False`` and,
        when some key was neither asyncpg's nor about SSL, ``server_settings``.
    """
    kept: dict[str, str | tuple[str, ...]] = {}
    settings: dict[str, str] = {}
    for key, value in query.items():
        first, _ = _first(value)
        if key in _ASYNCPG_URL_KEYS:
            kept[key] = value
        elif key in _ASYNCPG_SSL_KEYS:
            if first is None or first.lower() in _OFF:
                continue
            if key in ("sslmode", "ssl"):
                notices.append(f"the DSN asked for {key}={first}; using ssl=False {_PLAINTEXT_WHY}")
            elif key == "gssencmode":
                notices.append(
                    f"the DSN asked for {key}={first}; asyncpg has no GSS encryption, "
                    "connecting in plaintext"
                )
        elif key != "connect_timeout" and first is not None:
            settings[key] = value if isinstance(value, str) else value[-1]
    connect: dict[str, Any] = {"ssl": False}
    if settings:
        connect["server_settings"] = settings
    return kept, connect
