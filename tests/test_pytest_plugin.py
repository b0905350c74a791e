"""The pytest plugin: the pgwire_capture fixture and the report section on failure."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import pgwire_inspect.pytest_plugin as plugin

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app"


def test_registered_through_the_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("pgwire_inspect") is plugin


def test_the_fixture_captures(pgwire_capture: plugin.CaptureFixture, pg_dsn: str) -> None:
    engine = create_engine(make_url(pg_dsn).set(drivername="postgresql+psycopg"))
    try:
        with pgwire_capture(engine) as cap, engine.connect() as conn:
            conn.execute(text("select cast(:n as int) * 2 as twice"), {"n": 21}).all()
        assert pgwire_capture.last is cap and pgwire_capture.captures == [cap]
        [stmt] = cap.statements
        assert stmt.rows == [(42,)] and stmt.parameters == [21]
    finally:
        engine.dispose()


def test_a_failing_test_reports_the_captured_queries(pytester: pytest.Pytester,
                                                     pg_dsn: str) -> None:
    marker = f"report-{uuid.uuid4().hex[:10]}"
    pytester.makepyfile(f"""
        from sqlalchemy import create_engine, text

        DSN = {pg_dsn!r}.replace("postgresql://", "postgresql+psycopg://", 1)

        def run(pgwire_capture, sql):
            engine = create_engine(DSN)
            try:
                with pgwire_capture(engine) as cap, engine.connect() as conn:
                    try:
                        conn.execute(text(sql)).all()
                    except Exception:
                        pass
                return cap
            finally:
                engine.dispose()

        def test_fails(pgwire_capture):
            run(pgwire_capture, "select '{marker}' as m, generate_series(1, 3) as n")
            run(pgwire_capture, "select 1/0 as '{marker}-err'")
            assert False, "fails on purpose"

        def test_passes(pgwire_capture):
            run(pgwire_capture, "select '{marker}-quiet' as m")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("pgwire-inspect: captured queries") == 1
    result.stdout.fnmatch_lines([
        "*pgwire-inspect: captured queries*",
        "capture 1: 1 connection(s), * queries, 1 statement(s)",
        f"*statement * ms    3 rows  select '{marker}' as m, generate_series(1, 3) as n",
        "capture 2: *",
        "*error: ERROR 42601: syntax error at or near*",
    ])
    assert f"{marker}-quiet" not in out  # a passing test has no section


def test_the_example_app_test_passes(pytester: pytest.Pytester, pg_dsn: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_url(pg_dsn).set(drivername="postgresql+asyncpg")
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False) + "?ssl=disable")
    result = pytester.runpytest(str(EXAMPLE), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
