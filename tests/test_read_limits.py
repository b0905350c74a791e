"""The read view of captures with many queries: the first ones shown, the rest counted."""

from __future__ import annotations

import re

from click.testing import CliRunner

from pgwire_inspect.capture import open_capture
from pgwire_inspect.cli import cli
from pgwire_inspect.decode import decode_frames
from tests.testpaths import CAPTURES

PGBENCH = CAPTURES / "pgbench-prepared.pcap"  # connections of 5, 42 and 42 queries


def test_query_limit_keeps_the_first_queries_and_counts_all() -> None:
    full = decode_frames(open_capture(PGBENCH), ports=None)
    cut = decode_frames(open_capture(PGBENCH), ports=None, query_limit=10)
    assert [c.query_count for c in cut.connections] == [5, 42, 42]
    assert [len(c.queries) for c in cut.connections] == [5, 10, 10]
    for a, b in zip(full.connections, cut.connections, strict=True):
        assert [q.sql for q in b.queries] == [q.sql for q in a.queries[:10]]
        assert [q.row_count for q in b.queries] == [q.row_count for q in a.queries[:10]]


def _read(*args: str) -> str:
    res = CliRunner().invoke(cli, ["read", str(PGBENCH), *args], catch_exceptions=False)
    assert res.exit_code == 0
    return res.output


def test_read_shows_the_first_queries_per_connection() -> None:
    out = _read("--queries", "7")
    assert out.count("… 35 more queries (--queries N to show more") == 2
    assert "more quer" not in out.split("Connection 1")[0]  # 5 queries: all shown
    headers = re.findall(r"Connection \d+ .*?(\d+) quer", out)
    assert headers == ["5", "42", "42"]
    everything = _read("--queries", "0")
    assert "more quer" not in everything
    assert len(everything.splitlines()) > len(out.splitlines())
