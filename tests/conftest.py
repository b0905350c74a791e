"""Shared fixtures: the test server's DSN, the capture folders."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from testpaths import CAPTURES, ROOT, ZEEK  # noqa: F401

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_dsn() -> str:
    """The DSN of the test server (PGWIRE_TEST_DSN, or the local default)."""
    return os.environ.get("PGWIRE_TEST_DSN", DEFAULT_DSN)


test_dsn.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test server's DSN; fails under CI=true when the server is unreachable, else skips."""
    dsn = test_dsn()
    url = make_url(dsn)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=3).close()
    except OSError as exc:
        msg = f"PostgreSQL test server {url.host}:{url.port or 5432} unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return dsn


@pytest.fixture(scope="session")
def zeek_dir() -> Path:
    """The folder of the zeek test captures (shared/, beside the project)."""
    if not ZEEK.is_dir():
        pytest.fail(f"{ZEEK} is missing: the shared captures must sit beside the project")
    return ZEEK
