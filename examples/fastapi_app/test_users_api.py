"""What GET /users/{username} puts on the wire, checked with the pgwire_capture fixture.

The fixture comes with pgwire-inspect (a pytest plugin); capturing sniffs the
loopback interface, so run the tests as root (or with CAP_NET_RAW)::

    cd examples/fastapi_app && python -m pytest -q
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from main import DATABASE_URL, app, engine

from pgwire_inspect.orm import ensure_demo_data, prepare_url


@pytest.fixture(scope="module", autouse=True)
def users_table() -> None:
    """The demo's users table with Demo (id 1) and alice (id 2)."""
    ensure_demo_data(prepare_url(DATABASE_URL, "asyncpg"))


def test_get_user_sends_one_statement_and_gets_one_row(pgwire_capture) -> None:
    with TestClient(app) as client, pgwire_capture(engine) as cap:
        response = client.get("/users/Demo")

    assert response.status_code == 200
    assert response.json() == {"id": 1, "username": "Demo", "email": "demo@aa.io"}
    # On the wire there is more: asyncpg's BEGIN/ROLLBACK around the request, and
    # the dialect's set-up queries on the pool's first connection. The
    # application's own statements are one SELECT ...
    [select] = cap.statements
    assert select.sql.startswith("SELECT users.id, users.username, users.email")
    assert select.parameters == ["Demo"]  # sent in Bind, not in the SQL text
    # ... answered by exactly one DataRow.
    assert [m.name for m in select.messages].count("DataRow") == 1
    assert select.rows[0][:3] == (1, "Demo", "demo@aa.io")
    assert select.command_tag == "SELECT 1"
    assert {q.sql for q in cap.queries if q.is_transaction_control} == {"BEGIN;", "ROLLBACK;"}


def test_unknown_user_is_one_statement_and_no_row(pgwire_capture) -> None:
    with TestClient(app) as client, pgwire_capture(engine) as cap:
        response = client.get("/users/nobody")

    assert response.status_code == 404
    [select] = cap.statements
    assert select.parameters == ["nobody"]
    assert select.rows == []
    assert select.command_tag == "SELECT 0"
