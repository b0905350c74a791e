"""pytest plugin: the ``pgwire_capture`` fixture, and captured queries in failure reports.

Registered through the ``pytest11`` entry point, so it is active wherever
pgwire-inspect is installed. A test calls the fixture like
`pgwire_inspect.api.capture`::

    def test_user_endpoint_sends_one_query(pgwire_capture, client):
        with pgwire_capture(engine) as cap:          # Engine, AsyncEngine or DSN
            client.get("/users/Demo")
        assert len(cap.statements) == 1
        assert cap.statements[0].rows == [(1, "Demo", "demo@aa.io", ...)]

When the test fails, its report gets a section "pgwire-inspect: captured
queries" with each query of each capture: kind, duration, row count, SQL,
parameters and error. Capturing sniffs the network: it needs root or
CAP_NET_RAW (see `pgwire_inspect.api.capture`).

This module imports only pytest at load time (pytest loads it in every
session); the capture machinery is imported on first use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .api import Capture

__all__ = ["CaptureFixture", "format_captures", "pgwire_capture"]

_CAPTURES = pytest.StashKey[list["Capture"]]()
#: Longest SQL text shown per query in a report, in characters.
MAX_SQL = 300


class CaptureFixture:
    """The ``pgwire_capture`` fixture's value: a `capture` that remembers its captures.

    Attributes:
        captures: every `Capture` made in the test, in order.
    """

    def __init__(self) -> None:
        self.captures: list[Capture] = []

    @contextlib.contextmanager
    def __call__(self, target: Any, **options: Any) -> Iterator[Capture]:
        """Capture the block's traffic to ``target``'s server.

        Args:
            target: an Engine, AsyncEngine, URL or DSN string.
            **options: as `pgwire_inspect.api.capture` takes them (``write_pcap``,
                ``iface``, ``settle_timeout``).

        Yields:
            The `Capture`, complete once the block has ended.

        Raises:
            CaptureError: as `pgwire_inspect.api.capture` raises it (no permission
                to sniff, a URL without a TCP host ...).
        """
        from .api import capture

        with capture(target, **options) as cap:
            self.captures.append(cap)
            yield cap

    @property
    def last(self) -> Capture | None:
        """The latest capture, or None."""
        return self.captures[-1] if self.captures else None


@pytest.fixture
def pgwire_capture(request: pytest.FixtureRequest) -> CaptureFixture:
    """Capture the PostgreSQL traffic of a block: ``with pgwire_capture(engine) as cap: ...``.

    On failure, the test's report shows every captured query.
    """
    fixture = CaptureFixture()
    request.node.stash[_CAPTURES] = fixture.captures
    return fixture


def format_captures(captures: list[Capture], *, max_sql: int = MAX_SQL) -> str:
    """The report text of some captures: one block per capture, one line per query.

    Args:
        captures: the captures.
        max_sql: longest SQL text shown per query, in characters.

    Returns:
        Plain text; each query as ``#n [conn c] kind  duration  rows  SQL``, with its
        parameters and error on the lines below.
    """
    lines: list[str] = []
    for n, cap in enumerate(captures, 1):
        queries = cap.queries
        lines.append(f"capture {n}: {len(cap.connections)} connection(s), {len(queries)} "
                     f"queries, {len(cap.statements)} statement(s)")
        for i, q in enumerate(queries, 1):
            sql = "(no SQL: prepared before the capture)" if q.sql is None else " ".join(
                q.sql.split())
            if len(sql) > max_sql:
                sql = sql[: max_sql - 3] + "..."
            took = "-" if q.duration is None else f"{q.duration * 1000:.2f} ms"
            rows = f"{q.row_count} row" + ("" if q.row_count == 1 else "s")
            lines.append(f"  #{i:<3} [conn {q.conn}] {q.kind:<11} {took:>10} {rows:>9}  {sql}")
            if q.parameters:
                lines.append(f"        parameters: {q.parameters!r}")
            err = q.error
            if err is not None:
                lines.append(f"        error: {err.get('severity', 'ERROR')} "
                             f"{err.get('code', '')}: {err.get('message', '')}")
        lines.extend(f"  note: {notice}" for notice in cap.notices)
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    """Add the captured queries to the report of a failed test (any phase)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    captures = item.stash.get(_CAPTURES, None)
    if captures:
        report.sections.append(("pgwire-inspect: captured queries", format_captures(captures)))
