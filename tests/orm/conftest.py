"""Fixtures of the ORM tests: the test server (also as an asyncpg URL), the demo
data, a sync session for checks, an isolated import path.

The server comes from ``PGWIRE_TEST_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). When it cannot be
reached the server tests are skipped, except under ``CI=true`` where they
fail.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgwire_inspect.orm import (
    PreparedUrl,
    ensure_demo_data,
    prepare_url,
)
from tests.orm.support import DSN

# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> PreparedUrl:
    """The test server's prepared URL; skip (or fail under CI=true) if unreachable."""
    url = prepare_url(DSN)
    engine = create_engine(url.url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"PostgreSQL at {url.masked} is unreachable: {str(exc).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def demo(server: PreparedUrl) -> PreparedUrl:
    ensure_demo_data(server)
    return server


@pytest.fixture
def sql(server: PreparedUrl) -> Iterator[Session]:
    """A separate session on the test server, for setting up and checking."""
    engine = create_engine(server.url, poolclass=NullPool)
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.fixture
def isolated_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Work in tmp_path with sys.path restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def async_server(server: PreparedUrl) -> PreparedUrl:
    """The test server's asyncpg URL (skipped, or failing under CI=true, as `server`)."""
    return prepare_url(DSN, "asyncpg")


@pytest.fixture(scope="module")
def async_demo(async_server: PreparedUrl) -> PreparedUrl:
    ensure_demo_data(async_server)  # through asyncpg, as the CLI does with --driver asyncpg
    return async_server
