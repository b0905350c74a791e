"""Turn a user's DSN into a SQLAlchemy URL whose traffic can be decoded.

The capture must see plaintext PostgreSQL protocol over TCP, so the URL is
forced to TCP (no Unix socket), ``sslmode=disable`` and ``gssencmode=disable``
(libpq connection parameters, PostgreSQL docs, "libpq - Connection Strings",
section "Parameter Key Words"). Every change is reported as a notice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pgwire_inspect.errors import OrmRunError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DRIVERS", "PreparedUrl", "prepare_url"]

DRIVERS = ("psycopg2", "psycopg")
"""The DBAPI drivers ``run_orm`` supports, through SQLAlchemy's sync dialects."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5432

_FORM = "postgresql://user:password@host:port/dbname"
_PLAINTEXT_WHY = "so the traffic can be decoded"


@dataclass(frozen=True)
class PreparedUrl:
    """A DSN rewritten for a capturable connection.

    Attributes:
        url: the SQLAlchemy URL (``postgresql+psycopg2://...``) to connect with.
        driver: the DBAPI driver name (``"psycopg2"`` or ``"psycopg"``).
        host: the TCP host connected to (name or address).
        port: the TCP port of the server.
        masked: the URL as text with the password shown as ``***``.
        notices: one line per change made to the DSN, for the user.
    """

    url: URL
    driver: str
    host: str
    port: int
    masked: str
    notices: list[str] = field(default_factory=list)

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

    Args:
        dsn: the user's database URL.
        driver: ``"psycopg2"`` (default) or ``"psycopg"`` (psycopg 3, sync).

    Returns:
        The prepared URL with a notice for every change made.

    Raises:
        OrmRunError: unsupported driver, unparsable DSN, or not PostgreSQL.
    """
    if driver == "asyncpg":
        raise OrmRunError("driver asyncpg is not supported yet")
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

    for key in ("sslmode", "gssencmode"):
        asked, _ = _first(query.get(key))
        if asked is not None and asked != "disable":
            notices.append(f"the DSN asked for {key}={asked}; using {key}=disable {_PLAINTEXT_WHY}")
        query[key] = "disable"

    prepared = url.set(drivername=f"postgresql+{driver}", host=host, port=port, query=query)
    return PreparedUrl(
        url=prepared,
        driver=driver,
        host=host,
        port=port,
        masked=prepared.render_as_string(hide_password=True),
        notices=notices,
    )
